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

'same' padding is implicit: im2col writes a padding tap as a zero and col2im drops it, so neither a padded
copy of ``x`` nor a padded ``dx`` to crop afterwards is ever made (two passes over the layer's input less).

The batch goes through in chunks of a few images whose ``cols`` matrix has about ``CHUNK_BYTES``
(``parallel.image_chunks``): im2col, GEMM and col2im then work on data still in cache (one 14.7 MB matrix
for a batch of 128 in the seed model went to main memory and back; chunking made a training step ~20%
faster; 4 MB beat 2, 8 and 16 MB on Zen 3 with 512 KB of L2; on Zen 5 with 1 MB and 512-bit BLAS, whole
training steps interleaved, 1 / 2 / 4 / 8 MB: CIFAR-style net 24.4 / 24.0 / 23.8 / 24.9 ms, strided net
11.1 / 11.3 / 11.1 / 11.0, its 256-image inference 27.5 / 26.8 / 26.5 / 27.2). The chunks run on numcnn's
threads, each calling BLAS single-threaded (``kernels.parallel`` says why and how the result stays the same
for any thread count). ``cols`` is rebuilt in the backward rather than kept: im2col is cheap next to the
GEMMs, and memory use no longer grows with it.
"""

from __future__ import annotations

import functools
import os

import numpy as np
from numba import njit

from . import winograd
from .parallel import image_chunks, run_chunks
from .reference import conv2d_geometry


def _im2col_kernel(fixed_kh=0, fixed_kw=0, fixed_channels=0):
    """The im2col kernel; with ``fixed_*`` > 0, compiled for that one kernel size and channel count.

    Numba compiles a closure's variables as constants, so a fixed (KH, KW, C_in) gives the tap loops known
    trip counts and LLVM unrolls them: for a network's first layer (1-4 channels, where the innermost loop
    copies only C_in numbers per tap) that made im2col 2-5x faster (measured on Zen 4: 5x5x3 taps at stride 2,
    64 images of 64x64: 7.3 -> 3.5 ms; 3x3x3 on 32 images of 128x128: 20 -> 5 ms; 3x3x1: 0.76 -> 0.14 ms),
    but 2x slower for 32 channels (too much unrolled code), hence ``UNROLLED_MAX_CHANNELS``. With the
    defaults the sizes come from the arguments: one kernel for every shape."""

    @njit(nogil=True, cache=True)
    def im2col(x, kh, kw, sh, sw, top, left, oh, ow, cols):
        """Fill ``cols`` (N*OH*OW, KH*KW*C) with the receptive fields of ``x`` (N, H, W, C) padded by ``top``
        rows and ``left`` columns of zeros (and as many as needed at the bottom and right). The padding is
        implicit: taps outside ``x`` are written as zeros, so no padded copy of ``x`` is ever made. Serial
        (the callers run chunks of images on several threads) and without the GIL."""
        if fixed_kh:
            kh, kw = fixed_kh, fixed_kw
        n_images, height, width, _ = x.shape
        channels = fixed_channels if fixed_channels else x.shape[3]
        zero = cols.dtype.type(0)
        for n in range(n_images):
            for r in range(oh):
                for c in range(ow):
                    row = (n * oh + r) * ow + c
                    for p in range(kh):
                        i = r * sh + p - top
                        for q in range(kw):
                            j = c * sw + q - left
                            start = (p * kw + q) * channels
                            if 0 <= i < height and 0 <= j < width:
                                for k in range(channels):
                                    cols[row, start + k] = x[n, i, j, k]
                            else:  # a tap in the padding
                                for k in range(channels):
                                    cols[row, start + k] = zero

    return im2col


im2col = _im2col_kernel()  # sizes from the arguments
UNROLLED_MAX_CHANNELS = 4  # up to this many input channels, im2col is compiled per (KH, KW, C_in)


@functools.cache
def im2col_for(kh, kw, channels):
    """The im2col kernel for this kernel size and channel count (``_im2col_kernel`` says why they differ)."""
    return _im2col_kernel(kh, kw, channels) if channels <= UNROLLED_MAX_CHANNELS else im2col


def _col2im_kernel(fixed_kh=0, fixed_kw=0, fixed_channels=0):
    """The col2im kernel; with ``fixed_*`` > 0, compiled for that one kernel size and channel count (as
    ``_im2col_kernel``, and for the same reason: with a few channels the innermost loop adds only C numbers
    per tap; a known trip count lets LLVM unroll the tap loops). The last layer of an image generator is
    such a case: a Conv2DTranspose to 1-3 channels, whose forward is a col2im (256 images, 4x4 kernel, stride
    2, Zen 5: 14x14x32 -> 28x28x1, the MNIST generator's last layer, 1.04 -> 0.46 ms; 16x16x16 -> 32x32x3,
    2.58 -> 1.95 ms)."""

    @njit(nogil=True, cache=True)
    def col2im(dcols, kh, kw, sh, sw, top, left, oh, ow, dx):
        """Scatter-add ``dcols`` back into ``dx`` (N, H, W, C; zeroed by the caller), in a fixed order: the
        transpose of ``im2col``, whose padding taps are dropped (they belong to no pixel of ``dx``). Serial
        and without the GIL, like ``im2col``: one chunk of images per thread, so no two threads add to the
        same pixel."""
        if fixed_kh:
            kh, kw = fixed_kh, fixed_kw
        n_images, height, width, _ = dx.shape
        channels = fixed_channels if fixed_channels else dx.shape[3]
        for n in range(n_images):
            for r in range(oh):
                for c in range(ow):
                    row = (n * oh + r) * ow + c
                    for p in range(kh):
                        i = r * sh + p - top
                        if not 0 <= i < height:
                            continue
                        for q in range(kw):
                            j = c * sw + q - left
                            if 0 <= j < width:
                                start = (p * kw + q) * channels
                                for k in range(channels):
                                    dx[n, i, j, k] += dcols[row, start + k]

    return col2im


col2im = _col2im_kernel()  # sizes from the arguments


@functools.cache
def col2im_for(kh, kw, channels):
    """The col2im kernel for this kernel size and channel count (``_col2im_kernel``)."""
    return _col2im_kernel(kh, kw, channels) if channels <= UNROLLED_MAX_CHANNELS else col2im


# NUMCNN_WINOGRAD in the environment overrides use_winograd's rule: "1" = wherever the kernel allows
# (3x3, stride 1), "0" = never. Unset: the measured rule below.
WINOGRAD_SETTING = os.environ.get("NUMCNN_WINOGRAD", "")
WINOGRAD_TILE = 4  # F(4x4, 3x3): the output tile size numcnn runs (``winograd`` also has F(2x2, 3x3), tile 2)
WINOGRAD_MIN_CHANNELS = 16  # C_in and C_out at least this
WINOGRAD_MIN_SIZE = 11  # output height and width at least this


def use_winograd(w_shape, strides, output_size) -> bool:
    """The one place that decides whether ``conv2d_forward`` runs Winograd F(4x4, 3x3) (``kernels.winograd``,
    ``WINOGRAD_TILE``) instead of im2col + GEMM.

    Only a 3x3 kernel at stride 1 can (the algorithm's tiles assume both). Where it pays was measured with
    ``benchmarks/winograd.py`` (forward + backward, interleaved, medians; README section "Winograd"), all
    run as chunks of images on numcnn's threads with single-threaded BLAS, 2 threads, on AMD EPYC Zen 5, once
    with OpenBLAS's 512-bit ``SkylakeX`` kernel and once with its 256-bit ``Haswell`` one (which is what an AVX2
    CPU, or Zen 4 with its half-width AVX-512, runs at about the same speed). F(4x4, 3x3) does 4x fewer
    multiplications than im2col (F(2x2, 3x3) 2.25x) and its transformed tiles are 2.25x the size of its input
    (F(2x2)'s 4x), so it took less time than both on every shape with at least 16 channels in and out and
    an output of at least 11x11: 0.51-0.80x im2col's time with the 512-bit kernel, 0.39-0.64x with the 256-bit
    one (the seed model's 13x13x32 -> 64: 0.63-0.80). Below that it does not pay everywhere: on 3 input
    channels its products have K = C_in, too thin for BLAS (1.2-1.4x im2col's time); at 8 channels it won with
    the 512-bit kernel (0.83) but not with the 256-bit one (0.99); on a 3x3 output (the seed model's third
    conv) its 6x6 tiles are mostly padding (0.98-1.09).

    Its results differ from the direct convolution's by rounding (bounded in tests/test_winograd.py), so the
    fused Conv2D + MaxPooling2D kernel, whose first-maximum tie rule in training needs equal receptive fields
    to give bit-equal outputs, asks this rule at inference only (``kernels.fused.conv_pool_forward``).
    """
    if tuple(w_shape[:2]) != (3, 3) or tuple(strides) != (1, 1) or WINOGRAD_SETTING == "0":
        return False
    if WINOGRAD_SETTING == "1":
        return True
    return min(w_shape[2:]) >= WINOGRAD_MIN_CHANNELS and min(output_size) >= WINOGRAD_MIN_SIZE


WINOGRAD_PIECES_MIN_KERNEL = 5  # kernel height and width at least this ...
WINOGRAD_PIECES_MIN_CHANNELS = 32  # ... and C_in and C_out at least this


def use_winograd_pieces(w_shape, strides, output_size) -> bool:
    """Whether a convolution with a kernel larger than 3x3 runs as the sum of its 3x3 pieces by F(4x4, 3x3)
    (``winograd.winograd_pieces_forward`` and its backward) instead of im2col + GEMM: in ``conv2d_forward`` /
    ``conv2d_backward``, and in the fused Conv2D + MaxPooling2D (its forward at inference, its backward in
    training: ``kernels.fused``).

    Measured with ``benchmarks/winograd.py`` (forward alone, 2 threads, AMD EPYC Zen 5, medians of 11; README
    section "Winograd"), OpenBLAS's ``SkylakeX`` / ``Haswell`` kernel: a 5x5 'same' conv 16x16x32 -> 64 (the
    strided model's second layer) 0.73 / 0.57x im2col's time for 256 images, 0.66 / 0.61x for 32; 7x7 on the
    same, 0.81 / 0.65x; 5x5 on 32x32x16 -> 32, 0.87 / 0.74x (0.86-1.00x in an earlier measurement with the
    512-bit kernel: hence 32 channels); a 4x4 kernel, whose pieces are mostly zeros (16 of 36 taps), 1.00 /
    0.88x. The backward from a dense gradient (the strided model's second conv, ``kernels.fused._dense_backward``):
    4.31 ms against im2col's 5.64 at batch 32, 8.84 against 10.75 at 64. ``NUMCNN_WINOGRAD`` switches it with
    ``use_winograd``."""
    if tuple(strides) != (1, 1) or WINOGRAD_SETTING == "0" or min(w_shape[:2]) <= 3:
        return False
    if WINOGRAD_SETTING == "1":
        return True
    return (min(w_shape[:2]) >= WINOGRAD_PIECES_MIN_KERNEL and min(w_shape[2:]) >= WINOGRAD_PIECES_MIN_CHANNELS
            and min(output_size) >= WINOGRAD_MIN_SIZE)


def conv2d_forward(x, w, b, strides=(1, 1), padding="valid", epilogue=None, winograd_rule=True):
    """``y[n, r, c, j] = b[j] + sum_{p,q,k} x_pad[n, r*sh+p, c*sw+q, k] w[p, q, k, j]`` via im2col + GEMM
    (or Winograd F(4x4, 3x3) where ``use_winograd`` says so, a larger kernel's 3x3 pieces by it where
    ``use_winograd_pieces`` says so: the same sum up to rounding).

    ``epilogue(start, stop, rows)``, if given, is called on each chunk's output ``rows`` (images
    ``start:stop`` as (rows, C_out)) right after its bias is added, on the thread that computed it: the
    layer that follows (a ReLU, an inference-mode batch normalization) then reads the chunk from cache
    instead of making its own pass over memory. It must be a serial ``nogil`` kernel writing only its
    chunk's outputs (``kernels.parallel``). ``winograd_rule=False`` always takes im2col + GEMM (the direct
    sum that Winograd's rounding is compared with)."""
    oh, ow, pads = conv2d_geometry(x.shape, w.shape, strides, padding)
    if winograd_rule and use_winograd(w.shape, strides, (oh, ow)):
        return winograd.winograd_conv3x3_forward(x, w, b, padding, epilogue, tile=WINOGRAD_TILE)
    if winograd_rule and use_winograd_pieces(w.shape, strides, (oh, ow)):
        x = np.ascontiguousarray(x)
        return winograd.winograd_pieces_forward(x, w, b, padding, epilogue), winograd.PiecesCache(x, w, pads)
    x = np.ascontiguousarray(x)
    c_out = w.shape[3]
    w2 = w.reshape(-1, c_out)
    y = np.empty((len(x), oh, ow, c_out), dtype=x.dtype)
    chunks = conv_chunks(x, w, oh, ow)
    has_bias = bool(np.any(b))

    def work(share):
        for _, start, stop, cols in im2col_chunks(x, w, strides, pads, oh, ow, share):
            rows = np.matmul(cols, w2, out=y[start:stop].reshape(-1, c_out))
            if has_bias:  # (a Conv2D(use_bias=False) passes zeros: adding them would be a pass for nothing)
                rows += b  # here, not over the whole y afterwards: the chunk is still in cache
            if epilogue is not None:
                epilogue(start, stop, rows)

    run_chunks(chunks, work)
    return y, (x, w, strides, pads)


def conv_chunks(x, w, oh, ow) -> list[tuple[int, int]]:
    """The chunks of images a convolution of ``x`` with ``w`` goes through: ``parallel.image_chunks`` by
    the size of one image's im2col matrix (OH*OW rows of KH*KW*C_in)."""
    kh, kw, c_in, _ = w.shape
    return image_chunks(len(x), oh * ow * kh * kw * c_in * x.itemsize)


def im2col_chunks(x, w, strides, pads, oh, ow, share):
    """Yield ``(index, start, stop, cols)`` for each chunk ``(index, start, stop)`` of ``share`` (a thread's
    share of ``parallel.run_chunks``): the im2col matrix of images
    ``start:stop`` of ``x`` padded by ``pads`` (rows (n, r, c), columns (p, q, k)), so that
    ``cols @ w.reshape(-1, C_out)`` is their convolution. One buffer, the size of the largest chunk, serves
    every chunk of the thread (a fresh array per chunk costs page faults). Only output rows ``r < oh`` and
    columns ``c < ow`` are built (the fused conv+pool op passes fewer than the full output when pooling drops
    the last ones)."""
    kh, kw, c_in, _ = w.shape
    top, _, left, _ = pads
    kernel = im2col_for(kh, kw, c_in)
    buffer = None  # made when the thread gets its first chunk (a late helper may get none)
    for index, start, stop in share:
        if buffer is None:
            buffer = np.empty((share.most_images * oh * ow, kh * kw * c_in), dtype=x.dtype)
        cols = buffer[:(stop - start) * oh * ow]
        kernel(x[start:stop], kh, kw, strides[0], strides[1], top, left, oh, ow, cols)
        yield index, start, stop, cols


def conv2d_backward(dy, cache, need_dx=True):
    """``dW2 = colsᵀ dY``, ``db = Σ dY``, ``dx = col2im(dY W2ᵀ)`` (see the module docstring), chunk by chunk.

    With ``need_dx=False`` (a model's first layer during training) ``dx`` is skipped and returned as None."""
    if isinstance(cache, winograd.WinogradCache):  # the forward ran Winograd: its own backward
        return winograd.winograd_conv3x3_backward(dy, cache, need_dx)
    if isinstance(cache, winograd.PiecesCache):  # ... or a larger kernel's 3x3 pieces by Winograd
        return winograd.winograd_pieces_backward(dy, cache, need_dx)
    dy = np.ascontiguousarray(dy)
    return conv2d_backward_by_chunks(dy.shape, dy.dtype, lambda start, stop, _: dy[start:stop], cache, need_dx)


def conv2d_backward_by_chunks(dy_shape, dtype, dy_chunk, cache, need_dx=True):
    """``conv2d_backward`` (of an im2col + GEMM forward) with the output gradient made one chunk of images at a
    time: ``dy_chunk(start, stop, buffer)`` returns the gradient of images ``start:stop`` (contiguous, shape
    ``(stop - start, OH, OW, C_out)``, of ``dtype``) on the thread that then uses it, where ``buffer`` is a
    scratch array of that shape it may fill and return. A gradient computed so (the fused Conv2D +
    MaxPooling2D's, routed from the pooled one) is read from cache by the chunk's products and never stored
    whole. The same products in the same order: the same bits as ``conv2d_backward`` of the whole gradient."""
    x, w, strides, pads = cache
    kh, kw, c_in, c_out = w.shape
    _, oh, ow, _ = dy_shape
    top, _, left, _ = pads
    w2 = w.reshape(-1, c_out)
    chunks = conv_chunks(x, w, oh, ow)
    dw_parts = np.empty((len(chunks), *w2.shape), dtype=w.dtype)  # one partial sum per chunk, added in order
    db_parts = np.empty((len(chunks), c_out), dtype=w.dtype)  # the same for db, while the chunk's dy is in cache
    dx = np.zeros(x.shape, dtype=dtype) if need_dx else None
    col2im = col2im_for(kh, kw, c_in)

    def work(share):
        dcols_buffer = None  # one buffer for all of this thread's chunks, sized for the largest
        # dy_chunk's scratch (conv2d_backward's dy_chunk returns slices of dy and leaves it untouched)
        dy_buffer = np.empty((share.most_images, oh, ow, c_out), dtype)
        for i, start, stop, cols in im2col_chunks(x, w, strides, pads, oh, ow, share):
            dy_rows = dy_chunk(start, stop, dy_buffer[:stop - start]).reshape(-1, c_out)
            np.matmul(cols.T, dy_rows, out=dw_parts[i])
            np.sum(dy_rows, axis=0, out=db_parts[i])
            if need_dx:
                if dcols_buffer is None:
                    dcols_buffer = np.empty((share.most_images * oh * ow, cols.shape[1]), dtype)
                dcols = np.matmul(dy_rows, w2.T, out=dcols_buffer[:len(cols)])
                col2im(dcols, kh, kw, strides[0], strides[1], top, left, oh, ow, dx[start:stop])

    run_chunks(chunks, work)
    return dx, dw_parts.sum(axis=0).reshape(w.shape), db_parts.sum(axis=0)
