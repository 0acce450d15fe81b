"""The layers whose training forward looks across the batch, made to see the *global* batch when each rank
holds a slice of it, so that a data-parallel step computes exactly what one process computes on the whole batch.

Rank ``r`` holds ``n_r`` of the ``N = sum_r n_r`` examples of the global batch (rows ``offset_r .. offset_r +
n_r`` of it). Its loss is the mean over its own examples, so its upstream gradient is ``dy_r = (N / n_r) *
dy_global`` on its rows; the gradient averaging (``data_parallel``) later weights each rank by ``n_r / N``.

**BatchNormalization (synchronised batch statistics).** Per channel, over the ``M = sum_r M_r`` values of the
global batch (``M_r = n_r * H * W``), with sums ``S`` added in rank order (``collectives.sum_in_rank_order``)::

    forward:   mean = S(sum_rows x) / M               var = S(sum_rows (x - mean)^2) / M     (two-pass, float64)
               the moving statistics are updated with these global values: identical on every rank
    backward:  with g = (n_r / N) dy_r (the global gradient on this rank's rows),
               mean_g  = S(sum_rows g) / M             mean_gx = S(sum_rows g * xhat) / M
               dx_r    = (N / n_r) * gamma / s * (g - mean_g - xhat * mean_gx)     (back in the rank's scale)
               dgamma_r = sum_rows dy_r * xhat,  dbeta_r = sum_rows dy_r           (the averaging weights them)

That is the single-process formula (``numcnn.layers.normalization``) with every sum taken over the global
batch: the same values up to the order of float additions. Cost: per layer and step, three gathers of 2C
(forward) or 2C (backward) float64 values. A layer that is frozen (``trainable = False``) or in inference mode
uses its moving statistics and needs no communication.

**Dropout (the global batch's mask).** Every rank draws the mask of the *global* batch from the layer's
generator (identical on every rank: same seed or broadcast state) and keeps its own rows of it: the masks are
those of the single-process run and every generator advances alike. (The mask of the whole batch is drawn on
every rank: R times the random numbers, cheap next to the layer's forward.)

``synchronized(model, comm, shards)`` installs both for the duration of a ``with`` block, per layer instance
(the class and every other model are left alone), and takes them away afterwards.
"""

from __future__ import annotations

import contextlib
import types

import numpy as np

from .. import kernels
from ..layers import BatchNormalization, Dropout
from .collectives import sum_in_rank_order


def _rows(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1])


def _global_moments(comm, x: np.ndarray):
    """``(mean, var, M, M_r)`` of each channel over every rank's ``x``; float64, two-pass, rank-order sums."""
    rows = _rows(x)
    local_count = rows.shape[0]
    first = sum_in_rank_order(comm, np.append(rows.sum(axis=0, dtype=np.float64), float(local_count)))
    count = first[-1]
    mean = first[:-1] / count
    deviation = rows.astype(np.float64) - mean
    var = sum_in_rank_order(comm, np.einsum("mc,mc->c", deviation, deviation)) / count
    return mean, var, count, local_count


def _synchronized_batchnorm_forward(self, x, training=False):
    x = np.asarray(x)
    if not (bool(training) and self.trainable):
        self._sync_counts = None
        return type(self).forward(self, x, training)  # moving statistics: nothing to share
    self._check_input(x)
    dtype = x.dtype
    channels = x.shape[-1]
    gamma = self.params["gamma"] if self.scale else np.ones(channels, dtype)
    beta = self.params["beta"] if self.center else np.zeros(channels, dtype)
    mean64, var64, count, local_count = _global_moments(self._sync_comm, x)
    mean, var = mean64.astype(dtype), var64.astype(dtype)
    self._update_moving_statistics(mean, var)
    y, self._cache = kernels.batchnorm_forward(x, gamma, beta, mean, var, self.epsilon, True)
    self._sync_counts = (count, local_count)
    return y


def _synchronized_batchnorm_backward(self, dy):
    if self._cache is None or self._sync_counts is None:
        return type(self).backward(self, dy)
    x, shape, gamma, mean, inv_std, _ = self._cache
    count, local_count = self._sync_counts
    dtype = x.dtype
    dy = _rows(np.asarray(dy, dtype=dtype))
    xhat = (x - mean) * inv_std
    sum_dy = dy.sum(axis=0, dtype=np.float64)
    sum_dy_xhat = np.einsum("mc,mc->c", dy.astype(np.float64), xhat.astype(np.float64))
    share = local_count / count  # n_r / N: this rank's dy in the global loss's scale
    sums = sum_in_rank_order(self._sync_comm, np.concatenate([sum_dy, sum_dy_xhat]) * share)
    channels = x.shape[1]
    back = count / local_count  # N / n_r: back to this rank's scale
    mean_dy = (sums[:channels] / count * back).astype(dtype)
    mean_dy_xhat = (sums[channels:] / count * back).astype(dtype)
    dx = (gamma * inv_std) * (dy - mean_dy - xhat * mean_dy_xhat)
    self.grads = {}
    if self.scale:
        self.grads["gamma"] = sum_dy_xhat.astype(dtype)
    if self.center:
        self.grads["beta"] = sum_dy.astype(dtype)
    return dx.astype(dtype, copy=False).reshape(shape)


def _synchronized_dropout_forward(self, x, training=False):
    if not training or self.rate == 0:
        return type(self).forward(self, x, training)
    if self.rng is None:
        raise RuntimeError(f"Dropout {self.name!r} has no random generator")
    shards = self._sync_shards
    global_shape = (shards.global_size,) + tuple(x.shape[1:])
    mask = self.keep_mask(self._mask_shape(global_shape))  # the whole batch's draw
    if mask.shape[0] != 1:  # (noise_shape with 1 on the batch axis: one mask row shared by all examples)
        mask = mask[shards.offset:shards.offset + shards.count]
    y, self._cache = kernels.dropout_forward(x, mask, self.rate)
    return y


@contextlib.contextmanager
def synchronized(model, comm, shards):
    """Within the block, ``model``'s BatchNormalization layers use global-batch statistics and its Dropout
    layers the global batch's masks (see the module docstring); ``shards`` says which rows this rank holds."""
    patched = []
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            layer._sync_comm, layer._sync_counts = comm, None
            layer.forward = types.MethodType(_synchronized_batchnorm_forward, layer)
            layer.backward = types.MethodType(_synchronized_batchnorm_backward, layer)
            patched.append((layer, ("forward", "backward", "_sync_comm", "_sync_counts")))
        elif isinstance(layer, Dropout):
            layer._sync_shards = shards
            layer.forward = types.MethodType(_synchronized_dropout_forward, layer)
            patched.append((layer, ("forward", "_sync_shards")))
    try:
        yield
    finally:
        for layer, names in patched:  # the instance attributes go: the class's methods show through again
            for name in names:
                layer.__dict__.pop(name, None)
