"""Fast batch normalization and dropout kernels (Numba).

Same signatures and results as ``reference.batchnorm_*`` / ``reference.dropout_*``.

**Batch normalization** normalises each channel (the last axis) over every other axis. View ``x`` as a
matrix ``(M, C)`` of ``M = N*H*W`` rows (``M = N`` after a Dense layer)::

    mean[c] = 1/M sum_m x[m, c]              var[c] = 1/M sum_m (x[m, c] - mean[c])^2     (biased: / M)
    xhat[m, c] = (x[m, c] - mean[c]) / sqrt(var[c] + eps)        y[m, c] = gamma[c] xhat[m, c] + beta[c]

    mean, var = batchnorm_moments(x)                                   # the batch's statistics
    y, cache = batchnorm_forward(x, gamma, beta, mean, var, epsilon, batch_statistics, relu=False)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)

``batch_statistics`` says whether ``mean``/``var`` were computed from this ``x`` (training) or are constants
(the moving statistics at inference); the backward differs (see ``batchnorm_backward``). With ``relu=True``
the forward returns ``max(y, 0)`` in the same pass, the bits of ``kernels.relu_forward(y)``: a
BatchNormalization -> ReLU pair makes one pass over memory instead of two (``layers.BatchNormalization.
forward_relu``; the ReLU's backward, ``dy`` where ``y > 0``, then needs only this output).

Precision: the statistics of a float32 batch are **accumulated in float64** (each float32 value is exact in
float64; the sums of up to millions of values then lose nothing a float32 result could show) and rounded to
float32 once. The variance is two-pass, ``sum (x - mean)^2`` with the float64 mean, not ``E[x^2] - mean^2``,
which cancels catastrophically when ``|mean| >> std``. TensorFlow (``tf.nn.moments``) is also two-pass but sums in
float32: on a float32 batch of 32x10x10x4 values around 5 it is ~2e-6 relative from the float64 truth while
numcnn's are the truth rounded to float32 once (``tests/test_layers_normalization.py`` measures both). The
normalisation itself and ``dx`` are computed in the input's dtype, like TF; the parameter-gradient sums again
accumulate in float64.

**Dropout** (inverted): ``y = x * (1 / (1 - rate))`` where ``keep``, else 0 — TensorFlow's formula (read in
the source of ``tf.nn.experimental.stateless_dropout``, which Keras 3's Dropout calls: ``x`` times the scale
converted to x's dtype). The mask is drawn by the layer (randomness stays out of the kernels) and may be
smaller than ``x``: it broadcasts (Keras's ``noise_shape``)::

    y, cache = dropout_forward(x, keep, rate)        dx = dropout_backward(dy, cache)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .parallel import ELEMENTWISE_BLOCK, block_span, run_elementwise


# --------------------------------------------------------------------------------------------
# Batch normalization
# --------------------------------------------------------------------------------------------
def _as_rows(a: np.ndarray) -> np.ndarray:
    """``(..., C)`` -> ``(M, C)``, contiguous (a view when it already is)."""
    a = np.ascontiguousarray(a)
    return a.reshape(-1, a.shape[-1])


@njit(cache=True)
def _moments64(x):
    """Per-column mean and biased variance of ``x`` (M, C), accumulated in float64, two-pass."""
    rows, channels = x.shape
    mean = np.zeros(channels, dtype=np.float64)
    var = np.zeros(channels, dtype=np.float64)
    for m in range(rows):  # rows outer, channels inner: the inner loop runs along memory and vectorises
        for c in range(channels):
            mean[c] += x[m, c]
    for c in range(channels):
        mean[c] /= rows
    for m in range(rows):
        for c in range(channels):
            deviation = x[m, c] - mean[c]  # float32 - float64 is computed in float64
            var[c] += deviation * deviation
    for c in range(channels):
        var[c] /= rows
    return mean, var


def batchnorm_moments(x):
    """``(mean, var)`` of each channel of ``x`` (..., C) over all other axes, in ``x``'s dtype (var biased)."""
    mean, var = _moments64(_as_rows(x))
    return mean.astype(x.dtype), var.astype(x.dtype)


@njit(nogil=True, cache=True)
def _normalize(x, mean, inv_std, gamma, beta, relu, y):
    """``y = gamma * ((x - mean) * inv_std) + beta`` on rows (M, C), then ``max(y, 0)`` if ``relu`` (as
    ``kernels.relu_forward``: ``y if y > 0 else 0``). Serial and without the GIL: numcnn's worker threads
    call it on chunks of a convolution's output (``normalize_rows``)."""
    zero = y.dtype.type(0)
    for m in range(x.shape[0]):
        for c in range(x.shape[1]):
            value = gamma[c] * ((x[m, c] - mean[c]) * inv_std[c]) + beta[c]
            y[m, c] = zero if relu and not value > 0 else value


def _inverse_std(var, epsilon, dtype):
    """``1 / sqrt(var + eps)`` in ``dtype`` (``dtype.type(eps)``: a Python float would promote float32)."""
    one = dtype.type(1)
    return (one / np.sqrt(var.astype(dtype) + dtype.type(epsilon))).astype(dtype)


def batchnorm_terms(dtype, gamma, beta, mean, var, epsilon):
    """``(gamma, beta, mean, inv_std)`` as ``batchnorm_forward`` uses them: contiguous, in ``dtype``."""
    dtype = np.dtype(dtype)
    gamma, beta, mean = (np.ascontiguousarray(a, dtype=dtype) for a in (gamma, beta, mean))
    return gamma, beta, mean, _inverse_std(var, epsilon, dtype)


def batchnorm_forward(x, gamma, beta, mean, var, epsilon, batch_statistics, relu=False):
    """``y = gamma * (x - mean) / sqrt(var + eps) + beta`` per channel (``max(y, 0)`` with ``relu``); shapes
    x (..., C), the rest (C,)."""
    rows = _as_rows(x)
    gamma, beta, mean, inv_std = batchnorm_terms(x.dtype, gamma, beta, mean, var, epsilon)
    y = np.empty_like(rows)
    _normalize(rows, mean, inv_std, gamma, beta, relu, y)
    return y.reshape(x.shape), batchnorm_cache(rows, x.shape, (gamma, beta, mean, inv_std), batch_statistics)


def batchnorm_cache(rows, shape, terms, batch_statistics=False):
    """The cache ``batchnorm_backward`` takes, for input rows ``rows`` (M, C) of an input of ``shape``."""
    gamma, _, mean, inv_std = terms
    return rows, shape, gamma, mean, inv_std, bool(batch_statistics)


def normalize_rows(x_rows, terms, y_rows, relu=False) -> None:
    """``batchnorm_forward``'s output for the rows ``x_rows`` (M, C) (with ``relu``: its ReLU), written to
    ``y_rows``, with the moving statistics in ``terms`` (``batchnorm_terms``): the same operations, callable
    from numcnn's worker threads on one chunk of a convolution's output while it is still in cache
    (``kernels.conv``'s ``epilogue``)."""
    gamma, beta, mean, inv_std = terms
    _normalize(x_rows, mean, inv_std, gamma, beta, relu, y_rows)


@njit(cache=True)
def _gradient_sums64(dy, x, mean, inv_std):
    """``sum_m dy`` and ``sum_m dy * xhat`` per channel, accumulated in float64."""
    rows, channels = x.shape
    sum_dy = np.zeros(channels, dtype=np.float64)
    sum_dy_xhat = np.zeros(channels, dtype=np.float64)
    for m in range(rows):
        for c in range(channels):
            xhat = (x[m, c] - mean[c]) * inv_std[c]
            sum_dy[c] += dy[m, c]
            sum_dy_xhat[c] += dy[m, c] * xhat
    return sum_dy, sum_dy_xhat


@njit(cache=True)
def _dx_through_batch_statistics(dy, x, mean, inv_std, scale, mean_dy, mean_dy_xhat, dx):
    """``dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat))``, ``scale = gamma * inv_std``."""
    for m in range(x.shape[0]):
        for c in range(x.shape[1]):
            xhat = (x[m, c] - mean[c]) * inv_std[c]
            dx[m, c] = scale[c] * (dy[m, c] - mean_dy[c] - xhat * mean_dy_xhat[c])


def batchnorm_backward(dy, cache):
    """Returns ``(dx, dgamma, dbeta)``: ``dbeta = sum dy``, ``dgamma = sum dy * xhat`` (sums over every axis but
    the last); ``dx`` through the batch statistics when they were computed from ``x``, else ``dy * scale``."""
    x, shape, gamma, mean, inv_std, batch_statistics = cache
    dtype = x.dtype
    dy = _as_rows(np.asarray(dy, dtype=dtype))
    sum_dy, sum_dy_xhat = _gradient_sums64(dy, x, mean, inv_std)
    scale = gamma * inv_std
    if batch_statistics:
        rows = x.shape[0]
        dx = np.empty_like(x)
        _dx_through_batch_statistics(dy, x, mean, inv_std, scale, (sum_dy / rows).astype(dtype),
                                     (sum_dy_xhat / rows).astype(dtype), dx)
    else:
        dx = dy * scale  # the moving statistics are constants: y is affine in x
    return dx.reshape(shape), sum_dy_xhat.astype(dtype), sum_dy.astype(dtype)


# --------------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------------
@njit(nogil=True, cache=True)
def _scale_kept_span(x, keep, scale, y, start, stop):
    zero = y.dtype.type(0)
    x, keep, y = x[start:stop], keep[start:stop], y[start:stop]  # loops from 0: vectorises
    for i in range(x.size):
        y[i] = x[i] * scale if keep[i] else zero


@njit(parallel=True, cache=True)
def _scale_kept_parallel(x, keep, scale, y):
    for block in prange(-(-x.size // ELEMENTWISE_BLOCK)):
        _scale_kept_span(x, keep, scale, y, *block_span(block, x.size))


def _masked_scale(x, keep, scale):
    """``x * scale`` where ``keep`` (broadcast to x's shape), else 0: one Numba pass (``np.where`` over a
    temporary: 7.7 ms of CPU for 256 x 16 x 16 x 32 floats, this: 0.5)."""
    x = np.ascontiguousarray(x)
    keep = np.ascontiguousarray(np.broadcast_to(keep, x.shape))
    y = np.empty_like(x)
    run_elementwise(_scale_kept_span, _scale_kept_parallel, x.size, x.reshape(-1), keep.reshape(-1), scale,
                    y.reshape(-1))
    return y


def dropout_forward(x, keep, rate):
    """``y = x * (1 / (1 - rate))`` where ``keep`` (a boolean mask broadcastable to x), else 0."""
    scale = x.dtype.type(1.0 / (1.0 - rate))
    return _masked_scale(x, keep, scale), (keep, scale)


def dropout_backward(dy, cache):
    """``dx = dy * (1 / (1 - rate))`` where the unit was kept, else 0 (the forward is linear in x)."""
    keep, scale = cache
    return _masked_scale(np.asarray(dy, dtype=scale.dtype), keep, scale)
