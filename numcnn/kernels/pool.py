"""Fast pooling (Numba): same signatures and results as the ``reference`` functions of the same names.

Max pooling (``maxpool2d_forward/backward``): forward stores, per output, the flat position ``row * W + col``
of the window's first maximum in row-major order (TF's tie rule; strict ``>`` keeps the first). Positions in
the 'same' padding are skipped, which is the same as padding with -inf. Backward adds each output gradient to
that position; overlapping windows (strides < pool size) add up. Each image is pooled by one thread (chunks of
images on numcnn's threads): no races, bit-identical for any thread count (average pooling too). Forward and
backward are compiled per window size (``_maxpool_images_kernel``, ``_maxpool_backward_kernel``): on one
thread, Zen 5 (AVX-512), 3x3 windows at stride 2 ('same') on 11 maps of 32x32x32 took 0.074 ms instead of
0.207 with the scan for any window size, 2x2 windows on 3 maps of 32x32x32 0.006 instead of 0.022; the
backward of 2x2 windows on 32 maps of 32x32x32 0.146 instead of 0.222, of 3x3 at stride 2 0.307 instead of
0.389.

Average pooling (``avgpool2d_forward/backward``): each window's mean over the cells that lie **inside** the
image ('same' padding is not counted, as TF); backward spreads ``dy / count`` over the window.

Global average pooling (``global_avgpool2d_*``) is average pooling with one window the size of the image, so
it runs the kernels above with ``pool_size = (H, W)`` and drops the 1x1 spatial axes. Global max pooling
(``global_maxpool2d_*``, vectorised NumPy) differs from max pooling in its backward on ties, as TF does: the
gradient is split evenly over every position equal to the maximum (see ``global_maxpool2d_backward``).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from . import parallel
from .reference import conv2d_geometry


@njit(cache=True)
def pool_window_row(values, row0, bias, relu, pr, height, width, ph, pw, sh, sw, top, left, buffers, y_row,
                    winner_row):
    """Max pooling's forward for one row ``pr`` of windows of one image: ``y_row[pc, k]`` = the first maximum
    of ``values[r - row0, c, k] (+ bias[k])`` over window ``pc``, ``winner_row[pc, k]`` = its flat position
    ``r * width + c`` (``values`` holds rows ``row0 ...`` of a ``height x width`` map; ``bias`` empty: none).

    Channels are the innermost loop (contiguous in NHWC, so it vectorises). Each window's positions come in
    row-major order: the first initialises (best, best_at), each later one replaces a channel's value only if
    strictly greater, which keeps each channel's *first* maximum (TF's tie rule). A later position writes
    into the spare buffers, which are then swapped in: written in place, ``best[k] = value if better else
    best[k]`` compiles to a masked store ("store only where better"), which AMD CPUs execute slowly: the whole
    scan ran 2.5x slower with it (measured here). ``bias`` and ``relu`` serve the fused Conv2D (kernels/fused.py):
    the conv's bias is added to every value *before* comparing, exactly as the unfused ops round it, and ReLU
    after the max equals the max after ReLU. ``buffers``: four scratch arrays of ``channels`` numbers."""
    best, spare, best_at, spare_at = buffers
    add_bias = bias.size > 0
    zero = y_row.dtype.type(0)  # typed: max(float32, int 0) would be computed in float64
    for pc in range(y_row.shape[0]):
        first = True
        for a in range(ph):
            r = pr * sh + a - top
            if r < 0 or r >= height:  # the window's 'same' padding: never a maximum
                continue
            for e in range(pw):
                c = pc * sw + e - left
                if c < 0 or c >= width:
                    continue
                row, at = values[r - row0, c], r * width + c
                if first:
                    for k in range(y_row.shape[1]):
                        best[k] = row[k] + bias[k] if add_bias else row[k]
                        best_at[k] = at
                    first = False
                else:
                    for k in range(y_row.shape[1]):
                        value = row[k] + bias[k] if add_bias else row[k]
                        better = value > best[k]
                        spare[k] = value if better else best[k]
                        spare_at[k] = at if better else best_at[k]
                    best, spare = spare, best
                    best_at, spare_at = spare_at, best_at
        for k in range(y_row.shape[1]):
            y_row[pc, k] = max(best[k], zero) if relu else best[k]
            winner_row[pc, k] = best_at[k]


def maxpool_images(x, bias, relu, ph, pw, sh, sw, top, left, y, winner):
    """``pool_window_row`` for every row of windows of every image ``x`` (N, H, W, C), on this thread and
    without the GIL (the fused Conv2D + MaxPooling2D kernel calls it on chunks of images from several
    threads), with the kernel compiled for this window size (``_maxpool_images_kernel``)."""
    _maxpool_images_kernel(ph, pw)(x, bias, relu, sh, sw, top, left, y, winner)


@functools.cache
def _maxpool_images_kernel(ph, pw):
    """``maxpool_images`` for windows of PH x PW. Numba compiles the closure's ``ph``, ``pw`` as constants, so
    the scan of a window that lies inside the map unrolls and the channel loop vectorises with the running
    maximum and its position in registers; ``pool_window_row``'s scan, for any window size, keeps them in
    buffers in memory. The same values in the same order with the same strict ``>``: the same results. Windows
    reaching into 'same' padding go through ``pool_window_row``."""

    @njit(nogil=True, cache=True)
    def pool_images(x, bias, relu, sh, sw, top, left, y, winner):
        n_images, height, width, channels = x.shape
        buffers = (np.empty(channels, dtype=y.dtype), np.empty(channels, dtype=y.dtype),
                   np.empty(channels, dtype=np.int32), np.empty(channels, dtype=np.int32))
        with_bias = bias.size > 0  # (not a bias of zeros: -0.0 + 0.0 is +0.0)
        zero = y.dtype.type(0)
        for n in range(n_images):
            for pr in range(y.shape[1]):
                r0 = pr * sh - top
                if r0 < 0 or r0 + ph > height:  # the row of windows reaches into the padding
                    pool_window_row(x[n], 0, bias, relu, pr, height, width, ph, pw, sh, sw, top, left, buffers,
                                    y[n, pr], winner[n, pr])
                    continue
                for pc in range(y.shape[2]):
                    c0 = pc * sw - left
                    if c0 < 0 or c0 + pw > width:  # this window alone, as pool_window_row scans it
                        pool_window_row(x[n], 0, bias, relu, pr, height, width, ph, pw, sh, sw, top, left - pc * sw,
                                        buffers, y[n, pr, pc:pc + 1], winner[n, pr, pc:pc + 1])
                        continue
                    for k in range(channels):
                        best = x[n, r0, c0, k] + bias[k] if with_bias else x[n, r0, c0, k]
                        best_at = np.int32(r0 * width + c0)
                        for a in range(ph):
                            for e in range(pw):
                                if a + e > 0:  # (0, 0) started the scan
                                    value = x[n, r0 + a, c0 + e, k]
                                    value = value + bias[k] if with_bias else value
                                    if value > best:  # strict: the first maximum wins (TF's tie rule)
                                        best, best_at = value, np.int32((r0 + a) * width + c0 + e)
                        y[n, pr, pc, k] = max(best, zero) if relu else best
                        winner[n, pr, pc, k] = best_at

    return pool_images


@njit(cache=True)
def route_window_row(dy_row, y_row, relu, winner_row, pr, oh, ow, ph, pw, psh, psw, ptop, pleft, row0, masked, db,
                     dx):
    """Max pooling's backward for one row ``pr`` of windows of one image: each window's ``dy`` goes to its
    winner, ``dx[r - row0, c, k] += dy[pr, pc, k]`` where ``(r, c)`` is channel k's winner (overlapping windows
    add up; ``dx`` is zeroed by the caller). ``relu`` (the fused Conv2D backward, kernels/fused.py): only
    where ``y_row > 0`` (ReLU's derivative); the routed ``dy`` is also added to ``db`` (the conv's bias).

    Written as a compare-and-select at every window position rather than a scatter to the winners: it
    vectorises over channels (no index arithmetic per element): max pooling's backward ran 2.4x faster
    (measured on 128 images of 26x26x32)."""
    pow_, channels = masked.shape
    zero = dx.dtype.type(0)  # not a bare 0 (an int64): choosing between float32 and int64 is done in float64,
    # which made this function 1.8x slower (measured)
    for pc in range(pow_):
        for k in range(channels):
            masked[pc, k] = dy_row[pc, k] if not relu or y_row[pc, k] > 0 else zero  # (NaN fails, as `y > 0`)
    for pc in range(pow_):
        for k in range(channels):
            db[k] += masked[pc, k]
    for a in range(ph):
        r = pr * psh + a - ptop
        if r < 0 or r >= oh:
            continue
        for pc in range(pow_):
            winner_pc, masked_pc = winner_row[pc], masked[pc]
            for e in range(pw):
                c = pc * psw + e - pleft
                if c < 0 or c >= ow:
                    continue
                dx_rc, at = dx[r - row0, c], np.int32(r * ow + c)  # int32 like winner: the compare vectorises
                for k in range(channels):
                    dx_rc[k] += masked_pc[k] if winner_pc[k] == at else zero


@functools.cache
def _maxpool_backward_kernel(ph, pw):
    """The backward of max pooling over PH x PW windows for a chunk of images, on one thread and without the
    GIL: ``route_window_row``'s compare-and-select with the window loops of a window inside the map unrolled
    (``_maxpool_images_kernel`` says why); windows reaching into 'same' padding go through
    ``route_window_row``. ``dx[n]`` is zeroed just before its adds land on it (still in cache). ``relu``:
    route only where ``y > 0``. The same adds in the same order: the same bits."""

    @njit(nogil=True, cache=True)
    def backward_images(dy, y, relu, winner, sh, sw, top, left, dx):
        n_images, poh, pow_, channels = dy.shape
        height, width = dx.shape[1], dx.shape[2]
        masked, unused_db = np.empty((pow_, channels), dtype=dx.dtype), np.empty(channels, dtype=dx.dtype)
        zero = dx.dtype.type(0)
        for n in range(n_images):
            dx[n] = 0
            for pr in range(poh):
                r0 = pr * sh - top
                if r0 < 0 or r0 + ph > height:  # the row of windows reaches into the padding
                    route_window_row(dy[n, pr], y[n, pr], relu, winner[n, pr], pr, height, width, ph, pw, sh, sw,
                                     top, left, 0, masked, unused_db, dx[n])
                    continue
                for pc in range(pow_):
                    c0 = pc * sw - left
                    if c0 < 0 or c0 + pw > width:  # this window alone, as route_window_row routes it
                        route_window_row(dy[n, pr, pc:pc + 1], y[n, pr, pc:pc + 1], relu, winner[n, pr, pc:pc + 1],
                                         pr, height, width, ph, pw, sh, sw, top, left - pc * sw, 0, masked[:1],
                                         unused_db, dx[n])
                        continue
                    for a in range(ph):
                        for e in range(pw):
                            at = np.int32((r0 + a) * width + c0 + e)
                            for k in range(channels):
                                g = dy[n, pr, pc, k] if not relu or y[n, pr, pc, k] > 0 else zero
                                dx[n, r0 + a, c0 + e, k] += g if winner[n, pr, pc, k] == at else zero

    return backward_images


def maxpool2d_forward(x, pool_size=(2, 2), strides=None, padding="valid"):
    """``y[n, r, c, k] = max over the window``; the cache keeps each window's winner (see module docstring)."""
    x = np.ascontiguousarray(x)
    y, cache, pool_chunk = maxpool2d_by_chunks(x.shape, x.dtype, pool_size, strides, padding)
    _over_images(x, lambda start, stop: pool_chunk(start, stop, x[start:stop]))
    return y, cache


def _over_images(images, run) -> None:
    """``run(start, stop)`` over all of ``images`` (N, ...): in one call on this thread for a small batch
    (starting the other threads would cost more), else in chunks of images on numcnn's threads. Each image is
    done whole by one call, so the bits do not depend on the split."""
    if parallel.worth_threads(images.size):
        def work(share):
            for _, start, stop in share:
                run(start, stop)

        parallel.run_chunks(parallel.image_chunks(len(images), images[0].nbytes), work)
    else:
        run(0, len(images))


def maxpool2d_by_chunks(x_shape, dtype, pool_size=(2, 2), strides=None, padding="valid"):
    """``(y, cache, pool_chunk)``: ``maxpool2d_forward``'s output and cache for an input of ``x_shape``, filled
    by ``pool_chunk(start, stop, x_chunk)`` with images ``start:stop`` — one chunk at a time, so a kernel that
    makes the input chunk by chunk can pool each chunk while it is still in cache (an inference-mode
    Conv2D + BatchNormalization (+ ReLU) does: ``layers.Conv2D.forward_normalized``). Serial and without the
    GIL, callable from numcnn's worker threads on different chunks; the same scan, the same results."""
    strides = pool_size if strides is None else strides
    oh, ow, (top, _, left, _) = conv2d_geometry(x_shape, pool_size, strides, padding)
    y = np.empty((x_shape[0], oh, ow, x_shape[3]), dtype=dtype)
    winner = np.empty(y.shape, dtype=np.int32)
    pool = (*pool_size, *strides, top, left)
    no_bias = np.zeros(0, dtype=dtype)

    def pool_chunk(start, stop, x_chunk):
        maxpool_images(x_chunk, no_bias, False, *pool, y[start:stop], winner[start:stop])

    return y, (tuple(x_shape), winner, pool), pool_chunk


def maxpool2d_backward(dy, cache, relu_output=None):
    """``dx[winner] += dy`` for every output; with ``relu_output`` (``y``, when a ReLU follows the pooling,
    as in the fused Conv2D + MaxPooling2D), only where ``y > 0``: ReLU's derivative."""
    x_shape, winner, pool = cache
    dx = np.empty(x_shape, dtype=dy.dtype)
    dy = np.ascontiguousarray(dy)
    _over_images(dx, lambda start, stop: maxpool_backward_images(dy, relu_output, winner, pool, start, stop,
                                                                 dx[start:stop]))
    return dx


def maxpool_backward_images(dy, relu_output, winner, pool, start, stop, dx):
    """``maxpool2d_backward`` of images ``start:stop`` only, written to ``dx`` (their input gradient, zeroed
    here), on the calling thread: ``pool`` is the cache's ``(PH, PW, SH, SW, top, left)``."""
    ph, pw, *strides_and_pads = pool
    relu = relu_output is not None
    y = relu_output if relu else dy
    _maxpool_backward_kernel(ph, pw)(dy[start:stop], y[start:stop], relu, winner[start:stop], *strides_and_pads,
                                     dx)


# --------------------------------------------------------------------------------------------------------
# Average pooling
# --------------------------------------------------------------------------------------------------------
@njit(cache=True)
def _window_span(index, stride, before, window, size):
    """The cells ``[start, stop)`` of window ``index`` along one axis that lie inside the image (the 'same'
    padding, ``before`` cells on the low side, is cut off: it is not averaged)."""
    start = index * stride - before
    return max(start, 0), min(start + window, size)


@njit(parallel=True, cache=True)
def _avgpool_forward(x, ph, pw, sh, sw, top, left, y):
    """``y[n, pr, pc, k] = sum of the window's inside cells / their count``; one image per thread. The sum
    runs over the window in row-major order, channels innermost (contiguous in NHWC: it vectorises)."""
    n_images, height, width, channels = x.shape
    for n in prange(n_images):
        total = np.empty(channels, dtype=y.dtype)
        for pr in range(y.shape[1]):
            r0, r1 = _window_span(pr, sh, top, ph, height)
            for pc in range(y.shape[2]):
                c0, c1 = _window_span(pc, sw, left, pw, width)
                total[:] = 0
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        for k in range(channels):
                            total[k] += x[n, r, c, k]
                count = y.dtype.type((r1 - r0) * (c1 - c0))  # typed: an int would make the division float64
                for k in range(channels):
                    y[n, pr, pc, k] = total[k] / count


@njit(parallel=True, cache=True)
def _avgpool_backward(dy, ph, pw, sh, sw, top, left, dx):
    """``dx[cell] += dy[window] / count`` for every inside cell of every window (overlapping windows add up);
    one image per thread, so no two threads ever add to the same cell."""
    n_images, height, width, channels = dx.shape
    for n in prange(n_images):
        share = np.empty(channels, dtype=dx.dtype)
        dx[n] = 0
        for pr in range(dy.shape[1]):
            r0, r1 = _window_span(pr, sh, top, ph, height)
            for pc in range(dy.shape[2]):
                c0, c1 = _window_span(pc, sw, left, pw, width)
                count = dx.dtype.type((r1 - r0) * (c1 - c0))
                for k in range(channels):
                    share[k] = dy[n, pr, pc, k] / count
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        for k in range(channels):
                            dx[n, r, c, k] += share[k]


def avgpool2d_forward(x, pool_size=(2, 2), strides=None, padding="valid"):
    """``y[n, r, c, k]`` = mean of the window's cells inside the image (see the module docstring)."""
    strides = pool_size if strides is None else strides
    oh, ow, (top, _, left, _) = conv2d_geometry(x.shape, pool_size, strides, padding)
    x = np.ascontiguousarray(x)
    y = np.empty((x.shape[0], oh, ow, x.shape[3]), dtype=x.dtype)
    _avgpool_forward(x, pool_size[0], pool_size[1], strides[0], strides[1], top, left, y)
    return y, (x.shape, (*pool_size, *strides, top, left))


def avgpool2d_backward(dy, cache):
    """``dx[cell] += dy / count`` over each window's inside cells."""
    x_shape, pool = cache
    dx = np.empty(x_shape, dtype=dy.dtype)
    _avgpool_backward(np.ascontiguousarray(dy), *pool, dx)
    return dx


# --------------------------------------------------------------------------------------------------------
# Global pooling: one window covering the whole image
# --------------------------------------------------------------------------------------------------------
def _whole_image(x_shape):
    return (int(x_shape[1]), int(x_shape[2]))


def global_avgpool2d_forward(x):
    """``y[n, k] = mean over (r, c) of x[n, r, c, k]``: (N, H, W, C) -> (N, C)."""
    window = _whole_image(x.shape)
    y, cache = avgpool2d_forward(x, window, window, "valid")
    return y.reshape(y.shape[0], y.shape[3]), cache


def global_avgpool2d_backward(dy, cache):
    """``dx[n, r, c, k] = dy[n, k] / (H * W)``."""
    return avgpool2d_backward(dy.reshape(dy.shape[0], 1, 1, dy.shape[1]), cache)


def global_maxpool2d_forward(x):
    """``y[n, k] = max over (r, c) of x[n, r, c, k]``: (N, H, W, C) -> (N, C). A max has no rounding, so
    NumPy's reduction gives exactly the reference's value."""
    y = np.max(x, axis=(1, 2))
    return y, (np.ascontiguousarray(x), y)


def global_maxpool2d_backward(dy, cache):
    """``dy[n, k]`` split evenly over the positions where ``x[n, :, :, k]`` equals its maximum (TF's gradient
    of ``reduce_max``, which Keras's GlobalMaxPooling2D calls; not MaxPooling2D's first-maximum rule)."""
    x, y = cache
    is_max = x == y[:, None, None, :]
    ties = np.count_nonzero(is_max, axis=(1, 2))  # (N, C), >= 1 for finite inputs
    share = dy / ties.astype(dy.dtype)
    return np.where(is_max, share[:, None, None, :], dy.dtype.type(0))
