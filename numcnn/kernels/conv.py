"""Fast Conv2D: im2col (Numba) + one BLAS matrix product, and the reverse for the backward pass.

Same signatures and results as ``reference.conv2d_forward`` / ``conv2d_backward`` (read those for the math).

im2col unrolls every receptive field into one row, ordered (kh, kw, c_in) — the order of
``w.reshape(KH*KW*C_in, C_out)`` — so the whole convolution becomes one matrix product that BLAS runs near
peak speed::

    cols[(n, r, c), (p, q, k)] = x_pad[n, r*sh + p, c*sw + q, k]        (N*OH*OW, KH*KW*C_in)
    y = cols @ W2 + b                                                      (N*OH*OW, C_out)

Backward: ``dW2 = colsᵀ @ dY``, ``db = sum of dY's rows``, ``dcols = dY @ W2ᵀ``, and col2im adds every
``dcols`` entry back to the pixel it was copied from. Several output positions read the same pixel, so the
adds must not race: each image is handled by one thread (``prange`` over images), in a fixed order, which
also makes the result bit-identical whatever the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .reference import conv2d_geometry, pad_nhwc


@njit(parallel=True, cache=True)
def im2col(x_pad, kh, kw, sh, sw, oh, ow, cols):
    """Fill ``cols`` (N*OH*OW, KH*KW*C) with the receptive fields of ``x_pad`` (N, HP, WP, C)."""
    n_images, _, _, channels = x_pad.shape
    for n in prange(n_images):
        for r in range(oh):
            for c in range(ow):
                row = (n * oh + r) * ow + c
                for p in range(kh):
                    for q in range(kw):
                        start = (p * kw + q) * channels
                        for k in range(channels):
                            cols[row, start + k] = x_pad[n, r * sh + p, c * sw + q, k]


@njit(parallel=True, cache=True)
def col2im(dcols, kh, kw, sh, sw, oh, ow, dx_pad):
    """Scatter-add ``dcols`` back into ``dx_pad`` (zeroed by the caller); one image per thread: no races."""
    n_images, _, _, channels = dx_pad.shape
    for n in prange(n_images):
        for r in range(oh):
            for c in range(ow):
                row = (n * oh + r) * ow + c
                for p in range(kh):
                    for q in range(kw):
                        start = (p * kw + q) * channels
                        for k in range(channels):
                            dx_pad[n, r * sh + p, c * sw + q, k] += dcols[row, start + k]


def conv2d_forward(x, w, b, strides=(1, 1), padding="valid"):
    """``y[n, r, c, j] = b[j] + sum_{p,q,k} x_pad[n, r*sh+p, c*sw+q, k] w[p, q, k, j]`` via im2col + GEMM."""
    oh, ow, pads = conv2d_geometry(x.shape, w.shape, strides, padding)
    x_pad = pad_nhwc(x, pads) if any(pads) else np.ascontiguousarray(x)
    y, cols = im2col_matmul(x_pad, w, strides, oh, ow)
    y += b
    return y, (x.shape, x_pad.shape, cols, w, strides, pads)


def im2col_matmul(x_pad, w, strides, oh, ow):
    """``z = im2col(x_pad) @ W2`` reshaped to (N, OH, OW, C_out), without bias; returns ``(z, cols)``."""
    kh, kw, c_in, c_out = w.shape
    n_images = x_pad.shape[0]
    cols = np.empty((n_images * oh * ow, kh * kw * c_in), dtype=x_pad.dtype)
    im2col(x_pad, kh, kw, strides[0], strides[1], oh, ow, cols)
    z = cols @ w.reshape(kh * kw * c_in, c_out)
    return z.reshape(n_images, oh, ow, c_out), cols


def conv2d_backward(dy, cache, need_dx=True):
    """``dW2 = colsᵀ dY``, ``db = Σ dY``, ``dx = col2im(dY W2ᵀ)`` (see the module docstring).

    With ``need_dx=False`` (a model's first layer during training) ``dx`` is skipped and returned as None."""
    x_shape, pad_shape, cols, w, strides, pads = cache
    kh, kw, c_in, c_out = w.shape
    n_images, oh, ow, _ = dy.shape
    dy2 = np.ascontiguousarray(dy).reshape(-1, c_out)
    w2 = w.reshape(kh * kw * c_in, c_out)
    dw = (cols.T @ dy2).reshape(w.shape)
    db = dy2.sum(axis=0)
    if not need_dx:
        return None, dw, db
    dcols = dy2 @ w2.T
    dx_pad = np.zeros(pad_shape, dtype=dy.dtype)
    col2im(dcols, kh, kw, strides[0], strides[1], oh, ow, dx_pad)
    top, _, left, _ = pads
    dx = dx_pad[:, top:top + x_shape[1], left:left + x_shape[2], :]
    return np.ascontiguousarray(dx), dw, db
