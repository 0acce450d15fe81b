"""Fast Winograd convolution (Lavin & Gray 2016) for 3x3, stride-1 Conv2D, forward and backward: F(2x2, 3x3)
and F(4x4, 3x3), the one numcnn runs (``conv.use_winograd``).

Same math as ``reference.winograd_conv3x3_forward`` / ``winograd_conv3x3_backward`` (read those, and the
matrices ``WINOGRAD_BT``, ``WINOGRAD_G``, ``WINOGRAD_AT`` and ``WINOGRAD4_*`` there), and the same results as
the direct ``conv.conv2d_forward`` up to rounding. The output is cut into m x m tiles (m = ``tile``: 2 or 4);
tile ``t = (n, i, l)`` reads an a x a patch of the padded input, a = m + 2. With ``e = a*ξ + ν`` one of the a²
positions of a transformed tile::

    U[e, k, j] = (G w[:, :, k, j] Gᵀ)[ξ, ν]          filter transform (NumPy: tiny)
    V[e, t, k] = (Bᵀ d[t, k] B)[ξ, ν]                 input transform (Numba)
    M[e]       = V[e] @ U[e]                          a² matrix products (T, C_in) @ (C_in, C_out), BLAS
    y[tile t]  = Aᵀ M[:, t, j] A + b[j]               output transform (Numba)

A direct (im2col) convolution spends ``9 m²`` multiplications per output tile and channel pair; here the
products are the a² of ``M``: 36 / 16 = 2.25x fewer for F(2x2, 3x3), 144 / 36 = 4x for F(4x4, 3x3), and the
GEMMs have K = C_in instead of 9*C_in. The transforms are additions and multiplications by small constants,
but they are passes over memory: the transformed tiles ``V`` are a² / m² the size of the input, 4x for
F(2x2), 2.25x for F(4x4) — which is why the larger tile pays although its transforms do more arithmetic.

Backward, the forward's steps transposed (``B = (Bᵀ)ᵀ``, ``A = (Aᵀ)ᵀ``)::

    dM[e, t, j] = (A dy[tile t, j] Aᵀ)[ξ, ν]          (Numba; dy is 0 past the output's edge)
    dV[e]       = dM[e] @ U[e]ᵀ                       a² products (T, C_out) @ (C_out, C_in)
    dx_pad[tile t, k] += B dV[:, t, k] Bᵀ             (Numba; overlapping tiles add up)
    dU[e]       = V[e]ᵀ @ dM[e]                       a² products (C_in, T) @ (T, C_out), summed over chunks
    dw          = Gᵀ dU G;   db = Σ dy

The a² products of a chunk are one stacked ``np.matmul`` (NumPy calls BLAS once per position e): measured on
Zen 5 with NumPy 2.4, 36 products of (256, 32) @ (32, 32) in 85 us stacked against 116 us as a Python loop.
The batch goes through in chunks of a few images whose ``V`` has about ``parallel.CHUNK_BYTES`` (as in
``kernels.conv``: transforms and GEMMs then work on data still in cache), on numcnn's threads, one chunk per
thread at a time with single-threaded BLAS (``kernels.parallel``). Neighbouring tiles overlap, so their
``dx_pad`` adds must not race: a chunk's tiles are added by one thread, in order, and every pixel receives
its contributions in the same order whatever the number of threads: the result is the same bit for bit.

Rounding: F(2x2, 3x3)'s coefficients are 0, ±1 and ±1/2 (exact in binary); F(4x4, 3x3)'s reach 8 and include
1/6, 1/12 and 1/24, so its extra error over a direct convolution is larger, 10-20x F(2x2)'s (about 1e-5 of the
outputs' size in float32). Both are bounded (``tests/test_winograd.py`` derives the bounds and checks them;
the notebook ``01_convolution`` explains them).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .parallel import image_chunks, run_chunks
from .reference import WINOGRAD_MATRICES, conv2d_geometry, winograd_geometry


# --- F(2x2, 3x3): the 1-D transforms, written out (each is one matrix-vector product with a 0/±1 matrix) ---
@njit(cache=True)
def _bt(d0, d1, d2, d3):
    """``Bᵀ d`` for a column ``d`` of 4 values: rows (1,0,-1,0), (0,1,1,0), (0,-1,1,0), (0,1,0,-1)."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(cache=True)
def _b(v0, v1, v2, v3):
    """``B v`` (the transpose of ``_bt``): rows (1,0,0,0), (0,1,-1,1), (-1,1,1,0), (0,0,0,-1)."""
    return v0, v1 - v2 + v3, v1 + v2 - v0, -v3


@njit(cache=True)
def _at(m0, m1, m2, m3):
    """``Aᵀ m`` for 4 values: rows (1,1,1,0), (0,1,-1,-1)."""
    return m0 + m1 + m2, m1 - m2 - m3


@njit(cache=True)
def _a(g0, g1):
    """``A g`` (the transpose of ``_at``): rows (1,0), (1,1), (1,-1), (0,-1)."""
    return g0, g0 + g1, g0 - g1, -g1


@njit(nogil=True, cache=True)
def _place_row(x_row, left, row):
    """``row[left + j] = x_row[j]`` for the pixels ``j`` of ``x_row`` (W, C) that land inside ``row`` (a row of
    the padded input, whose other pixels stay as they are: zero). ``left`` may be negative (the tiles start inside
    ``x``: the larger kernels' shifted pieces), and ``row`` may end before ``x_row`` does (tiles that cover only
    part of the map: the fused Conv2D + MaxPooling2D's backward, where pooling never reads the last outputs)."""
    first = max(left, 0)
    count = min(len(x_row) - (first - left), len(row) - first)
    if count > 0:
        row[first:first + count] = x_row[first - left:first - left + count]


# --- the 2-D tile transforms (serial and without the GIL: the callers run chunks of images on threads) -----
# Each 2-D transform is done as its two 1-D passes, the first into a small buffer, and every innermost loop
# runs over the channels with at most 4 arrays read and 4 written. LLVM vectorises such a loop; with all
# 16 values of a tile in one loop (16 streams in, 16 out) it did not, and the input transform of the
# CIFAR-style model's second layer (batch 32, 32x32x32) took 11.9 ms instead of 1.9 (Zen 4, one thread).
# The sums are the same, in the same order, as the one-loop form: the results are the same bits.
@njit(nogil=True, cache=True)
def input_transform(x, top, left, th, tw, v):
    """``v[e, t, k] = (Bᵀ d B)[e]`` for every tile ``d = x_pad[n, 2i:2i+4, 2l:2l+4, k]``, ``t = (n*th+i)*tw+l``,
    where ``x_pad`` is ``x`` padded with zeros (``top`` rows and ``left`` columns first, to ``2*th + 2`` rows
    and ``2*tw + 2`` columns: ``reference.winograd_pad``). The padding is implicit, as in ``conv.im2col``: the
    4 input rows of a row of tiles are copied into a zero-bordered buffer that stays in cache, so no padded
    copy of the layer's input is made (nor kept for the backward)."""
    n_images, height, width, channels = x.shape
    padded_width = 2 * tw + 2
    rows = np.zeros((4, padded_width, channels), dtype=v.dtype)  # x_pad's 4 rows; the borders stay zero
    bt_d = np.empty((4, padded_width, channels), dtype=v.dtype)  # Bᵀ d for one row of tiles, every column
    for n in range(n_images):
        for i in range(th):
            for a in range(4):
                source = 2 * i + a - top
                if 0 <= source < height:
                    _place_row(x[n, source], left, rows[a])
                else:  # a padding row
                    rows[a] = 0
            for c in range(padded_width):  # Bᵀ d: each column of 4 pixels
                for k in range(channels):
                    bt_d[0, c, k], bt_d[1, c, k], bt_d[2, c, k], bt_d[3, c, k] = _bt(
                        rows[0, c, k], rows[1, c, k], rows[2, c, k], rows[3, c, k])
            # (Bᵀ d) B: row ξ of a tile's Bᵀ d goes to e = 4ξ .. 4ξ+3. Row by row of the tiles, so that 4 of the
            # 16 planes of v are written at a time, each tile after tile; tile by tile, with all 16 planes
            # written for each tile, took 0.40 ms instead of 0.32 on a 4 MB chunk (8 images of 32x32x32, Zen 4,
            # one thread; the same bits) and the CIFAR-style model's training step 39.4 instead of 38.1 ms
            # (batch 32, interleaved A/B; the same order in input_gradient_transform was slower: 0.48 -> 0.73 ms
            # on that chunk).
            t0 = (n * th + i) * tw
            for xi in range(4):
                e = 4 * xi
                for l in range(tw):
                    t, c = t0 + l, 2 * l
                    for k in range(channels):
                        v[e, t, k], v[e + 1, t, k], v[e + 2, t, k], v[e + 3, t, k] = _bt(
                            bt_d[xi, c, k], bt_d[xi, c + 1, k], bt_d[xi, c + 2, k], bt_d[xi, c + 3, k])


@njit(nogil=True, cache=True)
def output_transform(m, b, n_images, th, tw, y):
    """``y[n, 2i+a, 2l+c, j] = (Aᵀ M A)[a, c] + b[j]`` for every tile, cut to ``y``'s height and width."""
    _, oh, ow, channels = y.shape
    at_m = np.empty((2, 4, channels), dtype=y.dtype)  # Aᵀ M of one tile
    for n in range(n_images):
        for i in range(th):
            for l in range(tw):
                t, r, c = (n * th + i) * tw + l, 2 * i, 2 * l
                for nu in range(4):  # Aᵀ M: combine the 4 rows of M (ξ = 0..3) for each column ν
                    for j in range(channels):
                        at_m[0, nu, j], at_m[1, nu, j] = _at(m[nu, t, j], m[4 + nu, t, j], m[8 + nu, t, j],
                                                             m[12 + nu, t, j])
                right = c + 1 < ow
                for a in range(2):  # (Aᵀ M) A, row a of the 2x2 output tile
                    if r + a >= oh:
                        break
                    for j in range(channels):
                        y0, y1 = _at(at_m[a, 0, j], at_m[a, 1, j], at_m[a, 2, j], at_m[a, 3, j])
                        y[n, r + a, c, j] = y0 + b[j]
                        if right:
                            y[n, r + a, c + 1, j] = y1 + b[j]


@njit(nogil=True, cache=True)
def output_gradient_transform(dy, th, tw, dm):
    """``dm[e, t, j] = (A g Aᵀ)[e]`` for every 2x2 tile ``g`` of ``dy`` (0 past its edge): the transpose of
    ``output_transform``."""
    n_images, oh, ow, channels = dy.shape
    zero = dy.dtype.type(0)
    a_g = np.empty((2, 4, channels), dtype=dm.dtype)  # A g of one tile: its 2 columns, 4 values each
    for n in range(n_images):
        for i in range(th):
            for l in range(tw):
                t, r, c = (n * th + i) * tw + l, 2 * i, 2 * l
                down = r + 1 < oh
                for b in range(2):  # A g: column b of the tile (0 past the right or bottom edge)
                    if c + b >= ow:
                        a_g[b] = zero
                        continue
                    for j in range(channels):
                        g1 = dy[n, r + 1, c + b, j] if down else zero
                        a_g[b, 0, j], a_g[b, 1, j], a_g[b, 2, j], a_g[b, 3, j] = _a(dy[n, r, c + b, j], g1)
                for xi in range(4):  # (A g) Aᵀ, row by row
                    e = 4 * xi
                    for j in range(channels):
                        dm[e, t, j], dm[e + 1, t, j], dm[e + 2, t, j], dm[e + 3, t, j] = _a(a_g[0, xi, j],
                                                                                           a_g[1, xi, j])


@njit(nogil=True, cache=True)
def input_gradient_transform(dv, th, tw, dx_pad):
    """Add ``B dV Bᵀ`` of every tile into ``dx_pad`` (zeroed by the caller): the transpose of
    ``input_transform``. Neighbouring tiles overlap: one thread adds them all, in a fixed order."""
    channels = dx_pad.shape[3]
    b_dv = np.empty((4, 4, channels), dtype=dx_pad.dtype)  # B dV of one tile: b_dv[ν] = column ν
    for n in range(dx_pad.shape[0]):
        for i in range(th):
            for l in range(tw):
                t, r, c = (n * th + i) * tw + l, 2 * i, 2 * l
                for nu in range(4):  # B dV: combine the 4 rows of dV for each column ν
                    for k in range(channels):
                        b_dv[nu, 0, k], b_dv[nu, 1, k], b_dv[nu, 2, k], b_dv[nu, 3, k] = _b(
                            dv[nu, t, k], dv[4 + nu, t, k], dv[8 + nu, t, k], dv[12 + nu, t, k])
                for p in range(4):  # (B dV) Bᵀ, row p of the 4x4 input tile
                    for k in range(channels):
                        e0, e1, e2, e3 = _b(b_dv[0, p, k], b_dv[1, p, k], b_dv[2, p, k], b_dv[3, p, k])
                        dx_pad[n, r + p, c, k] += e0
                        dx_pad[n, r + p, c + 1, k] += e1
                        dx_pad[n, r + p, c + 2, k] += e2
                        dx_pad[n, r + p, c + 3, k] += e3


# --- F(4x4, 3x3): the same four kernels for 6x6 tiles -----------------------------------------------------
# The transforms' coefficients 2, 4, 5 and 8 as float32 constants: a bare integer is an int64 in Numba, and an
# int64 times a float32 is a float64, which would turn a float32 transform into float64 math.
TWO, FOUR, FIVE, EIGHT = (np.float32(c) for c in (2, 4, 5, 8))


@njit(cache=True)
def _bt6(d0, d1, d2, d3, d4, d5):
    """``Bᵀ d`` of F(4x4, 3x3) for 6 values (rows of ``reference.WINOGRAD4_BT``)."""
    return (FOUR * d0 - FIVE * d2 + d4, d3 + d4 - FOUR * (d1 + d2), FOUR * (d1 - d2) + d4 - d3,
            TWO * (d3 - d1) + d4 - d2, TWO * (d1 - d3) + d4 - d2, FOUR * d1 - FIVE * d3 + d5)


@njit(cache=True)
def _b6(v0, v1, v2, v3, v4, v5):
    """``B v`` of F(4x4, 3x3) (the transpose of ``_bt6``: its columns)."""
    return (FOUR * v0, FOUR * (v2 - v1 + v5) + TWO * (v4 - v3), -(FIVE * v0 + FOUR * (v1 + v2) + v3 + v4),
            v1 - v2 + TWO * (v3 - v4) - FIVE * v5, v0 + v1 + v2 + v3 + v4, v5)


@njit(cache=True)
def _at6(m0, m1, m2, m3, m4, m5):
    """``Aᵀ m`` of F(4x4, 3x3) for 6 values: rows (1,1,1,1,1,0), (0,1,-1,2,-2,0), (0,1,1,4,4,0), (0,1,-1,8,-8,1)."""
    s12, d12, s34, d34 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + s12 + s34, d12 + TWO * d34, s12 + FOUR * s34, d12 + EIGHT * d34 + m5


@njit(cache=True)
def _a6(g0, g1, g2, g3):
    """``A g`` of F(4x4, 3x3) (the transpose of ``_at6``): 6 values from 4."""
    s02, s13 = g0 + g2, g1 + g3
    return g0, s02 + s13, s02 - s13, g0 + TWO * g1 + FOUR * g2 + EIGHT * g3, g0 - TWO * g1 + FOUR * g2 - EIGHT * g3, g3


@njit(nogil=True, cache=True)
def input_transform4(x, top, left, th, tw, v, k0=0):
    """``input_transform`` for F(4x4, 3x3): ``v[e, t, k0 + k] = (Bᵀ d B)[e]`` (e = 6ξ + ν) for every tile ``d =
    x_pad[n, 4i:4i+6, 4l:4l+6, k]``. ``top`` and ``left`` may also be negative (the tiles then start inside
    ``x``, and ``x``'s first rows or columns are skipped), and ``k0`` puts the channels at an offset in ``v``:
    so ``winograd_pieces_forward`` transforms each shifted 3x3 piece of a larger kernel into its own columns."""
    n_images, height, width, channels = x.shape
    padded_width = 4 * tw + 2
    rows = np.zeros((6, padded_width, channels), dtype=v.dtype)  # x_pad's 6 rows; the borders stay zero
    bt_d = np.empty((6, padded_width, channels), dtype=v.dtype)
    for n in range(n_images):
        for i in range(th):
            for a in range(6):
                source = 4 * i + a - top
                if 0 <= source < height:
                    _place_row(x[n, source], left, rows[a])
                else:
                    rows[a] = 0
            for c in range(padded_width):
                for k in range(channels):
                    (bt_d[0, c, k], bt_d[1, c, k], bt_d[2, c, k], bt_d[3, c, k], bt_d[4, c, k],
                     bt_d[5, c, k]) = _bt6(rows[0, c, k], rows[1, c, k], rows[2, c, k], rows[3, c, k],
                                           rows[4, c, k], rows[5, c, k])
            # (Bᵀ d) B through slices: the channel loop indexes 12 slices by k alone. Indexing v itself at
            # [e + o, t, k0 + k] ran 1.5-2.2x slower (8 images of 16x16x32 into a v of 128 channels, one thread,
            # Zen 5: 0.084 -> 0.057 ms; 4 of 30x30x64: 0.32 -> 0.15; the same bits).
            t0 = (n * th + i) * tw
            for xi in range(6):
                e = 6 * xi
                for l in range(tw):
                    t, c = t0 + l, 4 * l
                    d0, d1, d2, d3, d4, d5 = (bt_d[xi, c], bt_d[xi, c + 1], bt_d[xi, c + 2], bt_d[xi, c + 3],
                                              bt_d[xi, c + 4], bt_d[xi, c + 5])
                    v0, v1, v2, v3, v4, v5 = (v[e, t, k0:k0 + channels], v[e + 1, t, k0:k0 + channels],
                                              v[e + 2, t, k0:k0 + channels], v[e + 3, t, k0:k0 + channels],
                                              v[e + 4, t, k0:k0 + channels], v[e + 5, t, k0:k0 + channels])
                    for k in range(channels):
                        v0[k], v1[k], v2[k], v3[k], v4[k], v5[k] = _bt6(d0[k], d1[k], d2[k], d3[k], d4[k], d5[k])


@njit(nogil=True, cache=True)
def output_transform4(m, b, n_images, th, tw, y):
    """``output_transform`` for F(4x4, 3x3). A tile's 4x4 outputs go through a small buffer, one row at a
    time: writing them straight to ``y`` with a test for the map's edge in the channel loop ran 2.3x slower
    (4 images of 28x28x128, one thread, Zen 5: 0.26 -> 0.11 ms; the same bits)."""
    _, oh, ow, channels = y.shape
    at_m = np.empty((4, 6, channels), dtype=y.dtype)  # Aᵀ M of one tile
    out_row = np.empty((4, channels), dtype=y.dtype)  # one row of the tile's outputs
    for n in range(n_images):
        for i in range(th):
            for l in range(tw):
                t, r, c = (n * th + i) * tw + l, 4 * i, 4 * l
                for nu in range(6):
                    for j in range(channels):
                        at_m[0, nu, j], at_m[1, nu, j], at_m[2, nu, j], at_m[3, nu, j] = _at6(
                            m[nu, t, j], m[6 + nu, t, j], m[12 + nu, t, j], m[18 + nu, t, j], m[24 + nu, t, j],
                            m[30 + nu, t, j])
                for a in range(min(4, oh - r)):
                    for j in range(channels):
                        out_row[0, j], out_row[1, j], out_row[2, j], out_row[3, j] = _at6(
                            at_m[a, 0, j], at_m[a, 1, j], at_m[a, 2, j], at_m[a, 3, j], at_m[a, 4, j], at_m[a, 5, j])
                    for s in range(min(4, ow - c)):
                        for j in range(channels):
                            y[n, r + a, c + s, j] = out_row[s, j] + b[j]


@njit(nogil=True, cache=True)
def output_gradient_transform4(dy, th, tw, dm):
    """``output_gradient_transform`` for F(4x4, 3x3): ``dm[e, t, j] = (A g Aᵀ)[e]`` per 4x4 tile ``g``."""
    n_images, oh, ow, channels = dy.shape
    zero = dy.dtype.type(0)
    a_g = np.empty((4, 6, channels), dtype=dm.dtype)  # A g of one tile: its 4 columns, 6 values each
    for n in range(n_images):
        for i in range(th):
            for l in range(tw):
                t, r, c = (n * th + i) * tw + l, 4 * i, 4 * l
                rows = min(4, oh - r)
                for b in range(4):
                    if c + b >= ow:
                        a_g[b] = zero
                        continue
                    for j in range(channels):
                        g0 = dy[n, r, c + b, j]
                        g1 = dy[n, r + 1, c + b, j] if rows > 1 else zero
                        g2 = dy[n, r + 2, c + b, j] if rows > 2 else zero
                        g3 = dy[n, r + 3, c + b, j] if rows > 3 else zero
                        (a_g[b, 0, j], a_g[b, 1, j], a_g[b, 2, j], a_g[b, 3, j], a_g[b, 4, j],
                         a_g[b, 5, j]) = _a6(g0, g1, g2, g3)
                for xi in range(6):
                    e = 6 * xi
                    for j in range(channels):
                        (dm[e, t, j], dm[e + 1, t, j], dm[e + 2, t, j], dm[e + 3, t, j], dm[e + 4, t, j],
                         dm[e + 5, t, j]) = _a6(a_g[0, xi, j], a_g[1, xi, j], a_g[2, xi, j], a_g[3, xi, j])


@njit(nogil=True, cache=True)
def input_gradient_transform4(dv, th, tw, dx_pad, k0=0, row0=0, col0=0):
    """``input_gradient_transform`` for F(4x4, 3x3): add ``B dV Bᵀ`` of every 6x6 tile into ``dx_pad``, from
    ``dv``'s channels ``k0 ...`` and at ``row0`` rows and ``col0`` columns into ``dx_pad`` (the transpose of
    ``input_transform4``'s offsets: ``winograd_pieces_backward_by_chunks``'s shifted pieces). Through slices, as
    ``input_transform4``."""
    channels = dx_pad.shape[3]
    b_dv = np.empty((6, 6, channels), dtype=dx_pad.dtype)  # B dV of one tile: b_dv[ν] = column ν
    for n in range(dx_pad.shape[0]):
        for i in range(th):
            for l in range(tw):
                t, r, c = (n * th + i) * tw + l, 4 * i, 4 * l
                for nu in range(6):
                    d0, d1, d2, d3, d4, d5 = (dv[nu, t, k0:k0 + channels], dv[6 + nu, t, k0:k0 + channels],
                                              dv[12 + nu, t, k0:k0 + channels], dv[18 + nu, t, k0:k0 + channels],
                                              dv[24 + nu, t, k0:k0 + channels], dv[30 + nu, t, k0:k0 + channels])
                    b_nu = b_dv[nu]
                    for k in range(channels):
                        b_nu[0, k], b_nu[1, k], b_nu[2, k], b_nu[3, k], b_nu[4, k], b_nu[5, k] = _b6(
                            d0[k], d1[k], d2[k], d3[k], d4[k], d5[k])
                for p in range(6):
                    pixels = dx_pad[n, row0 + r + p, col0 + c:col0 + c + 6]
                    for k in range(channels):
                        e0, e1, e2, e3, e4, e5 = _b6(b_dv[0, p, k], b_dv[1, p, k], b_dv[2, p, k], b_dv[3, p, k],
                                                     b_dv[4, p, k], b_dv[5, p, k])
                        pixels[0, k] += e0
                        pixels[1, k] += e1
                        pixels[2, k] += e2
                        pixels[3, k] += e3
                        pixels[4, k] += e4
                        pixels[5, k] += e5


# The kernels by output tile size: (input, output, output gradient, input gradient) transform
TILE_KERNELS = {2: (input_transform, output_transform, output_gradient_transform, input_gradient_transform),
                4: (input_transform4, output_transform4, output_gradient_transform4, input_gradient_transform4)}


# --- the filter transform and its transpose (NumPy: 3x3 -> (m+2)x(m+2) per channel pair, tiny) -------------
def filter_transform(w, tile=2):
    """``U[e, k, j] = (G w[:, :, k, j] Gᵀ)[e]``, shape ((m+2)², C_in, C_out) for output tiles of m = ``tile``, in
    ``w``'s dtype. Two 1-D passes (3 terms each), not one 9-term sum: the rounding the error bound counts."""
    g = WINOGRAD_MATRICES[tile][1].astype(w.dtype)
    gw = np.einsum("ap,pqkj->aqkj", g, w)          # G w   (m+2, 3, C_in, C_out)
    u = np.einsum("bq,aqkj->abkj", g, gw)          # (G w) Gᵀ
    return np.ascontiguousarray(u.reshape(len(g) ** 2, *w.shape[2:]))


def filter_gradient_transform(du, tile=2):
    """``dw[:, :, k, j] = Gᵀ dU[k, j] G`` from ``du`` ((m+2)², C_in, C_out): the transpose of
    ``filter_transform``."""
    g = WINOGRAD_MATRICES[tile][1].astype(du.dtype)
    du = du.reshape(len(g), len(g), *du.shape[1:])
    gdu = np.einsum("ap,abkj->pbkj", g, du)        # Gᵀ dU   (3, m+2, C_in, C_out)
    return np.ascontiguousarray(np.einsum("bq,pbkj->pqkj", g, gdu))


class WinogradCache(NamedTuple):
    """What the backward needs; its own type, so that ``conv.conv2d_backward`` can tell it from im2col's."""
    x: np.ndarray
    u: np.ndarray
    w_shape: tuple
    pads: tuple
    tiles: tuple
    tile: int


def winograd_chunks(x, th, tw, tile) -> list[tuple[int, int]]:
    """The chunks of images (``parallel.image_chunks``) by the size of one image's transformed tiles."""
    return image_chunks(len(x), (tile + 2) ** 2 * th * tw * x.shape[3] * x.itemsize)


def transformed_chunks(x, pads, th, tw, tile, share):
    """Yield ``(index, start, stop, v)`` for each chunk ``(index, start, stop)`` of ``share`` (as
    ``conv.im2col_chunks``): the transformed tiles ((m+2)², T, C_in) of images ``start:stop`` of ``x`` padded
    by ``pads``; one buffer."""
    top, _, left, _ = pads
    input_kernel = TILE_KERNELS[tile][0]
    buffer = None
    for index, start, stop in share:
        if buffer is None:
            buffer = np.empty(((tile + 2) ** 2, share.most_images * th * tw, x.shape[3]), x.dtype)
        v = buffer[:, :(stop - start) * th * tw]
        input_kernel(x[start:stop], top, left, th, tw, v)
        yield index, start, stop, v


def winograd_conv3x3_forward(x, w, b, padding="valid", epilogue=None, keep_output=True, tile=2):
    """``conv2d_forward(x, w, b, (1, 1), padding, epilogue)`` for a 3x3 kernel by F(m x m, 3x3), m = ``tile``
    (2 or 4); returns ``(y, cache)``. ``epilogue`` is called on each chunk's output rows, as in
    ``conv.conv2d_forward``.

    With ``keep_output=False`` each chunk's output goes to a buffer of its thread that the next chunk
    overwrites, and ``(None, None)`` is returned: the epilogue is then the only reader (the fused
    Conv2D + MaxPooling2D at inference keeps the pooled map alone)."""
    if w.shape[:2] != (3, 3):
        raise ValueError(f"Winograd F({tile}x{tile}, 3x3) needs a 3x3 kernel, got {w.shape[:2]}")
    oh, ow, pads, th, tw = winograd_geometry(x.shape, padding, tile)
    x = np.ascontiguousarray(x)
    u = filter_transform(w, tile)
    b = np.ascontiguousarray(b, dtype=x.dtype)
    c_out = w.shape[3]
    output_kernel = TILE_KERNELS[tile][1]
    y = np.empty((len(x), oh, ow, c_out), dtype=x.dtype) if keep_output else None
    chunks = winograd_chunks(x, th, tw, tile)

    def work(share):
        m_buffer = y_buffer = None  # this thread's buffers, made for its first chunk, sized for the largest
        for _, start, stop, v in transformed_chunks(x, pads, th, tw, tile, share):
            if m_buffer is None:
                m_buffer = np.empty((len(u), share.most_images * th * tw, c_out), x.dtype)
                y_buffer = None if keep_output else np.empty((share.most_images, oh, ow, c_out), x.dtype)
            m = m_buffer[:, :v.shape[1]]
            np.matmul(v, u, out=m)  # (m+2)² products (T, C_in) @ (C_in, C_out), one BLAS call each
            out = y[start:stop] if keep_output else y_buffer[:stop - start]
            output_kernel(m, b, stop - start, th, tw, out)
            if epilogue is not None:
                epilogue(start, stop, out.reshape(-1, c_out))

    run_chunks(chunks, work)
    return (y, WinogradCache(x, u, w.shape, pads, (th, tw), tile)) if keep_output else (None, None)


def winograd_conv3x3_backward(dy, cache, need_dx=True):
    """``(dx, dw, db)`` of ``winograd_conv3x3_forward`` (``dx`` None if not ``need_dx``), chunk by chunk."""
    x, u, w_shape, pads, (th, tw), tile = cache
    c_in, c_out = w_shape[2:]
    _, _, dy_kernel, dx_kernel = TILE_KERNELS[tile]
    dy = np.ascontiguousarray(dy)
    chunks = winograd_chunks(x, th, tw, tile)
    du_parts = np.empty((len(chunks), len(u), c_in, c_out), dtype=dy.dtype)  # one partial dU per chunk
    db_parts = np.empty((len(chunks), c_out), dtype=dy.dtype)  # and db, while the chunk's dy is in cache
    dx_pad = np.zeros((len(x), tile * th + 2, tile * tw + 2, c_in), dtype=dy.dtype) if need_dx else None
    u_t = np.ascontiguousarray(u.transpose(0, 2, 1))  # ((m+2)², C_out, C_in)

    def work(share):
        dm_buffer = dv_buffer = None  # this thread's buffers, sized for the largest chunk
        for i, start, stop, v in transformed_chunks(x, pads, th, tw, tile, share):
            tiles = v.shape[1]
            if dm_buffer is None:
                dm_buffer = np.empty((len(u), share.most_images * th * tw, c_out), dy.dtype)
                dv_buffer = np.empty((len(u), share.most_images * th * tw, c_in), dy.dtype) if need_dx else None
            dm = dm_buffer[:, :tiles]
            dy_kernel(dy[start:stop], th, tw, dm)
            np.sum(dy[start:stop].reshape(-1, c_out), axis=0, out=db_parts[i])
            np.matmul(v.transpose(0, 2, 1), dm, out=du_parts[i])  # one product per position e (as the forward)
            if need_dx:
                dv = dv_buffer[:, :tiles]
                np.matmul(dm, u_t, out=dv)
                dx_kernel(dv, th, tw, dx_pad[start:stop])

    run_chunks(chunks, work)
    dw = filter_gradient_transform(du_parts.sum(axis=0), tile)
    db = db_parts.sum(axis=0)
    if not need_dx:
        return None, dw, db
    top, _, left, _ = pads
    dx = dx_pad[:, top:top + x.shape[1], left:left + x.shape[2], :]
    return np.ascontiguousarray(dx), dw, db


# --- larger kernels: a sum of 3x3 pieces, each by F(4x4, 3x3) ----------------------------------------------
def kernel_pieces(kh, kw) -> list[tuple[int, int]]:
    """The offsets ``(p, q)`` of the 3x3 pieces ``w_pad[p:p+3, q:q+3]`` of a KH x KW kernel padded with zeros to
    multiples of 3 (a 5x5 kernel: 4 pieces, at (0, 0), (0, 3), (3, 0), (3, 3))."""
    return [(p, q) for p in range(0, kh, 3) for q in range(0, kw, 3)]


def pieces_filter_transform(w):
    """``U`` of every 3x3 piece of ``w`` (``kernel_pieces``), stacked along the input channels: shape
    (36, P*C_in, C_out), piece by piece in ``kernel_pieces``'s order."""
    kh, kw, c_in, c_out = w.shape
    w_pad = np.zeros((-(-kh // 3) * 3, -(-kw // 3) * 3, c_in, c_out), dtype=w.dtype)
    w_pad[:kh, :kw] = w
    return np.concatenate([filter_transform(w_pad[p:p + 3, q:q + 3], 4) for p, q in kernel_pieces(kh, kw)], axis=1)


def pieces_input_transform(x, top, left, th, tw, pieces, v):
    """``v`` ((36, T, P*C_in)): every piece's transformed tiles side by side along the channels, piece ``(p, q)``'s
    reading ``x`` padded by ``top`` rows and ``left`` columns and shifted by ``p`` rows and ``q`` columns."""
    for piece, (p, q) in enumerate(pieces):
        input_transform4(x, top - p, left - q, th, tw, v, piece * x.shape[3])


def winograd_pieces_forward(x, w, b, padding="valid", epilogue=None, keep_output=True):
    """``conv2d_forward(x, w, b, (1, 1), padding, epilogue)`` for a kernel of any size at stride 1, as the sum of
    its 3x3 pieces' convolutions by F(4x4, 3x3) (``reference.winograd_conv_by_pieces_forward``)::

        y = b + sum_{(p, q)} conv3x3(x_pad[:, p:, q:], w_pad[p:p+3, q:q+3])

    The pieces share one output transform: their transformed tiles sit side by side along the channels (``v``
    has P*C_in columns, ``U`` P*C_in rows), so each of the 36 products sums over all pieces at once, with K =
    P*C_in. A 5x5 kernel (4 pieces) then costs 4*36 = 144 multiplications per 4x4 output tile and channel
    pair, where im2col costs 16*25 = 400 (2.8x fewer), and its transformed tiles are 4 * 2.25 = 9x the input
    where im2col's matrix is 25x. numcnn runs it for a Conv2D where ``conv.use_winograd_pieces`` says so
    (``conv.conv2d_forward``; its backward ``winograd_pieces_backward``) and for the fused Conv2D +
    MaxPooling2D at inference (``kernels.fused``; in training that op's forward is the direct sum, its backward
    ``winograd_pieces_backward_by_chunks``). Returns ``y`` (None with ``keep_output=False``, as in
    ``winograd_conv3x3_forward``)."""
    kh, kw, c_in, c_out = w.shape
    oh, ow, (top, _, left, _) = conv2d_geometry(x.shape, w.shape, (1, 1), padding)
    th, tw = -(-oh // 4), -(-ow // 4)
    x = np.ascontiguousarray(x)
    pieces = kernel_pieces(kh, kw)
    u = pieces_filter_transform(w)
    b = np.ascontiguousarray(b, dtype=x.dtype)
    y = np.empty((len(x), oh, ow, c_out), dtype=x.dtype) if keep_output else None
    chunks = image_chunks(len(x), 36 * th * tw * len(pieces) * c_in * x.itemsize)

    def work(share):
        v_buffer = m_buffer = y_buffer = None  # this thread's buffers, sized for the largest chunk
        for _, start, stop in share:
            if v_buffer is None:
                v_buffer = np.empty((36, share.most_images * th * tw, len(pieces) * c_in), x.dtype)
                m_buffer = np.empty((36, share.most_images * th * tw, c_out), x.dtype)
                y_buffer = None if keep_output else np.empty((share.most_images, oh, ow, c_out), x.dtype)
            tiles = (stop - start) * th * tw
            v, m = v_buffer[:, :tiles], m_buffer[:, :tiles]
            pieces_input_transform(x[start:stop], top, left, th, tw, pieces, v)
            np.matmul(v, u, out=m)
            out = y[start:stop] if keep_output else y_buffer[:stop - start]
            output_transform4(m, b, stop - start, th, tw, out)
            if epilogue is not None:
                epilogue(start, stop, out.reshape(-1, c_out))

    run_chunks(chunks, work)
    return y


class PiecesCache(NamedTuple):
    """What ``winograd_pieces_backward`` needs; its own type, so that ``conv.conv2d_backward`` can tell it apart."""
    x: np.ndarray
    w: np.ndarray
    pads: tuple


def winograd_pieces_backward(dy, cache, need_dx=True):
    """``(dx, dw, db)`` of ``winograd_pieces_forward`` (``cache``: a ``PiecesCache``), chunk by chunk."""
    dy = np.ascontiguousarray(dy)
    return winograd_pieces_backward_by_chunks(dy.shape, dy.dtype, lambda start, stop, _: dy[start:stop], cache.x,
                                              cache.w, cache.pads, need_dx)


def winograd_pieces_backward_by_chunks(dy_shape, dtype, dy_chunk, x, w, pads, need_dx=True):
    """``(dx, dw, db)`` of ``winograd_pieces_forward`` (``dx`` None if not ``need_dx``) from the output gradient
    made one chunk of images at a time (``dy_chunk(start, stop, buffer)``, as in
    ``conv.conv2d_backward_by_chunks``): ``winograd_conv3x3_backward``'s steps, with every piece's transformed
    tiles side by side along the channels as in the forward::

        dM = A dy Aᵀ                     dU[piece] = V[piece]ᵀ dM, summed over chunks;  dw[piece] = Gᵀ dU G
        dV = dM Uᵀ  (all pieces at once)  dx_pad[shifted by the piece] += B dV[piece] Bᵀ

    ``pads``: the convolution's (top, bottom, left, right). The tiles cover ``dy``'s rows and columns, which may
    stop short of the convolution's output (the fused Conv2D + MaxPooling2D's backward)."""
    kh, kw, c_in, c_out = w.shape
    _, oh, ow, _ = dy_shape
    top, _, left, _ = pads
    th, tw = -(-oh // 4), -(-ow // 4)
    pieces = kernel_pieces(kh, kw)
    u = pieces_filter_transform(w)
    u_t = np.ascontiguousarray(u.transpose(0, 2, 1))  # (36, C_out, P*C_in)
    chunks = image_chunks(len(x), 36 * th * tw * len(pieces) * c_in * x.itemsize)
    du_parts = np.empty((len(chunks), 36, len(pieces) * c_in, c_out), dtype=dtype)  # one partial dU per chunk
    db_parts = np.empty((len(chunks), c_out), dtype=dtype)
    reach = max(p for p, _ in pieces), max(q for _, q in pieces)  # the farthest a piece's tiles are shifted
    padded = (max(4 * th + 2 + reach[0], top + x.shape[1]), max(4 * tw + 2 + reach[1], left + x.shape[2]))
    dx_pad = np.zeros((len(x), *padded, c_in), dtype=dtype) if need_dx else None

    def work(share):
        v_buffer = dm_buffer = dv_buffer = None  # this thread's buffers, sized for the largest chunk
        dy_buffer = np.empty((share.most_images, oh, ow, c_out), dtype)  # dy_chunk's scratch
        for i, start, stop in share:
            tiles = (stop - start) * th * tw
            if v_buffer is None:
                v_buffer = np.empty((36, share.most_images * th * tw, len(pieces) * c_in), dtype)
                dm_buffer = np.empty((36, share.most_images * th * tw, c_out), dtype)
                dv_buffer = np.empty_like(v_buffer) if need_dx else None
            v, dm = v_buffer[:, :tiles], dm_buffer[:, :tiles]
            pieces_input_transform(x[start:stop], top, left, th, tw, pieces, v)
            dy_rows = dy_chunk(start, stop, dy_buffer[:stop - start])
            output_gradient_transform4(dy_rows, th, tw, dm)
            np.sum(dy_rows.reshape(-1, c_out), axis=0, out=db_parts[i])
            np.matmul(v.transpose(0, 2, 1), dm, out=du_parts[i])
            if need_dx:
                dv = dv_buffer[:, :tiles]
                np.matmul(dm, u_t, out=dv)
                for piece, (p, q) in enumerate(pieces):
                    input_gradient_transform4(dv, th, tw, dx_pad[start:stop], piece * c_in, p, q)

    run_chunks(chunks, work)
    du = du_parts.sum(axis=0)
    dw_pad = np.zeros((-(-kh // 3) * 3, -(-kw // 3) * 3, c_in, c_out), dtype=dtype)
    for piece, (p, q) in enumerate(pieces):
        dw_pad[p:p + 3, q:q + 3] = filter_gradient_transform(du[:, piece * c_in:(piece + 1) * c_in], 4)
    dw, db = np.ascontiguousarray(dw_pad[:kh, :kw]), db_parts.sum(axis=0)
    if not need_dx:
        return None, dw, db
    return np.ascontiguousarray(dx_pad[:, top:top + x.shape[1], left:left + x.shape[2], :]), dw, db
