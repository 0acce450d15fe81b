"""Fast upsampling and zero padding: same signatures and results as the ``reference`` functions of the same
names. Nearest upsampling and zero padding do no arithmetic in their forward pass, so whole-array copies
(vectorised NumPy) are the fast way; their backwards are a block sum and a crop. Bilinear upsampling is a
Numba loop over the outputs, one image per thread.

* Nearest-neighbour upsampling by ``size = (sh, sw)``: ``y[n, r, c, k] = x[n, r // sh, c // sw, k]``, i.e.
  each pixel repeated ``sh`` times down and ``sw`` times across (Keras runs ``repeat`` on axis 1, then 2).
  Backward: each input pixel was copied into one ``sh x sw`` block, so it receives the block's sum,
  ``dx[n, i, j, k] = sum_{a < sh, b < sw} dy[n, i*sh + a, j*sw + b, k]``.
* Bilinear upsampling: TF's ResizeBilinear with half-pixel centres (what Keras's UpSampling2D calls), each
  output a blend of the 2x2 input pixels around its source position, with TF's positions and weights
  (computed in float32, as TF does for every dtype: see ``reference.bilinear_taps``) and TF's order of
  operations. Backward: each of the four pixels gets ``dy`` times its weight.
* Zero padding by ``((top, bottom), (left, right))``: ``y[n, top + i, left + j, k] = x[n, i, j, k]``, zeros
  around. Backward: the padded cells are constants, so ``dx`` is ``dy`` cropped back to the input's cells.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

INTERPOLATIONS = ("nearest", "bilinear")


def upsampling2d_forward(x, size=(2, 2), interpolation="nearest"):
    """(N, H, W, C) -> (N, H*sh, W*sw, C). Nearest: ``y[n, r, c, k] = x[n, r // sh, c // sw, k]``;
    bilinear: see the module docstring."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    sh, sw = size
    cache = (x.shape, (sh, sw), interpolation)
    if interpolation == "nearest":
        return np.repeat(np.repeat(x, sh, axis=1), sw, axis=2), cache
    n_images, height, width, channels = x.shape
    y = np.empty((n_images, height * sh, width * sw, channels), dtype=x.dtype)
    _bilinear_forward(np.ascontiguousarray(x), *bilinear_taps(height, sh, x.dtype),
                      *bilinear_taps(width, sw, x.dtype), y)
    return y, cache


def upsampling2d_backward(dy, cache):
    """Nearest: ``dx[n, i, j, k]`` = the sum of ``dy`` over the ``sh x sw`` block that copied ``x[n, i, j, k]``.
    Bilinear: each output's ``dy``, times each of its four weights, added to the pixel it weighs."""
    (n_images, height, width, channels), (sh, sw), interpolation = cache
    if interpolation == "nearest":
        # Row r = i*sh + a of dy splits into (i, a), column c = j*sw + b into (j, b): sum over a and b.
        blocks = dy.reshape(n_images, height, sh, width, sw, channels)
        return blocks.sum(axis=(2, 4), dtype=dy.dtype)
    dx = np.empty((n_images, height, width, channels), dtype=dy.dtype)
    _bilinear_backward(np.ascontiguousarray(dy), *bilinear_taps(height, sh, dy.dtype),
                       *bilinear_taps(width, sw, dy.dtype), dx)
    return dx


def bilinear_taps(in_size, scale, dtype):
    """``reference.bilinear_taps`` for all outputs at once (the same float32 operations, so the same bits):
    arrays ``lower``, ``upper``, ``lerp`` and ``1 - lerp`` (the weights cast to ``dtype``)."""
    f32 = np.float32
    ratio = f32(in_size) / f32(in_size * scale)
    source = (np.arange(in_size * scale, dtype=f32) + f32(0.5)) * ratio - f32(0.5)
    floor = np.floor(source)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(source), in_size - 1).astype(np.int64)
    lerp = source - floor
    return lower, upper, lerp.astype(dtype), (f32(1) - lerp).astype(dtype)


@njit(parallel=True, cache=True)
def _bilinear_forward(x, row_lo, row_hi, row_lerp, row_rest, col_lo, col_hi, col_lerp, col_rest, y):
    """``y = top + (bottom - top) * ly``, ``top``/``bottom`` blended across by ``lx`` (TF's order);
    channels innermost (contiguous in NHWC). ``row_rest``/``col_rest`` (``1 - lerp``) serve the backward."""
    for n in prange(x.shape[0]):
        for r in range(y.shape[1]):
            a, b, ly = row_lo[r], row_hi[r], row_lerp[r]
            for c in range(y.shape[2]):
                c0, c1, lx = col_lo[c], col_hi[c], col_lerp[c]
                for k in range(y.shape[3]):
                    top = x[n, a, c0, k] + (x[n, a, c1, k] - x[n, a, c0, k]) * lx
                    bottom = x[n, b, c0, k] + (x[n, b, c1, k] - x[n, b, c0, k]) * lx
                    y[n, r, c, k] = top + (bottom - top) * ly


@njit(parallel=True, cache=True)
def _bilinear_backward(dy, row_lo, row_hi, row_lerp, row_rest, col_lo, col_hi, col_lerp, col_rest, dx):
    """The four shares of each output's ``dy`` (TF's products: ``(dy * (1 - ly)) * (1 - lx)`` etc.); one
    image per thread, so no two threads add to the same pixel."""
    for n in prange(dy.shape[0]):
        dx[n] = 0
        for r in range(dy.shape[1]):
            a, b, ly, ly_rest = row_lo[r], row_hi[r], row_lerp[r], row_rest[r]
            for c in range(dy.shape[2]):
                c0, c1, lx, lx_rest = col_lo[c], col_hi[c], col_lerp[c], col_rest[c]
                for k in range(dy.shape[3]):
                    d_top, d_bottom = dy[n, r, c, k] * ly_rest, dy[n, r, c, k] * ly
                    dx[n, a, c0, k] += d_top * lx_rest
                    dx[n, a, c1, k] += d_top * lx
                    dx[n, b, c0, k] += d_bottom * lx_rest
                    dx[n, b, c1, k] += d_bottom * lx


def zero_padding2d_forward(x, padding=((1, 1), (1, 1))):
    """(N, H, W, C) -> (N, top + H + bottom, left + W + right, C): ``x`` in the middle, zeros around."""
    (top, bottom), (left, right) = padding
    n_images, height, width, channels = x.shape
    y = np.zeros((n_images, top + height + bottom, left + width + right, channels), dtype=x.dtype)
    y[:, top:top + height, left:left + width, :] = x
    return y, (x.shape, ((top, bottom), (left, right)))


def zero_padding2d_backward(dy, cache):
    """``dx = dy`` without the padded rows and columns (they do not depend on ``x``)."""
    (_, height, width, _), ((top, _), (left, _)) = cache
    return np.ascontiguousarray(dy[:, top:top + height, left:left + width, :])
