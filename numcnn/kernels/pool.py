"""Fast max pooling (Numba): same signatures and results as ``reference.maxpool2d_forward/backward``.

Forward stores, per output, the flat position ``row * W + col`` of the window's first maximum in row-major
order (TF's tie rule; strict ``>`` keeps the first). Positions in the 'same' padding are skipped, which is
the same as padding with -inf. Backward adds each output gradient to that position; overlapping windows
(strides < pool size) add up. One thread per image: no races, bit-identical for any thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .reference import conv2d_geometry


@njit(parallel=True, cache=True)
def _maxpool_forward(x, bias, relu, ph, pw, sh, sw, top, left, y, winner):
    # Channels are the innermost loop (contiguous in NHWC, so it vectorises). Each window's positions come in
    # row-major order: the first initialises (best, best_at), each later one replaces a channel's value only
    # if strictly greater, which keeps each channel's *first* maximum (TF's tie rule).
    # A later position writes into the spare buffers, which are then swapped in: written in place,
    # ``best[j] = value if better else best[j]`` compiles to a masked store ("store only where better"),
    # which AMD CPUs execute slowly: the whole scan ran 2.5x slower with it (measured here).
    # ``bias`` (empty: none) and ``relu`` serve the fused Conv2D epilogue (kernels/fused.py): the conv's
    # bias is added to every value *before* comparing, exactly as the unfused ops round it.
    n_images, height, width, channels = x.shape
    add_bias = bias.size > 0
    _, oh, ow, _ = y.shape
    for n in prange(n_images):
        best, spare = np.empty(channels, dtype=y.dtype), np.empty(channels, dtype=y.dtype)
        best_at, spare_at = np.empty(channels, dtype=np.int32), np.empty(channels, dtype=np.int32)
        for r in range(oh):
            for c in range(ow):
                first = True
                for p in range(ph):
                    row = r * sh + p - top
                    if row < 0 or row >= height:
                        continue
                    for q in range(pw):
                        col = c * sw + q - left
                        if col < 0 or col >= width:
                            continue
                        values, at = x[n, row, col], row * width + col
                        if first:
                            for k in range(channels):
                                best[k] = values[k] + bias[k] if add_bias else values[k]
                                best_at[k] = at
                            first = False
                        else:
                            for k in range(channels):
                                value = values[k] + bias[k] if add_bias else values[k]
                                better = value > best[k]
                                spare[k] = value if better else best[k]
                                spare_at[k] = at if better else best_at[k]
                            best, spare = spare, best
                            best_at, spare_at = spare_at, best_at
                for k in range(channels):
                    # ReLU after the max equals the max after ReLU (see kernels/fused.py)
                    y[n, r, c, k] = max(best[k], 0) if relu else best[k]
                    winner[n, r, c, k] = best_at[k]


@njit(parallel=True, cache=True, error_model="numpy")  # no ZeroDivisionError check on `at // width`
def _maxpool_backward(dy, winner, width, relu_y, dx):
    # ``dx`` is zeroed here, one image per thread, just before that image's adds land on it (still in cache).
    # ``relu_y`` (empty: none) serves the fused Conv2D backward (kernels/fused.py): ReLU's derivative drops
    # the gradient of every output the ReLU clipped to 0.
    n_images, oh, ow, channels = dy.shape
    mask = relu_y.size > 0
    for n in prange(n_images):
        dx[n] = 0
        for r in range(oh):
            for c in range(ow):
                for k in range(channels):
                    at = winner[n, r, c, k]
                    passes = not mask or relu_y[n, r, c, k] > 0  # (NaN fails, as `y > 0` says)
                    dx[n, at // width, at % width, k] += dy[n, r, c, k] if passes else 0


def maxpool2d_forward(x, pool_size=(2, 2), strides=None, padding="valid"):
    """``y[n, r, c, k] = max over the window``; the cache keeps each window's winner (see module docstring)."""
    strides = pool_size if strides is None else strides
    oh, ow, (top, _, left, _) = conv2d_geometry(x.shape, pool_size, strides, padding)
    x = np.ascontiguousarray(x)
    y = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
    winner = np.empty(y.shape, dtype=np.int32)
    no_bias = np.zeros(0, dtype=x.dtype)
    _maxpool_forward(x, no_bias, False, pool_size[0], pool_size[1], strides[0], strides[1], top, left, y, winner)
    return y, (x.shape, winner)


def maxpool2d_backward(dy, cache):
    """``dx[winner] += dy`` for every output."""
    x_shape, winner = cache
    dx = np.empty(x_shape, dtype=dy.dtype)
    no_relu = np.zeros((0, 0, 0, 0), dtype=dy.dtype)
    _maxpool_backward(np.ascontiguousarray(dy), winner, x_shape[2], no_relu, dx)
    return dx
