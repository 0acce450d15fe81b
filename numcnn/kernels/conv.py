"""Fast Conv2D: im2col (Numba) + one BLAS matrix product, and the reverse for the backward pass.

Same signatures and results as ``reference.conv2d_forward`` / ``conv2d_backward`` (read those for the math).

im2col unrolls every receptive field into one row, ordered (kh, kw, c_in) — the order of
``w.reshape(KH*KW*C_in, C_out)`` — so the whole convolution becomes one matrix product that BLAS runs near
peak speed::

    cols[(n, r, c), (p, q, k)] = x_pad[n, r*sh + p, c*sw + q, k]        (N*OH*OW, KH*KW*C_in)
    y = cols @ W2 + b                                                      (N*OH*OW, C_out)

Backward: ``dW2 = colsᵀ @ dY``, ``db = sum of dY's rows``, ``dcols = dY @ W2ᵀ``, and col2im adds every
``dcols`` entry back to the pixel it was copied from. Several output positions read the same pixel, so the
adds must not race: each chunk of images is handled by one thread, in a fixed order, which also makes the
result bit-identical whatever the thread count.

The batch goes through in chunks of a few images whose ``cols`` matrix has about ``CHUNK_BYTES``
(``parallel.image_chunks``): im2col, GEMM and col2im then work on data still in cache (one 14.7 MB matrix
for a batch of 128 in the seed model went to main memory and back; chunking made a training step ~20%
faster; 4 MB beat 2, 8 and 16 MB). The chunks run on numcnn's threads, each calling BLAS single-threaded
(``kernels.parallel`` says why and how the result stays the same for any thread count). ``cols`` is rebuilt
in the backward rather than kept: im2col is cheap next to the GEMMs, and memory use no longer grows with it.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit

from . import winograd
from .parallel import image_chunks, run_chunks
from .reference import conv2d_geometry, pad_nhwc


@njit(nogil=True, cache=True)
def im2col(x_pad, kh, kw, sh, sw, oh, ow, cols):
    """Fill ``cols`` (N*OH*OW, KH*KW*C) with the receptive fields of ``x_pad`` (N, HP, WP, C). Serial (the
    callers run chunks of images on several threads) and without the GIL."""
    n_images, _, _, channels = x_pad.shape
    for n in range(n_images):
        for r in range(oh):
            for c in range(ow):
                row = (n * oh + r) * ow + c
                for p in range(kh):
                    for q in range(kw):
                        start = (p * kw + q) * channels
                        for k in range(channels):
                            cols[row, start + k] = x_pad[n, r * sh + p, c * sw + q, k]


@njit(nogil=True, cache=True)
def col2im(dcols, kh, kw, sh, sw, oh, ow, dx_pad):
    """Scatter-add ``dcols`` back into ``dx_pad`` (zeroed by the caller), in a fixed order. Serial and without
    the GIL, like ``im2col``: one chunk of images per thread, so no two threads add to the same pixel."""
    n_images, _, _, channels = dx_pad.shape
    for n in range(n_images):
        for r in range(oh):
            for c in range(ow):
                row = (n * oh + r) * ow + c
                for p in range(kh):
                    for q in range(kw):
                        start = (p * kw + q) * channels
                        for k in range(channels):
                            dx_pad[n, r * sh + p, c * sw + q, k] += dcols[row, start + k]


# Opt-in switch for Winograd (see use_winograd): NUMCNN_WINOGRAD=1 in the environment, or set this to True.
WINOGRAD_ENABLED = os.environ.get("NUMCNN_WINOGRAD", "") == "1"


def use_winograd(x_shape, w_shape, strides) -> bool:
    """The one place that decides whether ``conv2d_forward`` runs Winograd F(2x2, 3x3) (``kernels.winograd``)
    instead of im2col + GEMM.

    Only a 3x3 kernel at stride 1 can (the algorithm's tiles assume both). Measured with
    ``benchmarks/winograd.py --repeats 11`` (forward + backward, interleaved, medians; README section
    "Winograd"), both run as chunks of images on numcnn's threads with single-threaded BLAS, AMD EPYC Zen 4
    (AVX-512), 2 threads: Winograd took 1.4-2.5x im2col's time on every shape measured — the CIFAR-style
    model's four layers at batch 32 and 64, the seed model's, a 128x128x16 map. Its 16 products per chunk have
    K = C_in (32-64): too thin for BLAS to run near peak, and the transforms are passes over 4x the input's
    memory; the 2.25x fewer multiplications do not pay for that at these sizes. So the automatic rule stays
    off: Winograd runs only where it is enabled explicitly (``WINOGRAD_ENABLED``). Its results differ from the
    direct convolution's by rounding (bounded in tests/test_winograd.py), so it is never used by the fused
    Conv2D + MaxPooling2D kernel, whose first-maximum tie rule needs equal receptive fields to give
    bit-equal outputs (``kernels.fused`` calls im2col directly, not this function).
    """
    return WINOGRAD_ENABLED and tuple(w_shape[:2]) == (3, 3) and tuple(strides) == (1, 1)


def conv2d_forward(x, w, b, strides=(1, 1), padding="valid", epilogue=None):
    """``y[n, r, c, j] = b[j] + sum_{p,q,k} x_pad[n, r*sh+p, c*sw+q, k] w[p, q, k, j]`` via im2col + GEMM
    (or Winograd F(2x2, 3x3) where ``use_winograd`` says so: the same sum up to rounding).

    ``epilogue(start, stop, rows)``, if given, is called on each chunk's output ``rows`` (images
    ``start:stop`` as (rows, C_out)) right after its bias is added, on the thread that computed it: the
    layer that follows (a ReLU, an inference-mode batch normalization) then reads the chunk from cache
    instead of making its own pass over memory. It must be a serial ``nogil`` kernel writing only its
    chunk's outputs (``kernels.parallel``)."""
    if use_winograd(x.shape, w.shape, strides):
        y, cache = winograd.winograd_conv3x3_forward(x, w, b, padding)
        if epilogue is not None:
            epilogue(0, len(x), y.reshape(-1, y.shape[-1]))
        return y, cache
    oh, ow, pads = conv2d_geometry(x.shape, w.shape, strides, padding)
    x_pad = pad_nhwc(x, pads) if any(pads) else np.ascontiguousarray(x)
    c_out = w.shape[3]
    w2 = w.reshape(-1, c_out)
    y = np.empty((len(x), oh, ow, c_out), dtype=x.dtype)
    chunks = conv_chunks(x_pad, w, oh, ow)

    def work(share):
        for _, start, stop, cols in im2col_chunks(x_pad, w, strides, oh, ow, share):
            rows = np.matmul(cols, w2, out=y[start:stop].reshape(-1, c_out))
            rows += b  # here, not over the whole y afterwards: the chunk is still in cache
            if epilogue is not None:
                epilogue(start, stop, rows)

    run_chunks(chunks, work)
    return y, (x.shape, x_pad, w, strides, pads)


def conv_chunks(x_pad, w, oh, ow) -> list[tuple[int, int]]:
    """The chunks of images a convolution of ``x_pad`` with ``w`` goes through: ``parallel.image_chunks`` by
    the size of one image's im2col matrix (OH*OW rows of KH*KW*C_in)."""
    kh, kw, c_in, _ = w.shape
    return image_chunks(len(x_pad), oh * ow * kh * kw * c_in * x_pad.itemsize)


def im2col_chunks(x_pad, w, strides, oh, ow, share):
    """Yield ``(index, start, stop, cols)`` for each chunk ``(index, start, stop)`` of ``share`` (a thread's
    share of ``parallel.run_chunks``): the im2col matrix of images
    ``start:stop`` (rows (n, r, c), columns (p, q, k)), so that ``cols @ w.reshape(-1, C_out)`` is their
    convolution. One buffer serves every chunk (a fresh array per chunk costs page faults). Only output rows
    ``r < oh`` and columns ``c < ow`` are built (the fused conv+pool op passes fewer than the full output when
    pooling drops the last ones)."""
    kh, kw, c_in, _ = w.shape
    if not share:
        return
    buffer = np.empty((max(stop - start for _, start, stop in share) * oh * ow, kh * kw * c_in), dtype=x_pad.dtype)
    for index, start, stop in share:
        cols = buffer[:(stop - start) * oh * ow]
        im2col(x_pad[start:stop], kh, kw, strides[0], strides[1], oh, ow, cols)
        yield index, start, stop, cols


def conv2d_backward(dy, cache, need_dx=True):
    """``dW2 = colsᵀ dY``, ``db = Σ dY``, ``dx = col2im(dY W2ᵀ)`` (see the module docstring), chunk by chunk.

    With ``need_dx=False`` (a model's first layer during training) ``dx`` is skipped and returned as None."""
    if isinstance(cache, winograd.WinogradCache):  # the forward ran Winograd: its own backward
        return winograd.winograd_conv3x3_backward(dy, cache, need_dx)
    x_shape, x_pad, w, strides, pads = cache
    kh, kw, c_in, c_out = w.shape
    _, oh, ow, _ = dy.shape
    dy = np.ascontiguousarray(dy)
    w2 = w.reshape(-1, c_out)
    chunks = conv_chunks(x_pad, w, oh, ow)
    dw_parts = np.empty((len(chunks), *w2.shape), dtype=w.dtype)  # one partial sum per chunk, added in order
    dx_pad = np.zeros(x_pad.shape, dtype=dy.dtype) if need_dx else None

    def work(share):
        dcols_buffer = None  # one buffer for all of this thread's chunks
        for i, start, stop, cols in im2col_chunks(x_pad, w, strides, oh, ow, share):
            dy_rows = dy[start:stop].reshape(-1, c_out)
            np.matmul(cols.T, dy_rows, out=dw_parts[i])
            if need_dx:
                dcols_buffer = np.empty_like(cols) if dcols_buffer is None else dcols_buffer
                dcols = np.matmul(dy_rows, w2.T, out=dcols_buffer[:len(cols)])
                col2im(dcols, kh, kw, strides[0], strides[1], oh, ow, dx_pad[start:stop])

    run_chunks(chunks, work)
    dw = dw_parts.sum(axis=0)
    db = dy.reshape(-1, c_out).sum(axis=0)
    if not need_dx:
        return None, dw.reshape(w.shape), db
    top, _, left, _ = pads
    dx = dx_pad[:, top:top + x_shape[1], left:left + x_shape[2], :]
    return np.ascontiguousarray(dx), dw.reshape(w.shape), db
