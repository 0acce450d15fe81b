"""Fast Winograd F(2x2, 3x3) convolution (Lavin & Gray 2016) for 3x3, stride-1 Conv2D, forward and backward.

Same math as ``reference.winograd_conv3x3_forward`` / ``winograd_conv3x3_backward`` (read those, and the
matrices ``WINOGRAD_BT``, ``WINOGRAD_G``, ``WINOGRAD_AT`` there), and the same results as the direct
``conv.conv2d_forward`` up to rounding. The output is cut into 2x2 tiles; tile ``t = (n, i, l)`` reads a 4x4
patch of the padded input. With ``e = 4*ξ + ν`` one of the 16 positions of a transformed 4x4 tile::

    U[e, k, j] = (G w[:, :, k, j] Gᵀ)[ξ, ν]          filter transform (NumPy: tiny)
    V[e, t, k] = (Bᵀ d[t, k] B)[ξ, ν]                 input transform (Numba)
    M[e]       = V[e] @ U[e]                          16 matrix products (T, C_in) @ (C_in, C_out), BLAS
    y[tile t]  = Aᵀ M[:, t, j] A + b[j]               output transform (Numba)

A direct (im2col) convolution spends ``2*2*9 = 36`` multiplications per output tile and channel pair; here
the products are the 16 of ``M``: 2.25x fewer, and the GEMMs are the same shape as im2col's with K = C_in
instead of 9*C_in. The transforms are additions only (coefficients 0, ±1, ±1/2), but they are passes over
memory: the transformed tiles ``V`` are 16/4 = 4x the size of the input.

Backward, the forward's steps transposed (``B = (Bᵀ)ᵀ``, ``A = (Aᵀ)ᵀ``)::

    dM[e, t, j] = (A dy[tile t, j] Aᵀ)[ξ, ν]          (Numba; dy is 0 past the output's edge)
    dV[e]       = dM[e] @ U[e]ᵀ                       16 products (T, C_out) @ (C_out, C_in)
    dx_pad[tile t, k] += B dV[:, t, k] Bᵀ             (Numba; overlapping tiles add up)
    dU[e]       = V[e]ᵀ @ dM[e]                       16 products (C_in, T) @ (T, C_out), summed over chunks
    dw          = Gᵀ dU G;   db = Σ dy

The batch goes through in chunks of a few images whose ``V`` has about ``parallel.CHUNK_BYTES`` (as in
``kernels.conv``: transforms and GEMMs then work on data still in cache), on numcnn's threads, one chunk per
thread at a time with single-threaded BLAS (``kernels.parallel``). Neighbouring tiles overlap, so their
``dx_pad`` adds must not race: a chunk's tiles are added by one thread, in order, and every pixel receives
its contributions in the same order whatever the number of threads: the result is the same bit for bit.

Rounding: the transforms add up to 3 terms per 1-D pass and the filter transform's 1/2 is exact, so the extra error over a direct convolution is bounded
(``tests/test_winograd.py`` derives the bound and checks it; the notebook ``01_convolution`` explains it).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .parallel import image_chunks, run_chunks
from .reference import WINOGRAD_G, winograd_geometry, winograd_pad


# --- the 1-D transforms, written out (each is one matrix-vector product with a 0/±1 matrix) --------------
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


# --- the 2-D tile transforms (serial and without the GIL: the callers run chunks of images on threads) -----
@njit(nogil=True, cache=True)
def input_transform(x_pad, th, tw, v):
    """``v[e, t, k] = (Bᵀ d B)[e]`` for every tile ``d = x_pad[n, 2i:2i+4, 2l:2l+4, k]``, ``t = (n*th+i)*tw+l``."""
    n_images, _, _, channels = x_pad.shape
    for row in range(n_images * th):
        n, i = row // th, row % th
        for l in range(tw):
            t = row * tw + l
            r, c = 2 * i, 2 * l
            for k in range(channels):
                # Bᵀ d: transform each of the 4 columns of the tile
                a0, a1, a2, a3 = _bt(x_pad[n, r, c, k], x_pad[n, r + 1, c, k], x_pad[n, r + 2, c, k], x_pad[n, r + 3, c, k])
                b0, b1, b2, b3 = _bt(x_pad[n, r, c + 1, k], x_pad[n, r + 1, c + 1, k], x_pad[n, r + 2, c + 1, k],
                                     x_pad[n, r + 3, c + 1, k])
                c0, c1, c2, c3 = _bt(x_pad[n, r, c + 2, k], x_pad[n, r + 1, c + 2, k], x_pad[n, r + 2, c + 2, k],
                                     x_pad[n, r + 3, c + 2, k])
                d0, d1, d2, d3 = _bt(x_pad[n, r, c + 3, k], x_pad[n, r + 1, c + 3, k], x_pad[n, r + 2, c + 3, k],
                                     x_pad[n, r + 3, c + 3, k])
                # (Bᵀ d) B: transform each of its 4 rows; row ξ goes to e = 4ξ .. 4ξ+3
                v[0, t, k], v[1, t, k], v[2, t, k], v[3, t, k] = _bt(a0, b0, c0, d0)
                v[4, t, k], v[5, t, k], v[6, t, k], v[7, t, k] = _bt(a1, b1, c1, d1)
                v[8, t, k], v[9, t, k], v[10, t, k], v[11, t, k] = _bt(a2, b2, c2, d2)
                v[12, t, k], v[13, t, k], v[14, t, k], v[15, t, k] = _bt(a3, b3, c3, d3)


@njit(nogil=True, cache=True)
def output_transform(m, b, n_images, th, tw, y):
    """``y[n, 2i+a, 2l+c, j] = (Aᵀ M A)[a, c] + b[j]`` for every tile, cut to ``y``'s height and width."""
    _, oh, ow, channels = y.shape
    for row in range(n_images * th):
        n, i = row // th, row % th
        for l in range(tw):
            t = row * tw + l
            r, c = 2 * i, 2 * l
            for j in range(channels):
                # Aᵀ M: combine the 4 rows of M (ξ = 0..3) for each of its 4 columns ν
                s0, u0 = _at(m[0, t, j], m[4, t, j], m[8, t, j], m[12, t, j])
                s1, u1 = _at(m[1, t, j], m[5, t, j], m[9, t, j], m[13, t, j])
                s2, u2 = _at(m[2, t, j], m[6, t, j], m[10, t, j], m[14, t, j])
                s3, u3 = _at(m[3, t, j], m[7, t, j], m[11, t, j], m[15, t, j])
                y00, y01 = _at(s0, s1, s2, s3)
                y10, y11 = _at(u0, u1, u2, u3)
                y[n, r, c, j] = y00 + b[j]
                if c + 1 < ow:
                    y[n, r, c + 1, j] = y01 + b[j]
                if r + 1 < oh:
                    y[n, r + 1, c, j] = y10 + b[j]
                    if c + 1 < ow:
                        y[n, r + 1, c + 1, j] = y11 + b[j]


@njit(nogil=True, cache=True)
def output_gradient_transform(dy, th, tw, dm):
    """``dm[e, t, j] = (A g Aᵀ)[e]`` for every 2x2 tile ``g`` of ``dy`` (0 past its edge): the transpose of
    ``output_transform``."""
    n_images, oh, ow, channels = dy.shape
    zero = dy.dtype.type(0)
    for row in range(n_images * th):
        n, i = row // th, row % th
        for l in range(tw):
            t = row * tw + l
            r, c = 2 * i, 2 * l
            right, down = c + 1 < ow, r + 1 < oh
            for j in range(channels):
                g00 = dy[n, r, c, j]
                g01 = dy[n, r, c + 1, j] if right else zero
                g10 = dy[n, r + 1, c, j] if down else zero
                g11 = dy[n, r + 1, c + 1, j] if right and down else zero
                p0, p1, p2, p3 = _a(g00, g10)  # A g: column 0 of the tile
                q0, q1, q2, q3 = _a(g01, g11)  # column 1
                dm[0, t, j], dm[1, t, j], dm[2, t, j], dm[3, t, j] = _a(p0, q0)  # (A g) Aᵀ, row by row
                dm[4, t, j], dm[5, t, j], dm[6, t, j], dm[7, t, j] = _a(p1, q1)
                dm[8, t, j], dm[9, t, j], dm[10, t, j], dm[11, t, j] = _a(p2, q2)
                dm[12, t, j], dm[13, t, j], dm[14, t, j], dm[15, t, j] = _a(p3, q3)


@njit(cache=True)
def _add_tile_gradient(dv, t, n, r, c, dx_pad):
    """``dx_pad[n, r:r+4, c:c+4, k] += (B dV[:, t, k] Bᵀ)`` for every channel ``k``."""
    for k in range(dx_pad.shape[3]):
        # B dV: combine the 4 rows of dV for each of its 4 columns
        a0, a1, a2, a3 = _b(dv[0, t, k], dv[4, t, k], dv[8, t, k], dv[12, t, k])
        b0, b1, b2, b3 = _b(dv[1, t, k], dv[5, t, k], dv[9, t, k], dv[13, t, k])
        c0, c1, c2, c3 = _b(dv[2, t, k], dv[6, t, k], dv[10, t, k], dv[14, t, k])
        d0, d1, d2, d3 = _b(dv[3, t, k], dv[7, t, k], dv[11, t, k], dv[15, t, k])
        rows = (_b(a0, b0, c0, d0), _b(a1, b1, c1, d1), _b(a2, b2, c2, d2), _b(a3, b3, c3, d3))
        for p in range(4):
            e0, e1, e2, e3 = rows[p]
            dx_pad[n, r + p, c, k] += e0
            dx_pad[n, r + p, c + 1, k] += e1
            dx_pad[n, r + p, c + 2, k] += e2
            dx_pad[n, r + p, c + 3, k] += e3


@njit(nogil=True, cache=True)
def input_gradient_transform(dv, th, tw, dx_pad):
    """Add ``B dV Bᵀ`` of every tile into ``dx_pad`` (zeroed by the caller): the transpose of
    ``input_transform``. Neighbouring tiles overlap: one thread adds them all, in a fixed order."""
    for n in range(dx_pad.shape[0]):
        for i in range(th):
            for l in range(tw):
                _add_tile_gradient(dv, (n * th + i) * tw + l, n, 2 * i, 2 * l, dx_pad)


# --- the filter transform and its transpose (NumPy: 3x3 -> 4x4 per channel pair, tiny) -------------------
def filter_transform(w):
    """``U[e, k, j] = (G w[:, :, k, j] Gᵀ)[e]``, shape (16, C_in, C_out), in ``w``'s dtype. Two 1-D passes
    (3 terms each), not one 9-term sum: the rounding the error bound counts."""
    g = WINOGRAD_G.astype(w.dtype)
    gw = np.einsum("ap,pqkj->aqkj", g, w)          # G w   (4, 3, C_in, C_out)
    u = np.einsum("bq,aqkj->abkj", g, gw)          # (G w) Gᵀ
    return np.ascontiguousarray(u.reshape(16, *w.shape[2:]))


def filter_gradient_transform(du):
    """``dw[:, :, k, j] = Gᵀ dU[k, j] G`` from ``du`` (16, C_in, C_out): the transpose of ``filter_transform``."""
    g = WINOGRAD_G.astype(du.dtype)
    du = du.reshape(4, 4, *du.shape[1:])
    gdu = np.einsum("ap,abkj->pbkj", g, du)        # Gᵀ dU   (3, 4, C_in, C_out)
    return np.ascontiguousarray(np.einsum("bq,pbkj->pqkj", g, gdu))


class WinogradCache(NamedTuple):
    """What the backward needs; its own type, so that ``conv.conv2d_backward`` can tell it from im2col's."""
    x_shape: tuple
    x_pad: np.ndarray
    u: np.ndarray
    w_shape: tuple
    pads: tuple
    tiles: tuple


def winograd_chunks(x_pad, th, tw) -> list[tuple[int, int]]:
    """The chunks of images (``parallel.image_chunks``) by the size of one image's transformed tiles."""
    return image_chunks(len(x_pad), 16 * th * tw * x_pad.shape[3] * x_pad.itemsize)


def transformed_chunks(x_pad, th, tw, share):
    """Yield ``(index, start, stop, v)`` for each chunk ``(index, start, stop)`` of ``share`` (as
    ``conv.im2col_chunks``): the transformed tiles (16, T, C_in) of images ``start:stop``; one buffer."""
    if not share:
        return
    buffer = np.empty((16, max(stop - start for _, start, stop in share) * th * tw, x_pad.shape[3]), x_pad.dtype)
    for index, start, stop in share:
        v = buffer[:, :(stop - start) * th * tw]
        input_transform(x_pad[start:stop], th, tw, v)
        yield index, start, stop, v


def winograd_conv3x3_forward(x, w, b, padding="valid"):
    """``conv2d_forward(x, w, b, (1, 1), padding)`` for a 3x3 kernel by F(2x2, 3x3); returns ``(y, cache)``."""
    if w.shape[:2] != (3, 3):
        raise ValueError(f"Winograd F(2x2, 3x3) needs a 3x3 kernel, got {w.shape[:2]}")
    oh, ow, pads, th, tw = winograd_geometry(x.shape, padding)
    x_pad = winograd_pad(x, pads, th, tw)
    u = filter_transform(w)
    b = np.ascontiguousarray(b, dtype=x.dtype)
    y = np.empty((len(x), oh, ow, w.shape[3]), dtype=x.dtype)
    chunks = winograd_chunks(x_pad, th, tw)

    def work(share):
        m_buffer = None
        for _, start, stop, v in transformed_chunks(x_pad, th, tw, share):
            m_buffer = np.empty((16, v.shape[1], w.shape[3]), x.dtype) if m_buffer is None else m_buffer
            m = m_buffer[:, :v.shape[1]]
            for e in range(16):  # 16 plain 2-D products: NumPy's stacked matmul was measured far slower
                np.matmul(v[e], u[e], out=m[e])
            output_transform(m, b, stop - start, th, tw, y[start:stop])

    run_chunks(chunks, work)
    return y, WinogradCache(x.shape, x_pad, u, w.shape, pads, (th, tw))


def winograd_conv3x3_backward(dy, cache, need_dx=True):
    """``(dx, dw, db)`` of ``winograd_conv3x3_forward`` (``dx`` None if not ``need_dx``), chunk by chunk."""
    x_shape, x_pad, u, w_shape, pads, (th, tw) = cache
    c_in, c_out = w_shape[2:]
    dy = np.ascontiguousarray(dy)
    chunks = winograd_chunks(x_pad, th, tw)
    du_parts = np.empty((len(chunks), 16, c_in, c_out), dtype=dy.dtype)  # one partial dU per chunk
    dx_pad = np.zeros(x_pad.shape, dtype=dy.dtype) if need_dx else None
    u_t = np.ascontiguousarray(u.transpose(0, 2, 1))  # (16, C_out, C_in)

    def work(share):
        dm_buffer = dv_buffer = None
        for i, start, stop, v in transformed_chunks(x_pad, th, tw, share):
            tiles = v.shape[1]
            dm_buffer = np.empty((16, tiles, c_out), dy.dtype) if dm_buffer is None else dm_buffer
            dm = dm_buffer[:, :tiles]
            output_gradient_transform(dy[start:stop], th, tw, dm)
            for e in range(16):  # 2-D products, one per position e (see the forward)
                np.matmul(v[e].T, dm[e], out=du_parts[i, e])
            if need_dx:
                dv_buffer = np.empty((16, tiles, c_in), dy.dtype) if dv_buffer is None else dv_buffer
                dv = dv_buffer[:, :tiles]
                for e in range(16):
                    np.matmul(dm[e], u_t[e], out=dv[e])
                input_gradient_transform(dv, th, tw, dx_pad[start:stop])

    run_chunks(chunks, work)
    dw = filter_gradient_transform(du_parts.sum(axis=0))
    db = dy.reshape(-1, c_out).sum(axis=0)
    if not need_dx:
        return None, dw, db
    top, _, left, _ = pads
    dx = dx_pad[:, top:top + x_shape[1], left:left + x_shape[2], :]
    return np.ascontiguousarray(dx), dw, db
