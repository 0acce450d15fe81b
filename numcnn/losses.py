"""Losses with Keras 3's exact formulas. Every loss is the mean over the batch ('sum_over_batch_size').

For a batch of N rows, logits ``z``, probabilities ``p`` and class ``y``:

* SparseCategoricalCrossentropy(from_logits=True):  ``L_n = logsumexp(z_n) - z_n[y_n]``
  gradient ``dL/dz_n = (softmax(z_n) - onehot(y_n)) / N``.
* SparseCategoricalCrossentropy(from_logits=False): Keras clips, ``q = clip(p, 1e-7, 1 - 1e-7)``, and uses
  ``log q`` as logits: ``L_n = log sum_j q_nj - log q_n[y_n]`` (not exactly ``-log p_y``).
* CategoricalCrossentropy(from_logits=False): Keras first renormalises ``p' = p / sum p``, then clips,
  ``L_n = -sum_j t_nj log clip(p'_nj)``; from logits ``L_n = sum_j t_nj (logsumexp(z_n) - z_nj)``.
* ``label_smoothing = s`` (CategoricalCrossentropy, Keras's definition): the targets become
  ``t' = t (1 - s) + s / C`` (C classes) before either formula. SparseCategoricalCrossentropy takes the same
  argument as a numcnn extension — Keras 3.15's has none (measured: ``TypeError``) — defined by one-hot
  encoding: with ``s > 0`` it *is* CategoricalCrossentropy(label_smoothing=s) on ``onehot(y)`` (probabilities:
  the renormalise-then-clip formula above); with ``s = 0`` nothing changes.
* BinaryCrossentropy (elementwise, targets ``t`` in [0, 1], any shape; the mean over the last axis, then
  over the batch = the mean over all elements, ``M`` of them): from probabilities
  ``l = -(t log q + (1 - t) log(1 - q))``, ``q = clip(p, 1e-7, 1 - 1e-7)``, gradient
  ``dL/dp = (-t / q + (1 - t) / (1 - q)) / M`` where ``p`` was not clipped (0 where it was); from logits
  the stable ``l = max(z, 0) - z t + log(1 + exp(-|z|))``, gradient ``dL/dz = (sigmoid(z) - t) / M``.
  ``label_smoothing = s`` squeezes the targets towards 1/2: ``t' = t (1 - s) + s / 2``.
* MeanSquaredError: ``L_n = mean_j (p_nj - t_nj)^2``.

When the probabilities come straight out of a softmax — or, for BinaryCrossentropy, a sigmoid — Keras
recovers the logits and uses the logits formula, unclipped (measured, Keras 3.15: a sigmoid output with logit
30 and target 0 gives BinaryCrossentropy 30.0 in ``evaluate``, ``fit`` and under ``GradientTape``, not the
clipped 16.118); ``Sequential`` does the same through ``loss_and_gradient_from_logits`` when the loss's
``fused_activation`` is the activation that ends the model. Keras goes further: it takes whatever logits the
last activation cached, so a *softmax* output under BinaryCrossentropy is scored as sigmoids of the softmax's
logits (measured: logits [30, 0, -30], target [0, 0, 1]: 20.23, where the clipped probabilities give 10.69),
and a sigmoid output under CategoricalCrossentropy as a softmax of the sigmoid's logits (60.0 instead of
16.118). numcnn does not copy these mismatched pairs: it scores the probabilities the model outputs.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit

from .kernels.activations import sigmoid_forward

EPSILON = 1e-7  # keras.config.epsilon()


def sparse_labels(y_true, n_classes: int) -> np.ndarray:
    """Integer class labels as an int64 vector, checked against ``[0, n_classes)``."""
    y = np.asarray(y_true)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"sparse labels must have shape (N,), got {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise ValueError("sparse labels must be whole numbers")
    elif y.dtype.kind not in "iub":
        raise TypeError(f"sparse labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got values in [{y.min()}, {y.max()}]")
    return y


class Loss:
    """``loss(y_true, y_pred) -> float`` and ``gradient(y_true, y_pred) -> dL/dy_pred`` (mean over the batch)."""

    name = "loss"
    # The activation whose *input* this loss is computed from when that activation ends the model
    # (``loss_and_gradient_from_logits``), as Keras does: "softmax", "sigmoid" or None.
    fused_activation: str | None = None

    @property
    def fuses_with_softmax(self) -> bool:
        return self.fused_activation == "softmax"

    def __call__(self, y_true, y_pred) -> float:
        return self.loss_and_gradient(y_true, y_pred)[0]

    def gradient(self, y_true, y_pred) -> np.ndarray:
        return self.loss_and_gradient(y_true, y_pred)[1]

    def loss_and_gradient(self, y_true, y_pred):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}

    def _batch_mean(self, per_row, y_pred):
        return y_pred.dtype.type(np.mean(per_row)) if per_row.size else y_pred.dtype.type(0)


def check_label_smoothing(value) -> float:
    """``label_smoothing`` must be a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {value!r}")
    return float(value)


class _Crossentropy(Loss):
    """What every cross-entropy shares: ``from_logits``, ``label_smoothing``, and the choice between the
    from-logits and the (clipped) from-probabilities formula. ``output_activation`` is the activation whose
    input Keras computes this loss from when it ends the model (softmax, or sigmoid for the binary loss)."""

    output_activation = "softmax"

    def __init__(self, from_logits: bool = False, label_smoothing: float = 0.0):
        self.from_logits = bool(from_logits)
        self.label_smoothing = check_label_smoothing(label_smoothing)
        self.fused_activation = None if self.from_logits else self.output_activation

    def loss_and_gradient(self, y_true, y_pred):
        if self.from_logits:
            return self.loss_and_gradient_from_logits(y_true, y_pred)
        return self._loss_and_gradient_from_probabilities(y_true, y_pred)

    def get_config(self):
        return {"from_logits": self.from_logits, "label_smoothing": self.label_smoothing}


class _CategoricalCrossentropy(_Crossentropy):
    """The sparse and the one-hot categorical cross-entropy: they differ only in how targets are given."""

    def targets(self, y_true, n_classes, dtype) -> np.ndarray:
        """The target distributions ``t'`` (N, C), label smoothing applied."""
        return self.smooth(self.raw_targets(y_true, n_classes, dtype))

    def raw_targets(self, y_true, n_classes, dtype) -> np.ndarray:
        raise NotImplementedError

    def smooth(self, t) -> np.ndarray:
        """Keras's label smoothing for C classes: ``t' = t (1 - s) + s / C``."""
        if not self.label_smoothing:
            return t
        s = t.dtype.type(self.label_smoothing)
        return t * (1 - s) + s / t.dtype.type(t.shape[-1])

    def loss_and_gradient_from_logits(self, y_true, z):
        """Stable cross-entropy from logits: ``L = mean_n sum_j t_nj (logsumexp(z_n) - z_nj)``, and
        ``dL/dz_nj = (softmax(z_n)_j sum_k t_nk - t_nj) / N``. One pass per row (``_cross_entropy_rows``): the
        same formulas in NumPy took ~20 small array operations, 0.1 ms of a 5 ms training step at batch 32."""
        z = np.ascontiguousarray(z)
        if z.ndim != 2 or z.shape[1] == 0:
            raise ValueError(f"cross-entropy needs logits of shape (N, classes), got {z.shape}")
        t = self.targets(y_true, z.shape[-1], z.dtype)
        per_row, dz = np.empty(len(z), dtype=z.dtype), np.empty_like(z)
        _cross_entropy_rows(z, t, z.dtype.type(max(len(z), 1)), per_row, dz)
        return self._batch_mean(per_row, z), dz



@njit(cache=True)
def _cross_entropy_rows(z, t, n, per_row, dz):
    """Per row: ``m = max z``, ``e = exp(z - m)`` (the largest is 1: no overflow), ``s = sum e``;
    ``logsumexp(z) = m + log s``, ``softmax(z) = e / s``; then the loss and gradient above."""
    zero = z.dtype.type(0)
    for i in range(z.shape[0]):
        m = z[i, 0]
        for j in range(z.shape[1]):
            m = max(m, z[i, j])
        s, t_sum, tz = zero, zero, zero
        for j in range(z.shape[1]):
            dz[i, j] = np.exp(z[i, j] - m)
            s += dz[i, j]
            t_sum += t[i, j]
            tz += t[i, j] * z[i, j]
        per_row[i] = t_sum * (m + np.log(s)) - tz
        for j in range(z.shape[1]):
            dz[i, j] = (dz[i, j] / s * t_sum - t[i, j]) / n


class SparseCategoricalCrossentropy(_CategoricalCrossentropy):
    name = "sparse_categorical_crossentropy"

    def raw_targets(self, y_true, n_classes, dtype):
        """One-hot rows of the class labels."""
        y = sparse_labels(y_true, n_classes)
        t = np.zeros((y.size, n_classes), dtype=dtype)
        t[np.arange(y.size), y] = 1
        return t

    def _loss_and_gradient_from_probabilities(self, y_true, p):
        if self.label_smoothing:  # defined by one-hot encoding: CategoricalCrossentropy's formula
            per_row, dp = categorical_from_probabilities(self.targets(y_true, p.shape[-1], p.dtype), p)
            return self._batch_mean(per_row, p), dp
        # Keras: q = clip(p, eps, 1 - eps); L = logsumexp(log q) - log q_y = log(sum q) - log(q_y).
        n, n_classes = p.shape
        y = sparse_labels(y_true, n_classes)
        eps = p.dtype.type(EPSILON)
        q = np.clip(p, eps, 1 - eps)
        rows = np.arange(n)
        total = np.sum(q, axis=-1)
        per_row = np.log(total) - np.log(q[rows, y])
        dq = np.repeat((1 / total)[:, None], n_classes, axis=1)  # d log(sum q) / dq_j
        dq[rows, y] -= 1 / q[rows, y]
        inside = (p >= eps) & (p <= 1 - eps)  # clip passes the gradient only where it did not clip
        return self._batch_mean(per_row, p), (dq * inside / p.dtype.type(max(n, 1))).astype(p.dtype)


class CategoricalCrossentropy(_CategoricalCrossentropy):
    name = "categorical_crossentropy"

    def raw_targets(self, y_true, n_classes, dtype):
        t = np.asarray(y_true, dtype=dtype)
        if t.ndim != 2 or t.shape[1] != n_classes:
            raise ValueError(f"one-hot targets must have shape (N, {n_classes}), got {t.shape}")
        return t

    def _loss_and_gradient_from_probabilities(self, y_true, p):
        per_row, dp = categorical_from_probabilities(self.targets(y_true, p.shape[-1], p.dtype), p)
        return self._batch_mean(per_row, p), dp


def categorical_from_probabilities(t, p):
    """Keras's categorical cross-entropy of probabilities ``p`` (N, C) against targets ``t``: per-row losses
    and the gradient of their batch mean. ``p' = p / sum(p)``; ``q = clip(p', eps, 1 - eps)``;
    ``L_n = -sum_j t_j log q_j``."""
    n = len(p)
    eps = p.dtype.type(EPSILON)
    total = np.sum(p, axis=-1, keepdims=True)
    p_norm = p / total
    q = np.clip(p_norm, eps, 1 - eps)
    per_row = -np.sum(t * np.log(q), axis=-1)
    inside = (p_norm >= eps) & (p_norm <= 1 - eps)
    g = -t / q * inside  # dL/dp'
    # p'_j = p_j / S  =>  dL/dp_k = (g_k - sum_j g_j p'_j) / S
    dp = (g - np.sum(g * p_norm, axis=-1, keepdims=True)) / total
    return per_row, (dp / p.dtype.type(max(n, 1))).astype(p.dtype)


class BinaryCrossentropy(_Crossentropy):
    """Keras's binary cross-entropy, elementwise, averaged over all elements (see the module docstring)."""

    name = "binary_crossentropy"
    output_activation = "sigmoid"

    def targets(self, y_true, y_pred) -> np.ndarray:
        """Targets in ``y_pred``'s shape and dtype (``(N,)`` labels fit a ``(N, 1)`` output), smoothed
        towards 1/2: ``t' = t (1 - s) + s / 2``."""
        t = np.asarray(y_true, dtype=y_pred.dtype)
        if t.size != y_pred.size:
            raise ValueError(f"binary cross-entropy targets of shape {t.shape} do not fit predictions of shape "
                             f"{y_pred.shape}")
        t = t.reshape(y_pred.shape)
        if self.label_smoothing:
            s = y_pred.dtype.type(self.label_smoothing)
            t = t * (1 - s) + s / y_pred.dtype.type(2)
        return t

    def _mean_and_scale(self, elementwise, y_pred):
        """Keras's reduction: the mean over the last axis, then over the rest (the batch); and ``1 / M``,
        the weight of each element in it (M elements: every mean is over equally many)."""
        value = self._batch_mean(np.mean(elementwise, axis=-1), y_pred)
        return value, y_pred.dtype.type(1) / y_pred.dtype.type(max(y_pred.size, 1))

    def loss_and_gradient_from_logits(self, y_true, z):
        """``l = max(z, 0) - z t + log(1 + exp(-|z|))`` (= ``-t log sigmoid(z) - (1 - t) log(1 - sigmoid(z))``
        without overflow, TF's formula); ``dl/dz = sigmoid(z) - t``."""
        z = np.asarray(z)
        t = self.targets(y_true, z)
        zero = z.dtype.type(0)
        elementwise = np.maximum(z, zero) - z * t + np.log1p(np.exp(-np.abs(z)))
        value, scale = self._mean_and_scale(elementwise, z)
        return value, (sigmoid_forward(z)[0] - t) * scale

    def _loss_and_gradient_from_probabilities(self, y_true, p):
        """``l = -(t log q + (1 - t) log(1 - q))``, ``q = clip(p, eps, 1 - eps)``; the clip passes the gradient
        only where it did not clip."""
        p = np.asarray(p)
        t = self.targets(y_true, p)
        eps = p.dtype.type(EPSILON)
        one = p.dtype.type(1)
        q = np.clip(p, eps, one - eps)
        elementwise = -(t * np.log(q) + (one - t) * np.log(one - q))
        value, scale = self._mean_and_scale(elementwise, p)
        inside = (p >= eps) & (p <= one - eps)
        return value, ((-t / q + (one - t) / (one - q)) * inside * scale).astype(p.dtype)



class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def loss_and_gradient(self, y_true, y_pred):
        t = np.asarray(y_true, dtype=y_pred.dtype).reshape(y_pred.shape)
        diff = y_pred - t
        per_row = np.mean(diff.reshape(len(diff), -1) ** 2, axis=-1)
        n, d = len(diff), max(diff[0].size, 1) if len(diff) else 1
        return self._batch_mean(per_row, y_pred), (2 * diff / y_pred.dtype.type(d * max(n, 1))).astype(y_pred.dtype)


LOSSES = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
    "binary_crossentropy": BinaryCrossentropy,
    "mean_squared_error": MeanSquaredError,
    "mse": MeanSquaredError,
}


def get(identifier) -> Loss:
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in LOSSES:
        return LOSSES[identifier]()
    raise ValueError(f"unknown loss {identifier!r}; choose one of {sorted(LOSSES)} or pass a Loss")
