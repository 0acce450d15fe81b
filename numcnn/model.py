"""``Sequential``: a chain of layers, trained by hand-written backpropagation (no autograd).

Forward runs the layers in order; backward runs them in reverse, each turning ``dL/d(output)`` into
``dL/d(input)`` and filling its own ``grads``::

    y = layer_L( ... layer_2(layer_1(x)))          dx = backward_1( ... backward_L(dL/dy))

When the last op is a softmax and the loss is a cross-entropy on probabilities, the loss and its
gradient are computed from the softmax's input ``z`` (the logits), as Keras does: it is exact where the
clipped-probability formula is not, and numerically stable (``dL/dz = (softmax(z) - onehot(y)) / N``).
"""

from __future__ import annotations

import json

import numpy as np

from . import losses as losses_module
from . import optimizers as optimizers_module
from . import validation
from .errors import ShapeError
from .kernels.parallel import single_threaded_blas
from .layers import (LAYER_CLASSES, Activation, AffineLayer, BatchNormalization, Conv2D, Input, Layer,
                     MaxPooling2D)
from .layers.base import snake_case
from .training import metrics as metrics_module
from .training.callbacks import History  # noqa: F401  (re-exported: numcnn.History, what fit returns)
from .training.weighting import weighted_loss_and_gradient

# The training loop lives in numcnn.training.loop, which imports checkpoints and files (numcnn.io, which builds
# Sequential models): fit/evaluate/predict/train_step import it when called, so that nothing imported here
# imports this module back.


class Sequential:
    """A linear stack of layers, e.g. the source document's MNIST model::

        model = Sequential([
            Input((28, 28, 1)),
            Conv2D(32, 3, activation="relu"), MaxPooling2D(2),
            Conv2D(64, 3, activation="relu"), MaxPooling2D(2),
            Conv2D(64, 3, activation="relu"),
            Flatten(), Dense(64, activation="relu"), Dense(10, activation="softmax"),
        ], seed=0)

    ``seed`` (or ``rng``, a ``numpy.random.Generator``) drives weight initialisation: the same seed gives
    the same weights, bit for bit. ``dtype`` is the dtype of weights and computation (float32 or float64).
    """

    fuse_layers = True  # run Conv2D + MaxPooling2D pairs as one kernel (see ``steps``); False: layer by layer

    def __init__(self, layers=None, name: str = "sequential", seed: int | None = None,
                 rng: np.random.Generator | None = None, dtype="float32"):
        self.name = name
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.layers: list[Layer] = []
        self.input_shape: tuple[int, ...] | None = None
        self.optimizer = None
        self.loss = None
        self.metrics: list[str] = []
        self.weighted_metrics: list[str] = []  # weighted by sample_weight / class_weight, as Keras's
        self._name_counts: dict[str, int] = {}
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------------------------------
    # Building
    # ------------------------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a numcnn layer, got {type(layer).__name__}")
        if isinstance(layer, Input):
            if self.layers or self.input_shape is not None:
                raise ValueError("Input must be the first layer of a Sequential model")
            self.input_shape = layer.shape
            return
        layer.name = layer.name or self._automatic_name(layer)
        if not self.layers and self.input_shape is None and layer.input_shape is not None:
            self.input_shape = layer.input_shape
        self.layers.append(layer)
        if self.input_shape is not None:
            self._build_layer(layer, self._shape_before(len(self.layers) - 1))

    def pop(self) -> Layer:
        """Remove the last layer and return it (Keras's ``Sequential.pop``); the model's output is then the
        layer before's. The optimizer keeps the slots of the weights still trained (see ``Optimizer``)."""
        if not self.layers:
            raise TypeError("There are no layers in the model.")
        return self.layers.pop()

    def _automatic_name(self, layer) -> str:
        base = snake_case(type(layer).__name__)
        count = self._name_counts.get(base, 0)
        self._name_counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"

    def _shape_before(self, index: int):
        return self.input_shape if index == 0 else self.layers[index - 1].output_shape

    def _build_layer(self, layer, input_shape):
        layer.build(input_shape, self.rng, dtype=self.dtype)

    def build(self, input_shape) -> None:
        """Build every layer for examples of ``input_shape`` (batch axis excluded)."""
        self.input_shape = tuple(int(d) for d in input_shape)
        for index, layer in enumerate(self.layers):
            self._build_layer(layer, self._shape_before(index))

    @property
    def built(self) -> bool:
        return self.input_shape is not None and all(layer.output_shape is not None for layer in self.layers)

    @property
    def output_shape(self):
        return self.layers[-1].output_shape if self.layers else self.input_shape

    def _require_built(self):
        if not self.built:
            raise RuntimeError("the model has no input shape yet: start it with Input(shape) or call build(shape)")

    # ------------------------------------------------------------------------------------------
    # The manual-backprop API
    # ------------------------------------------------------------------------------------------
    def _as_batch(self, x, require_finite: bool = False) -> np.ndarray:
        """Check a batch once at the model's boundary (see ``numcnn.validation``; integers are refused)."""
        self._require_built()
        return validation.check_batch(x, self.input_shape, f"model {self.name!r}", self.dtype, require_finite)

    def steps(self) -> list[tuple[int, int]]:
        """How the layers run, as ``(first, last)`` index pairs. When ``fuse_layers`` is True, a Conv2D
        followed by a MaxPooling2D runs as one fused kernel (``numcnn.kernels.fused``: the same math without
        storing the full-size activation) and a BatchNormalization followed by a ReLU as one pass
        (``BatchNormalization.forward_relu``, the same bits); every other layer runs alone (``first == last``)."""
        steps, index = [], 0
        while index < len(self.layers):
            layer, following = self.layers[index], self._layer_at(index + 1)
            fused = self.fuse_layers and (isinstance(layer, Conv2D) and layer.fuses_with(following)
                                          or isinstance(layer, BatchNormalization) and layer.fuses_relu(following))
            steps.append((index, index + 1) if fused else (index, index))
            index += 2 if fused else 1
        return steps

    def inference_steps(self) -> list[tuple[int, int]]:
        """``steps()`` for an inference-mode forward: each Conv2D followed by a BatchNormalization (then a
        ReLU, then a MaxPooling2D, where they follow) becomes one step, ``Conv2D.forward_normalized`` (the
        same operations, chunk by chunk while the convolution's output is in cache). Each layer keeps its own
        cache, so ``backward`` (which goes by ``steps()``) works after it as after the layers run one by one."""
        steps, next_free = [], 0
        for first, last in self.steps():
            if first < next_free:  # already taken into the step before
                continue
            if first == last and self.fuse_layers and self._layer_is(first, Conv2D) \
                    and self.layers[first].fuses_normalization(self._layer_at(first + 1)):
                relu_after = self._layer_is(first + 2, Activation) and self.layers[first + 2].is_relu()
                last = first + 2 if relu_after else first + 1
                last += self._layer_is(last + 1, MaxPooling2D)
            steps.append((first, last))
            next_free = last + 1
        return steps

    def _layer_at(self, index: int):
        return self.layers[index] if index < len(self.layers) else None

    def _layer_is(self, index: int, kind) -> bool:
        return isinstance(self._layer_at(index), kind)

    def forward(self, x, training: bool = False) -> np.ndarray:
        """Run every layer in order; each keeps what its ``backward`` needs."""
        x = self._as_batch(x)
        with single_threaded_blas():  # switched once here, not in every kernel (kernels.parallel)
            for step in self.steps() if training else self.inference_steps():
                self._last_layer_input = x  # the logits z when the last layer is a Softmax (fused loss)
                x = self.step_forward(step, x, training)
        self._last_output = x
        return x

    def release_caches(self) -> None:
        """Drop what the last forward kept for a backward (every layer's ``release_cache``). A forward keeps
        each step's input and output until the next forward replaces them, so without this the next batch
        allocates all its arrays while the last batch's are still held: new memory, whose first touch costs
        a page fault per page. Measured (seed model, 10,000 images in batches of 1000 right after training,
        AMD EPYC Zen 5): the first ``predict`` took 0.51-0.68 s with 1,535-2,047 page faults, the next
        0.20-0.25 s; releasing after each batch: 0.20-0.24 s and no faults, the first time too."""
        for layer in self.layers:
            layer.release_cache()
        self._last_layer_input = self._last_output = None

    def step_forward(self, step: tuple[int, int], x, training: bool = False) -> np.ndarray:
        """Forward of one step of ``steps()`` or ``inference_steps()``: one layer, a fused Conv2D +
        MaxPooling2D or BatchNormalization + ReLU pair, or an inference-mode Conv2D + BatchNormalization
        (+ ReLU) (+ MaxPooling2D)."""
        first, last = step
        if last == first:
            return self.layers[first].forward(x, training=training)
        if isinstance(self.layers[first], BatchNormalization):
            return self.layers[first].forward_relu(x, self.layers[last], training=training)
        if isinstance(self.layers[first + 1], MaxPooling2D):
            return self.layers[first].forward_pooled(x, self.layers[last], training=training)
        after_norm = self.layers[first + 2:last + 1]  # [], [ReLU], [MaxPooling2D] or [ReLU, MaxPooling2D]
        relu = next((layer for layer in after_norm if isinstance(layer, Activation)), None)
        pool = next((layer for layer in after_norm if isinstance(layer, MaxPooling2D)), None)
        return self.layers[first].forward_normalized(x, self.layers[first + 1], relu, pool)

    def step_backward(self, step: tuple[int, int], dy, need_input_gradient: bool = True):
        """Backward of one step (after its ``step_forward``); returns ``dL/d(step input)`` or None when not
        needed (a first Conv2D/Dense in training skips that work)."""
        first, last = step
        layer = self.layers[first]
        if last > first:
            if isinstance(layer, BatchNormalization):  # each of the pair kept its own cache: one by one
                return layer.backward(self.layers[last].backward(dy))
            return layer.backward_pooled(dy, need_input_gradient)
        if isinstance(layer, AffineLayer):
            return layer.backward(dy, need_input_gradient=need_input_gradient)
        return layer.backward(dy)

    __call__ = forward

    def backward(self, dy, start: int | None = None, need_input_gradient: bool = True) -> np.ndarray:
        """Backpropagate ``dy = dL/d(output)`` through the layers (from ``layers[start - 1]`` down when
        ``start`` is given); fills every layer's ``grads`` and returns ``dL/dx``, the input gradient.

        Training does not need ``dL/dx``: with ``need_input_gradient=False`` a first Conv2D/Dense layer skips
        computing it (the largest col2im of the model) and None is returned."""
        dy = np.asarray(dy, dtype=self.dtype)
        stop = len(self.layers) if start is None else start
        with single_threaded_blas():
            for first, last in reversed(self.steps()):
                if first >= stop:
                    continue
                if last >= stop:
                    raise ValueError(f"backward cannot start inside the fused layers {first}-{last}")
                dy = self.step_backward((first, last), dy, need_input_gradient or first > 0)
        return dy

    def _softmax_output(self):
        """How the model's output comes out of a softmax or a sigmoid (whose inputs are the logits):
        ``"layer"`` when the last layer is such an activation layer, ``"activation"`` when it is a Dense/Conv2D
        with ``activation="softmax"`` or ``"sigmoid"``, else None."""
        last = self.layers[-1] if self.layers else None
        if isinstance(last, Activation) and last.activation in ("softmax", "sigmoid"):
            return "layer"
        if isinstance(last, AffineLayer) and last.activation in ("softmax", "sigmoid"):
            return "activation"
        return None

    def _fuses_loss(self, loss_fn) -> bool:
        """Whether the loss is computed from the logits, as Keras does: the model ends in the activation the
        loss is fused with (softmax for the cross-entropies, sigmoid for binary cross-entropy; see
        ``numcnn.losses`` for the mismatched pairs, which are not fused)."""
        fused = getattr(loss_fn, "fused_activation", None)
        return fused is not None and self._softmax_output() is not None and self.layers[-1].activation == fused

    def _output_loss_and_gradient(self, y, output, sample_weight=None):
        """The loss of the last forward pass's ``output`` and its gradient, w.r.t. the logits when the loss is
        fused with the final activation (``(loss, dz, True)``), else w.r.t. the output (``(loss, dy, False)``).
        ``sample_weight`` weights each example as Keras does: ``sum_n w_n l_n / N`` (``training.weighting``)."""
        loss_fn = self._require_compiled()
        if self._fuses_loss(loss_fn):
            loss, dz = weighted_loss_and_gradient(loss_fn.loss_and_gradient_from_logits, y, self._logits(output),
                                                  sample_weight)
            return loss, dz, True
        loss, dy = weighted_loss_and_gradient(loss_fn.loss_and_gradient, y, output, sample_weight)
        return loss, dy, False

    def _loss_and_backward(self, y, output, need_input_gradient=True, sample_weight=None) -> tuple[float, np.ndarray]:
        """Loss of ``output`` against ``y``, then backward through the whole model; returns ``(loss, dx)``."""
        loss, gradient, from_logits = self._output_loss_and_gradient(y, output, sample_weight)
        if from_logits:
            return loss, self.backward_from_logits(gradient, need_input_gradient)
        return loss, self.backward(gradient, need_input_gradient=need_input_gradient)

    def compute_loss(self, y, y_pred, sample_weight=None) -> float:
        """The loss of ``y_pred``, the output of the **last** forward pass, against ``y`` — as Keras computes it
        (from the logits when the model ends in the loss's activation; weighted by ``sample_weight``)."""
        return float(self._output_loss_and_gradient(y, y_pred, sample_weight)[0])

    def loss_and_gradients(self, x, y, sample_weight=None) -> tuple[float, list[np.ndarray]]:
        """Forward (training mode: Dropout drops, BatchNormalization uses and updates its batch statistics),
        loss and backward; returns ``(loss, grads)`` with ``grads`` in ``trainable_params()`` order (Keras's
        ``trainable_weights``). Parameters are **not** updated (the moving statistics are: training forward).
        ``sample_weight`` (one weight per example) gives Keras's weighted loss ``sum_n w_n l_n / N``."""
        output = self.forward(x, training=True)
        loss, _ = self._loss_and_backward(y, output, need_input_gradient=False, sample_weight=sample_weight)
        return float(loss), self.get_gradients()

    # ------------------------------------------------------------------------------------------
    # Logits: what generation and explanation differentiate (not the softmax, which can rise by
    # pushing the other classes down)
    # ------------------------------------------------------------------------------------------
    def forward_logits(self, x) -> np.ndarray:
        """Forward pass returning the logits ``z`` (the input of a final softmax or sigmoid, else the output)."""
        return self._logits(self.forward(x))

    def _logits(self, output) -> np.ndarray:
        """The logits of the last forward pass whose output was ``output``."""
        kind = self._softmax_output()
        if kind == "layer":  # the input of the softmax layer
            return self._last_layer_input
        if kind == "activation":
            return self.layers[-1].pre_activation
        return output

    def backward_from_logits(self, dz, need_input_gradient: bool = True) -> np.ndarray:
        """``dL/dx`` given ``dz = dL/d(logits)`` after a forward pass; fills every layer's ``grads``."""
        dz = np.asarray(dz, dtype=self.dtype)
        kind = self._softmax_output()
        last = len(self.layers) - 1
        if kind == "layer":
            return self.backward(dz, start=last, need_input_gradient=need_input_gradient)
        if kind == "activation":
            if last == 0:
                return self.layers[0].backward_from_pre_activation(dz, need_input_gradient)
            dy = self.layers[last].backward_from_pre_activation(dz)
            return self.backward(dy, start=last, need_input_gradient=need_input_gradient)
        return self.backward(dz, need_input_gradient=need_input_gradient)

    def loss_and_input_gradient(self, x, y) -> tuple[float, np.ndarray]:
        """Loss of a batch and ``dL/dx`` (for adversarial examples); fills the weight gradients too.

        Runs in **inference** mode (``training=False``): the gradient is that of the function the model computes
        when used (moving statistics, no dropout), the same for the same ``x`` every time; it updates no moving
        statistics and draws no dropout masks, so computing it leaves training exactly as it was (FGSM in
        ``numcnn.generate.robust`` attacks the deployed model, then trains on the result with ``train_step``)."""
        output = self.forward(x, training=False)
        loss, dx = self._loss_and_backward(y, output)
        return float(loss), dx

    def get_gradients(self) -> list[np.ndarray]:
        """Gradients of ``trainable_params()``, in the same order (after a backward pass)."""
        return [g for layer in self.layers for g in layer.get_gradients()]

    def trainable_params(self) -> list[np.ndarray]:
        """The arrays the optimizer updates, themselves (not copies), in Keras's ``trainable_weights`` order:
        ``get_weights()`` order without the non-trainable ones (moving statistics, frozen layers)."""
        return [p for layer in self.layers for p in layer.trainable_weights]

    @property
    def weights(self) -> list[np.ndarray]:
        """Every weight array itself, in ``get_weights()`` order (Keras's ``model.weights``)."""
        return [w for layer in self.layers for w in layer.weights]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return self.trainable_params()

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        """``weights`` without the trainable ones, in the same order (Keras's ``non_trainable_weights``)."""
        return [w for layer in self.layers for w in layer.non_trainable_weights]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or index (of ``layers``: ``Input`` is not one), with Keras's errors."""
        if index is not None and name is not None:
            raise ValueError(f"Provide only a layer name or a layer index. Received: index={index}, name={name}.")
        if index is not None:
            if len(self.layers) <= index:
                raise ValueError(f"Was asked to retrieve layer at index {index} but model only has "
                                 f"{len(self.layers)} layers.")
            return self.layers[index]
        if name is not None:
            for layer in self.layers:
                if layer.name == name:
                    return layer
            raise ValueError(f"No such layer: {name}. Existing layers are: {[layer.name for layer in self.layers]}.")
        raise ValueError("Provide either a layer name or layer index at `get_layer`.")

    def train_step(self, x, y, sample_weight=None) -> float:
        """One step of gradient descent on one batch: forward, loss, backward, optimizer update; returns the loss
        (measured before the update). A NaN/inf loss or gradient is never applied: ``TrainingDivergedError``,
        and the weights stay the last good ones (``numcnn.training.loop.apply_gradients``)."""
        from .training.loop import train_batch

        return train_batch(self, x, y, sample_weight).loss

    # ------------------------------------------------------------------------------------------
    # Keras-style training API: thin methods over numcnn.training.loop
    # ------------------------------------------------------------------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None,
                weighted_metrics=None) -> None:
        """Choose the optimizer, the loss and the metrics (Keras names: "accuracy", "sparse_top_k_categorical_
        accuracy", "mse", ... — see ``numcnn.training.metrics``), each by name or as an object.
        ``weighted_metrics`` are weighted by ``sample_weight`` / ``class_weight`` as Keras weights them."""
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        self.metrics = metrics_module.check_names(metrics)
        self.weighted_metrics = metrics_module.check_names(weighted_metrics)

    def _require_compiled(self):
        if self.loss is None:
            raise RuntimeError("call model.compile(optimizer, loss) before training or evaluating")
        return self.loss

    def fit(self, x, y, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
            validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1, *,
            seed=None, checkpoint_dir=None, checkpoint_every=None, resume=False) -> History:
        """Train for epochs ``initial_epoch .. epochs - 1`` over ``(x, y)`` in mini-batches of ``batch_size``
        (default 32; the last one may be smaller), with Keras's arguments and semantics; returns the ``History``.

        The epoch's reported loss is, as in Keras, the mean of the batches' losses (each measured before that
        batch's update) weighted by batch size; metrics are means over the epoch's examples.
        ``validation_split``: the last fraction of ``(x, y)`` (taken before shuffling) is validation data;
        ``validation_data``: ``(x_val, y_val)`` or ``(x_val, y_val, val_sample_weight)``, evaluated after every
        ``validation_freq``-th epoch into ``val_*`` logs. ``class_weight`` ``{class: weight}`` or
        ``sample_weight`` (one per example) weight the loss as Keras does: ``sum_n w_n l_n / N``.
        ``callbacks``: ``numcnn.callbacks`` objects (EarlyStopping, ModelCheckpoint, ...), Keras's protocol.
        ``steps_per_epoch``: batches per epoch, as Keras takes them from arrays: the next epoch goes on where the
        last one stopped in the shuffled data, and a new order is drawn when the data runs out (an epoch that
        would run past it ends there, with a warning); ``validation_steps``: only the first batches validate.

        numcnn's own: ``seed`` — shuffling uses ``numpy.random.default_rng(seed)`` (``None``: the model's own
        generator), so a seed reproduces training bit for bit. ``checkpoint_dir``: save model, optimizer state,
        shuffling RNG state, position and the callbacks' state (EarlyStopping's, ReduceLROnPlateau's) atomically
        after every epoch and every ``checkpoint_every`` steps; ``resume=True`` continues from the last
        checkpoint so that the final weights are bit-identical to an uninterrupted run's. See
        ``numcnn.training.loop`` for the loop itself.
        """
        from .training import loop

        with single_threaded_blas():  # numcnn's kernels split the work themselves (kernels.parallel): BLAS
            # runs on one thread for the whole run, switched once (switching costs ~75 us, per layer it was 15%)
            return loop.fit(self, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, callbacks=callbacks,
                            validation_split=validation_split, validation_data=validation_data, shuffle=shuffle,
                            class_weight=class_weight, sample_weight=sample_weight, initial_epoch=initial_epoch,
                            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                            validation_batch_size=validation_batch_size, validation_freq=validation_freq,
                            seed=seed, checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every,
                            resume=resume)

    def evaluate(self, x, y, batch_size=None, verbose="auto", sample_weight=None, steps=None, callbacks=None,
                 return_dict=False):
        """The loss over ``(x, y)`` as a float when the model has no metrics, else ``[loss, *metrics]`` in compile
        order (a dict with ``return_dict``), as Keras returns them; computed in inference mode ``batch_size``
        examples at a time (only the first ``steps`` batches if given). The loss is the mean over examples,
        computed as Keras does (fused from the logits after a final softmax/sigmoid; weighted by
        ``sample_weight``). ``verbose``: a progress bar and a result line on stderr at 1 (the default "auto", as
        in Keras), the line alone at 2, nothing at 0."""
        from .training import loop

        return loop.evaluate(self, x, y, batch_size=batch_size, verbose=verbose, sample_weight=sample_weight,
                             steps=steps, callbacks=callbacks, return_dict=return_dict)

    def predict(self, x, batch_size=None, verbose="auto", callbacks=None) -> np.ndarray:
        """Model outputs for ``x``, computed ``batch_size`` examples at a time (default 32); a progress bar on
        stderr at ``verbose=1`` (the default "auto", as in Keras), none at 0."""
        from .training import loop

        return loop.predict(self, x, batch_size=batch_size, verbose=verbose, callbacks=callbacks)

    def train_on_batch(self, x, y, sample_weight=None, class_weight=None, return_dict=False):
        """One training step on this batch; returns its loss (a float) or ``[loss, *metrics]`` (or a dict), as
        measured before the update — Keras's return convention."""
        from .training import loop

        return loop.train_on_batch(self, x, y, sample_weight=sample_weight, class_weight=class_weight,
                                   return_dict=return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """The loss (a float) or ``[loss, *metrics]`` (or a dict) of one batch, in inference mode."""
        from .training import loop

        return loop.test_on_batch(self, x, y, sample_weight=sample_weight, return_dict=return_dict)

    def predict_on_batch(self, x) -> np.ndarray:
        """The model's outputs for one batch."""
        from .training import loop

        return loop.predict_on_batch(self, x)

    # ------------------------------------------------------------------------------------------
    # Weights, config, summary, files
    # ------------------------------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        expected = sum(len(layer.params) for layer in self.layers)
        if len(weights) != expected:
            raise ShapeError(f"model {self.name!r} has {expected} weight arrays, got a list of {len(weights)}")
        position = 0
        for layer in self.layers:
            count = len(layer.params)
            layer.set_weights(weights[position:position + count])
            position += count

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype.name,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "layers": [{"class_name": type(layer).__name__, "config": self._layer_config(layer)}
                       for layer in self.layers],
        }

    @staticmethod
    def _layer_config(layer) -> dict:
        """``layer.get_config()``, with ``trainable: False`` for a frozen layer even if its class's config omits it."""
        config = layer.get_config()
        if not layer.trainable:
            config["trainable"] = False
        return config

    @classmethod
    def from_config(cls, config: dict, seed: int | None = 0) -> "Sequential":
        model = cls(name=config.get("name", "sequential"), seed=seed, dtype=config.get("dtype", "float32"))
        if config.get("input_shape") is not None:
            model.add(Input(tuple(config["input_shape"])))
        for entry in config["layers"]:
            class_name = entry.get("class_name")
            if class_name not in LAYER_CLASSES or class_name == "Input":
                raise ValueError(f"unknown layer class {class_name!r} in model config")
            model.add(LAYER_CLASSES[class_name].from_config(dict(entry.get("config", {}))))
        return model

    def summary(self, print_fn=print) -> str:
        """A Keras-style table: layer name (type), output shape, parameter count; returns it too."""
        self._require_built()
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self.layers:
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None, *layer.output_shape)),
                         f"{layer.count_params():,}"))
        widths = [max(len(row[i]) for row in rows) + 2 for i in range(3)]
        line = "-" * sum(widths)
        text = [f'Model: "{self.name}"', line]
        text.append("".join(cell.ljust(width) for cell, width in zip(rows[0], widths)))
        text.append("=" * sum(widths))
        for row in rows[1:]:
            text.append("".join(cell.ljust(width) for cell, width in zip(row, widths)))
        text.append("=" * sum(widths))
        total = self.count_params()
        trainable = sum(w.size for w in self.trainable_weights)
        text += [f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                 f"Non-trainable params: {total - trainable:,}"]
        output = "\n".join(text)
        if print_fn is not None:
            print_fn(output)
        return output

    def save(self, path, overwrite: bool = True) -> None:
        """Save to one file, in the format the name asks for (see ``numcnn.io.save``): ``.keras`` a Keras 3
        file (architecture, weights, compile settings, optimizer state), ``.weights.h5`` Keras's weights file,
        ``.npz`` numcnn's own safe file; any other name is refused."""
        from .io import save

        save(self, path, overwrite=overwrite)

    def __repr__(self):
        return f"Sequential(name={self.name!r}, layers={[layer.name for layer in self.layers]})"

    def to_json(self) -> str:
        return json.dumps(self.get_config())
