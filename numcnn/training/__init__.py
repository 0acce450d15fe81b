"""Training: the loop behind ``Sequential.fit`` / ``evaluate`` / ``predict``, Keras's callbacks and metrics.

* ``loop``       ``fit``, ``evaluate``, ``predict``, ``train_on_batch``, ... as functions of a model; one training
                 step is ``compute_gradients`` then ``apply_gradients`` (a data-parallel fit swaps in its own
                 gradient reduction between the two: ``fit(..., reduce_gradients=...)``).
* ``callbacks``  Keras's callback protocol and ``History``, ``EarlyStopping``, ``ModelCheckpoint``,
                 ``ReduceLROnPlateau``, ``LearningRateScheduler``, ``CSVLogger``, ``TerminateOnNaN``,
                 ``LambdaCallback`` (also importable as ``numcnn.callbacks``).
* ``metrics``    the metrics ``compile(metrics=[...])`` accepts, by Keras name, and their running means.
* ``weighting``  ``sample_weight`` / ``class_weight`` and the weighted loss exactly as Keras computes it.

Layering: nothing here imports ``numcnn.model``; the loop works on any object with the ``Sequential`` API, and
``Sequential``'s methods call down into it. Only ``callbacks``, ``metrics`` and ``weighting`` are imported with
this package (they import nothing else of numcnn); import ``numcnn.training.loop`` for the loop itself.
"""

from . import callbacks, metrics, weighting  # noqa: F401
from .callbacks import History  # noqa: F401
