"""Small helpers Keras users reach for: ``numcnn.utils.to_categorical`` as ``keras.utils.to_categorical``."""

from __future__ import annotations

import numpy as np

from .errors import LabelError


def to_categorical(x, num_classes=None) -> np.ndarray:
    """One-hot rows for integer class labels, exactly as ``keras.utils.to_categorical`` (Keras 3.15) computes
    them for array-likes: ``y[..., c] = 1.0 if x[...] == c else 0.0``.

    Shapes: labels of shape ``S`` give ``S + (num_classes,)``; a trailing axis of size 1 is dropped first
    (``(N, 1)`` -> ``(N, num_classes)``). ``num_classes=None`` (or 0) means ``max(x) + 1``. The dtype is
    float64, as Keras returns for NumPy input (measured against Keras in tests/test_files_cli.py).

    Where Keras would silently do something else, this refuses with ``LabelError``: a negative label (NumPy
    indexing would set the last column), a label ``>= num_classes`` (Keras raises a bare IndexError), or a
    label that is not a whole number (Keras truncates 1.7 to 1).
    """
    labels = np.asarray(x)
    if labels.dtype.kind not in "iub" and not (labels.dtype.kind == "f" and np.all(labels == np.floor(labels))):
        raise LabelError(f"to_categorical needs whole-number class labels, got dtype {labels.dtype}"
                         + (" with fractional values" if labels.dtype.kind == "f" else ""))
    labels = labels.astype(np.int64)
    shape = labels.shape
    if shape and shape[-1] == 1 and len(shape) > 1:  # Keras drops a trailing axis of size 1
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if not num_classes:
        if labels.size == 0:
            raise LabelError("to_categorical of no labels needs num_classes")
        num_classes = int(labels.max()) + 1
    num_classes = int(num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise LabelError(f"to_categorical: labels must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    categorical = np.zeros((labels.size, num_classes))
    categorical[np.arange(labels.size), labels] = 1
    return categorical.reshape(shape + (num_classes,))
