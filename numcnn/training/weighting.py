"""Sample weights, class weights, and the weighted loss exactly as Keras 3 computes it.

Keras's losses reduce with ``"sum_over_batch_size"``: with per-example losses ``l_n`` and weights ``w_n`` over a
batch of ``N`` examples,

    L = sum_n w_n l_n / N          (divided by the batch size, **not** by sum_n w_n)

so weights scale each example's pull, and a batch whose weights are all 0.5 has half the loss (measured against
Keras in ``tests/test_training_callbacks.py``). Each example's loss depends on its own row only, so the gradient
of ``L`` is the unweighted gradient (that of ``sum_n l_n / N``) with row ``n`` multiplied by ``w_n``.

``class_weight={class: weight}`` is turned into per-example weights by each example's class (the label, or the
argmax of a one-hot row, or the rounded value of a single-column target), 1.0 for classes not listed; Keras
makes them float32 (``backend.floatx()``), and so does numcnn.
"""

from __future__ import annotations

import numbers

import numpy as np


def check_sample_weight(sample_weight, n_examples: int, name: str):
    """``sample_weight`` as a float64 vector of ``n_examples`` finite numbers (shape (N,) or (N, 1)), or None."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight)
    if w.dtype.kind not in "biuf":
        raise ValueError(f"{name}: sample_weight must be numbers, got dtype {w.dtype}")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n_examples,):
        raise ValueError(f"{name}: sample_weight must have shape ({n_examples},), one weight per example; "
                         f"got {w.shape}")
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        raise ValueError(f"{name}: sample_weight contains NaN or infinite values")
    return w


def example_classes(y) -> np.ndarray:
    """The class of each example, as Keras reads it for ``class_weight``: sparse labels as they are, the argmax
    of one-hot rows, the rounded value of a single-column target."""
    y = np.asarray(y)
    if y.ndim > 1:
        y = np.argmax(y, axis=-1) if y.shape[-1] != 1 else y[..., 0]
    return np.round(y).astype(np.int64).reshape(len(y))


def class_weight_to_sample_weight(y, class_weight: dict, n_classes: int) -> np.ndarray:
    """Per-example float32 weights from ``class_weight`` (classes not listed weigh 1.0)."""
    if not isinstance(class_weight, dict):
        raise ValueError(f"class_weight must be a dict {{class index: weight}}, got {type(class_weight).__name__}")
    table = np.ones(max(n_classes, 2), dtype=np.float32)  # a 1-output (binary) model has classes 0 and 1
    for key, weight in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, (numbers.Integral, np.integer)):
            raise ValueError(f"class_weight keys must be class indices (integers), got {key!r}")
        if not 0 <= key < len(table):
            raise ValueError(f"class_weight has class {key}, but the model's classes are 0..{len(table) - 1}")
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not np.isfinite(weight):
            raise ValueError(f"class_weight[{key}] must be a finite number, got {weight!r}")
        table[key] = weight
    classes = example_classes(y)
    if classes.size and (classes.min() < 0 or classes.max() >= len(table)):
        raise ValueError(f"class_weight: labels must lie in [0, {len(table)}), got {classes.min()}..{classes.max()}")
    return table[classes]


def weighted_loss_and_gradient(loss_and_gradient, y, prediction, sample_weight=None):
    """``(L, dL/d prediction)`` of the weighted loss ``sum_n w_n l_n / N`` (``sample_weight=None``: the
    unweighted mean, as ``loss_and_gradient`` computes it).

    ``loss_and_gradient(y, prediction)`` returns the batch mean and its gradient. The losses report means, not
    each example's loss, so the weighted sum is taken over groups of examples that share a weight (class weights
    give one group per class): ``sum_n w_n l_n = sum_groups w_g * n_g * mean_g(l)``."""
    value, gradient = loss_and_gradient(y, prediction)
    if sample_weight is None:
        return value, gradient
    dtype = prediction.dtype.type
    w = np.asarray(sample_weight).astype(dtype)
    n = len(prediction)
    weights, group = np.unique(w, return_inverse=True)
    total = dtype(0)
    for index, weight in enumerate(weights):
        rows = np.flatnonzero(group == index)
        if weight == 0:
            continue
        group_mean = loss_and_gradient(y[rows], prediction[rows])[0] if len(rows) < n else value
        total += weight * dtype(group_mean) * dtype(len(rows))
    scale = w.reshape((n,) + (1,) * (gradient.ndim - 1))  # row n of the gradient times w_n
    return dtype(total / dtype(max(n, 1))), (gradient * scale).astype(gradient.dtype)
