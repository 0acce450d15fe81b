"""Fused Conv2D -> activation -> MaxPooling2D: the pair the seed model runs twice, as one fast op.

The math is exactly that of the three ops run one after another (``reference.conv_pool_forward`` does just
that, and the tests check the fused op against it)::

    z = conv(x, w) + b          a = f(z)   (f = ReLU or identity)          y = maxpool(a)

Two facts make the fusion cheap *and* exact:

1. ReLU is monotonic, so ``max(relu(z)) = relu(max(z))``: pool first, then apply ReLU to 4x fewer values.
   The full-size activation ``a`` (11 MB for a batch of 128 in the seed model's first layer) is never
   written to memory.
2. The gradient goes where TF sends it. In a window whose maximum is > 0, ReLU does not change which
   position holds the first maximum. In a window whose maximum is <= 0, ReLU makes every value 0 and TF
   sends the gradient to the first of these tied zeros, where ReLU's derivative (0 at z <= 0) kills it;
   here ``y = relu(max) = 0`` and the mask ``[y > 0]`` kills it too. Backward is therefore::

       dz[n, winner(r, c, j), j] += dy[n, r, c, j] * [y[n, r, c, j] > 0]        (then conv backward from dz)

Two implementations, chosen by the size of one receptive field ``K = KH*KW*C_in``:

* **direct** (``K < DIRECT_MAX_FIELD``, e.g. a first layer on 1-channel images, K = 9): a Numba loop
  computes every conv output a pooling window needs and pools it at once; ``z`` is never stored.
* **gemm** (wide layers): ``z = im2col(x) @ W`` by BLAS, a cache-sized chunk of images at a time (see
  ``kernels.conv``), then a Numba epilogue adds the bias, pools and applies ReLU in one pass over ``z``.

Backward. Only a window's winner has a gradient, so only the winners' receptive fields enter the sums.
The direct path builds ``dz`` one row of pooling windows at a time (``dy`` masked by ReLU's derivative,
routed to each window's winner) in a small buffer and accumulates ``dW`` and ``dx`` from it: the full-size
``dz`` is never stored. The gemm path loops over the winners themselves (``_winners_backward``; where a
kernel row holds few numbers, e.g. a 5x5 kernel on 3 channels, it builds the dense ``dz`` and runs the plain
conv backward instead: ``winners_backward_pays``): per window
and channel, one multiply-add of the winner's receptive field into ``dW`` and of the channel's weights into
``dx``. That skips the ~80% of the conv backward's multiply-adds that a dense ``dz`` spends on zeros (1
position in 4 is a winner, and ReLU zeroes ~30% of those in the trained seed model), and needs no im2col,
``dz`` or col2im. BLAS runs its multiply-adds faster than these scattered loops, but does ~5x more of
them: measured in training, the seed model's second layer's backward went from 7.4 to 6.3 ms a step at
batch 128 and from 1.9 to 1.5 ms at batch 32 (a dense dz and two BLAS products before). A 5x5-or-larger
kernel with many channels goes through the dense ``dz`` to Winograd's products by its 3x3 pieces
(``_dense_backward``): for a 5x5 kernel 2.8x fewer multiply-adds than im2col, which outweighs the skipped zeros.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import njit, prange

from . import winograd
from .conv import conv2d_backward_by_chunks, conv_chunks, im2col_chunks, use_winograd, use_winograd_pieces
from .parallel import run_chunks
from .pool import maxpool_backward_images, maxpool_images, pool_window_row, route_window_row
from .reference import conv2d_geometry, pad_nhwc

# Below this receptive-field size a GEMM is too thin for BLAS to run well (K = 9 ran at 8% of peak).
DIRECT_MAX_FIELD = 32
# Images per partial dW sum in the direct backward: fixed, so the sum order (and the result, bit for bit)
# does not depend on the number of threads.
DW_PART_IMAGES = 8
# The winners' backward needs runs of at least this many numbers (``winners_backward_pays``).
WINNERS_MIN_RUN = 32


def conv_pool_forward(x, w, b, conv_strides=(1, 1), conv_padding="valid", pool_size=(2, 2), pool_strides=None,
                      pool_padding="valid", relu=True, method=None, winograd_rule=False):
    """``y = maxpool(f(conv(x, w) + b))`` with ``f`` = ReLU if ``relu`` else identity; returns ``(y, cache)``.

    Shapes: x (N, H, W, C_in), w (KH, KW, C_in, C_out), b (C_out,) -> y (N, POH, POW, C_out).
    ``method``: "direct", "gemm", "winograd" or None: choose by the receptive field's size, and with
    ``winograd_rule`` take Winograd F(4x4, 3x3) where ``conv.use_winograd`` says it pays (for a 3x3 kernel;
    for a larger one its 3x3 pieces, ``winograd.winograd_pieces_forward``, where
    ``conv.use_winograd_pieces`` says so; "winograd" takes whichever fits the kernel). Winograd rounds
    the outputs of equal receptive fields differently at different places in its 4x4 tiles, so a tie may
    get a different winner than the direct sum gives it (the first-maximum rule then picks by rounding):
    the value pooled is the same up to that rounding, which is why the layers ask for it at inference only
    (``predict``), where no gradient depends on the winner. Its backward is the gemm path's."""
    pool_strides = pool_size if pool_strides is None else pool_strides
    kh, kw, c_in, c_out = w.shape
    oh, ow, pads = conv2d_geometry(x.shape, w.shape, conv_strides, conv_padding)
    poh, pow_, (ptop, _, pleft, _) = conv2d_geometry((0, oh, ow, 0), pool_size, pool_strides, pool_padding)
    y = np.empty((x.shape[0], poh, pow_, c_out), dtype=x.dtype)
    winner = np.empty(y.shape, dtype=np.int32)  # flat position r * OW + c of the window's first maximum in z
    pool = (pool_size[0], pool_size[1], pool_strides[0], pool_strides[1], ptop, pleft)
    if method is None:
        pays = use_winograd(w.shape, conv_strides, (oh, ow)) or use_winograd_pieces(w.shape, conv_strides, (oh, ow))
        method = ("winograd" if winograd_rule and pays
                  else "direct" if kh * kw * c_in < DIRECT_MAX_FIELD else "gemm")
    if method != "winograd":  # (Winograd computes whole 4x4 tiles anyway)
        # 'valid' pooling of an odd-sized map drops its last row/column: those conv outputs never reach the
        # loss, so they are not computed (the seed model's second conv: 10x10 of its 11x11 outputs, 17% less)
        oh = min(oh, (poh - 1) * pool_strides[0] + pool_size[0] - ptop)
        ow = min(ow, (pow_ - 1) * pool_strides[1] + pool_size[1] - pleft)
    x = np.ascontiguousarray(x)
    x_pad = None  # a padded copy of x, made only where a kernel reads one (the gemm path pads implicitly)
    geometry = (oh, ow, *pool)
    if method == "direct":
        x_pad = _padded(x, pads)
        conv_pool = _direct_forward(kh, kw, c_in, *conv_strides, pool[0], pool[1], pool[3])
        conv_pool(x_pad, w, b, oh, ow, pool[2], ptop, pleft, relu, y, winner)
    elif method == "winograd":
        def pool_chunk(start, stop, rows):  # the bias is added here, before comparing, as the gemm path does
            maxpool_images(rows.reshape(stop - start, oh, ow, c_out), b, relu, *pool, y[start:stop],
                           winner[start:stop])

        # F(4x4, 3x3) by pieces: a 3x3 kernel is one piece (the same operations as winograd_conv3x3_forward's)
        winograd.winograd_pieces_forward(x, w, np.zeros_like(b), conv_padding, pool_chunk, keep_output=False)
        method = "gemm"  # the backward over the winners needs only x, w and the winners
    else:
        chunks = conv_chunks(x, w, oh, ow)

        def work(share):  # chunks of images on numcnn's threads, as in kernels.conv
            z_buffer = None  # one buffer for all of this thread's chunks, sized for the largest
            for _, start, stop, cols in im2col_chunks(x, w, conv_strides, pads, oh, ow, share):
                if z_buffer is None:
                    z_buffer = np.empty((share.most_images * oh * ow, c_out), x.dtype)
                z = np.matmul(cols, w.reshape(-1, c_out), out=z_buffer[:len(cols)])
                maxpool_images(z.reshape(stop - start, oh, ow, c_out), b, relu, *pool, y[start:stop],
                               winner[start:stop])

        run_chunks(chunks, work)
    return y, (method, x, x_pad, w, conv_strides, pads, geometry, y, winner, relu)


def conv_pool_backward(dy, cache, need_dx=True, backward=None):
    """``(dx, dw, db)`` of the fused op (see the module docstring); ``dx`` is None if not ``need_dx``.
    ``backward``: after the gemm path's forward, "winners" (loop over the winners), "dense" (a dense ``dz``,
    then im2col + GEMM) or "winograd" (a dense ``dz``, then Winograd F(4x4, 3x3)'s products, a larger kernel's
    by its 3x3 pieces; stride 1 only); None: "winograd" for a larger kernel where ``conv.use_winograd_pieces``
    says it pays, else as ``winners_backward_pays`` says (``_dense_backward`` has the measurements)."""
    method, x, x_pad, w, strides, pads, geometry, y, winner, relu = cache
    dy = np.ascontiguousarray(dy, dtype=y.dtype)
    if method == "gemm":
        if backward is None:
            backward = ("winograd" if use_winograd_pieces(w.shape, strides, geometry[:2])
                        else "winners" if winners_backward_pays(w.shape) else "dense")
        if backward not in ("winners", "dense", "winograd"):
            raise ValueError(f"backward must be 'winners', 'dense' or 'winograd', got {backward!r}")
        if backward == "winograd" and tuple(strides) != (1, 1):
            raise ValueError(f"a Winograd backward needs stride 1, got {tuple(strides)}")
        if backward != "winners":
            return _dense_backward(dy, cache, need_dx, winograd_products=backward == "winograd")
    if x_pad is None:  # the gemm path's forward padded implicitly; the winners' loop reads a padded copy
        x_pad = _padded(x, pads)
    n_parts = -(-len(dy) // DW_PART_IMAGES)
    db_parts = np.zeros((n_parts, w.shape[3]), dtype=w.dtype)
    if method == "gemm":
        w_t = np.ascontiguousarray(w.transpose(3, 0, 1, 2))  # (C_out, KH, KW, C_in): a channel's weights in one run
        dw_parts = np.zeros((n_parts, *w_t.shape), dtype=w.dtype)
        dx_pad = np.empty(x_pad.shape if need_dx else (0, 0, 0, 0), dtype=dy.dtype)  # zeroed in the kernel
        winners_backward = _winners_backward(w.shape[0], w.shape[1] * w.shape[2])
        winners_backward(x_pad, w_t, dy, y, relu, winner, *strides, geometry[1], DW_PART_IMAGES, need_dx, dw_parts,
                         db_parts, dx_pad)
        dw = np.ascontiguousarray(dw_parts.sum(axis=0).transpose(1, 2, 3, 0))
        return _crop(dx_pad, pads, x.shape) if need_dx else None, dw, db_parts.sum(axis=0)
    dw_parts = np.zeros((n_parts, *w.shape), dtype=w.dtype)
    dx_pad = np.zeros(x_pad.shape if need_dx else (0, 0, 0, 0), dtype=dy.dtype)
    backward = _direct_backward(*w.shape[:3])
    backward(x_pad, w, dy, y, relu, winner, *strides, *geometry, DW_PART_IMAGES, need_dx, dw_parts, db_parts, dx_pad)
    return _crop(dx_pad, pads, x.shape) if need_dx else None, dw_parts.sum(axis=0), db_parts.sum(axis=0)


def winners_backward_pays(w_shape) -> bool:
    """Whether the gemm path's backward loops over the winners (``_winners_backward``) rather than building
    the dense ``dz`` for im2col + GEMM (``_dense_backward``). The winners' loop adds one kernel row's
    ``KW * C_in`` numbers at a time, which vectorises only if that run is long. Measured in training at batch
    32 (backward of the fused pair, ms, winners vs dense; Intel Xeon Sapphire Rapids with AVX-512 / the
    same as an AVX2 machine): a 5x5 stride-2 conv on 3 channels (run 15) 3.8 vs 3.2 / 3.9 vs 3.3; the seed
    model's second conv (run 96) 1.17 vs 1.63 / 1.14 vs 1.79; a 5x5 conv on 32 channels (run 160) 5.9 vs
    8.5 / 5.8 vs 10.8.

    A BLAS with 512-bit kernels (OpenBLAS's ``SkylakeX`` on AMD EPYC Zen 5) runs the dense backward ~2x
    faster, and alone, one layer at a time, the dense backward then won (the artwork model's 32 -> 64 conv
    at batch 32: 49.7 vs 38.3 ms). In whole training steps it did not (interleaved in one process, winners
    vs dense): the artwork model 114 vs 142 ms at batch 32 and 189 vs 252 at batch 64, the strided model
    18.6 vs 17.5 ms (batch 32) and the seed model 6.84 vs 6.72 ms (batch 64), both a little slower with the
    winners' loop. So the rule does not depend on the BLAS."""
    kh, kw, c_in, _ = w_shape
    return kw * c_in >= WINNERS_MIN_RUN


def _dense_backward(dy, cache, need_dx, winograd_products=False):
    """The backward as the unfused ops run it: ``dz`` = ``dy`` masked by ReLU's derivative ``[y > 0]`` and
    routed to each window's winner (``pool.maxpool2d_backward``), then ``conv.conv2d_backward`` from ``dz``
    (im2col + GEMM, padding implicitly), whose ``db = sum dz`` is the bias gradient — but ``dz`` made one
    chunk of images at a time, by the thread whose products then read it from cache, never stored whole
    (``conv.conv2d_backward_by_chunks``; the same bits).

    With ``winograd_products`` (stride 1) the products from ``dz`` are Winograd F(4x4, 3x3)'s backward instead,
    by the kernel's 3x3 pieces (``winograd.winograd_pieces_backward_by_chunks``; a 3x3 kernel is one piece).
    The forward stays the direct sum, so the winners, and TF's tie rule, are the direct sum's: only the
    gradients' rounding changes (a backward is linear in ``dz``, so any exact algorithm for it gives the same
    numbers up to rounding). Measured on AMD EPYC Zen 5 with OpenBLAS's ``SkylakeX`` kernel, interleaved in one
    process: the strided model's second conv + pool (5x5, 32 -> 64 on 16x16, 3x3 'same' pooling) backward alone,
    winners' loop / dense im2col / Winograd pieces, 5.76 / 5.64 / 4.31 ms at batch 32 and 12.06 / 10.75 / 8.84
    at 64; its whole training steps, winners' loop vs Winograd, 11.58 vs 11.22 and 10.87 vs 11.02 ms (batch 32,
    two runs), 22.94 vs 20.75 and 20.28 vs 20.12 (64). So ``conv_pool_backward`` takes it for the larger kernels
    that ``conv.use_winograd_pieces`` sends to Winograd. Not for 3x3 kernels: whole steps of the artwork model
    took 82.0 vs 84.8 ms (batch 32) and 157.2 vs 157.9 (64) — there the winners' loop, which skips the ~80% of
    the products that a dense ``dz`` spends on zeros, stays."""
    _, x, _, w, strides, pads, (oh, ow, *pool), y, winner, relu = cache
    relu_output = y if relu else None

    def dz_chunk(start, stop, buffer):
        maxpool_backward_images(dy, relu_output, winner, pool, start, stop, buffer)
        return buffer

    dz_shape = (len(dy), oh, ow, w.shape[3])
    if winograd_products:
        return winograd.winograd_pieces_backward_by_chunks(dz_shape, dy.dtype, dz_chunk, x, w, pads, need_dx)
    return conv2d_backward_by_chunks(dz_shape, dy.dtype, dz_chunk, (x, w, strides, pads), need_dx)


def _padded(x, pads):
    """``x`` padded with zeros by ``pads`` (top, bottom, left, right), or ``x`` itself when they are all 0."""
    return pad_nhwc(x, pads) if any(pads) else x


def _crop(x_pad, pads, x_shape):
    """The unpadded part of ``x_pad``: what the gradient of a padded input is for the input itself."""
    top, _, left, _ = pads
    return np.ascontiguousarray(x_pad[:, top:top + x_shape[1], left:left + x_shape[2], :])


@functools.cache
def _winners_backward(kh, run):
    """The winners' backward kernel for kernels of ``kh`` rows of ``run = KW * C_in`` numbers.

    Both are compiled in as constants (Numba compiles a closure's variables so), giving the loops over a
    kernel row known trip counts: LLVM then unrolls the vectorised adds without a remainder loop to test.
    Measured on AMD EPYC Zen 4 (backward of the fused pair alone, interleaved, bit-equal results): the seed
    model's second conv at batch 128 (run 96) 7.12 -> 6.69 ms, the artwork model's 32 -> 64 conv at batch
    32 54.9 -> 49.6 ms; a 5x5 conv on 32 channels (run 160) unchanged."""

    @njit(parallel=True, cache=True, error_model="numpy")  # no ZeroDivisionError check in divmod
    def winners_backward(x_pad, w_t, dy, y, relu, winner, sh, sw, ow, chunk, need_dx, dw_parts, db_parts, dx_pad):
        """The gemm path's backward, over the winners only: for window ``(pr, pc)`` and channel ``j`` with winner
        at conv output ``(r, c)`` and gradient ``g = dy[n, pr, pc, j] * [y > 0]``, and every kernel row ``p``::

            dw[j, p, :, :]                        += g * x_pad[n, r*sh + p, c*sw : c*sw + KW, :]
            dx_pad[n, r*sh + p, c*sw : c*sw + KW, :] += g * w[p, :, :, j]                       (if need_dx)

        Both are runs of ``KW * C_in`` contiguous numbers (NHWC keeps a kernel row's pixels and channels together;
        ``dw`` and ``w_t`` are channel-major for the same reason), so the inner loop vectorises. Fixed chunks of
        images with one partial ``dw`` each, one thread per chunk: no races, the same sums in the same order for
        any thread count. ``dx_pad`` is zeroed here, image by image, just before its adds land on it."""
        c_out, _, _, c_in = w_t.shape
        n_images, poh, pow_, _ = dy.shape
        w_runs = w_t.reshape(c_out, kh, run)
        for part in prange(dw_parts.shape[0]):
            dw_runs, db = dw_parts[part].reshape(c_out, kh, run), db_parts[part]
            for n in range(part * chunk, min((part + 1) * chunk, n_images)):
                x_rows = x_pad[n].reshape(x_pad.shape[1], x_pad.shape[2] * c_in)
                if need_dx:
                    dx_pad[n] = 0
                dx_rows = dx_pad[n].reshape(x_pad.shape[1], x_pad.shape[2] * c_in) if need_dx else x_rows
                # channel outside the windows: channel j's dw and weights (KH runs) stay in L1 while its windows
                # go by; the windows outside made every window sweep all of dw (the strided model's 5x5 conv on
                # 32 channels: 200 KB) through L2. Whole training steps, interleaved A/B, Zen 5 with OpenBLAS's
                # SkylakeX kernel: seed model 10.08 -> 9.67 ms (batch 128) and 3.55 -> 3.41 (32), strided model
                # 14.32 -> 14.09, artwork model unchanged (95.6). dw and db get the same sums in the same order
                # as before (per channel, windows in order); dx's adds to a pixel now come channel by channel.
                for j in range(c_out):
                    dw_j, w_j = dw_runs[j], w_runs[j]
                    for pr in range(poh):
                        for pc in range(pow_):
                            if relu and not y[n, pr, pc, j] > 0:  # ReLU's derivative (NaN fails, as `y > 0` says)
                                continue
                            g = dy[n, pr, pc, j]
                            db[j] += g
                            r, c = divmod(winner[n, pr, pc, j], ow)
                            start = c * sw * c_in
                            for p in range(kh):
                                x_run, dw_run = x_rows[r * sh + p, start:start + run], dw_j[p]
                                for i in range(run):
                                    dw_run[i] += g * x_run[i]
                                if need_dx:
                                    dx_run, w_run = dx_rows[r * sh + p, start:start + run], w_j[p]
                                    for i in range(run):
                                        dx_run[i] += g * w_run[i]

    return winners_backward


# ----------------------------------------------------------------------------------------------
# Direct kernels (few input channels). Work goes one row of pooling windows at a time: the conv rows it
# needs live in a small buffer ``z[a, c, j]`` (a < PH), so the innermost loops run over a whole row of
# outputs and channels — long enough to vectorise well — and ``z`` never leaves the cache.
#
# The kernels are compiled once per receptive field (KH, KW, C_in), the forward also per conv stride and
# pooling window: Numba compiles a closure's variables as constants, so the tap loops ``for p in range(kh)``
# etc. have known trip counts and LLVM unrolls them. Each conv output's sum then stays in a register across
# its taps, and the dW update can walk the taps of one output position at a time (with runtime trip counts
# that order was the slower one). Measured on the seed model's first layer at batch 128, with
# ``route_window_row``: forward 1.73 -> 1.48 ms, backward 2.89 -> 1.96 ms (per-layer profile of
# benchmarks/run.py, Zen 3). Constant strides then took the forward from 1.11 to 0.80 ms, and the inline
# pooling of windows inside the map (constant window) to 0.52 ms (A/B in one process, Zen 5); the backward's
# time did not change with constant strides, so it keeps them as arguments (each compiled variant costs
# seconds).
# ----------------------------------------------------------------------------------------------
@functools.cache
def _direct_forward(kh, kw, c_in, sh, sw, ph, pw, psw):
    """The direct forward kernel for one receptive field (KH, KW, C_in), conv stride (SH, SW), pooling
    window (PH, PW) and pooling column stride PSW."""

    @njit(parallel=True, cache=True)
    def conv_pool(x_pad, w, b, oh, ow, psh, ptop, pleft, relu, y, winner):
        """One image per thread: ``z`` = the conv rows of one row of pooling windows, then, per window, the
        first maximum of ``z + b`` for all channels at once (strict ``>`` in row-major window order: TF's tie
        rule; where a window reaches into 'same' padding ``pool.pool_window_row``, the scan max pooling
        uses). Every conv output is summed in the same order, so equal receptive fields give bit-equal
        outputs and ties stay ties (a BLAS GEMM may round equal rows differently depending on where they sit,
        and so move the gradient of a tie)."""
        c_out, poh = w.shape[3], y.shape[1]
        w_taps = w.reshape(kh * kw * c_in, c_out)  # row (p*KW + q)*C_in + k: one tap's weights, contiguous
        zero = y.dtype.type(0)  # typed zeros: a bare 0 is an int64, which turns float32 math into float64
        for n in prange(x_pad.shape[0]):
            z = np.empty((ph, ow, c_out), dtype=y.dtype)
            buffers = (np.empty(c_out, dtype=y.dtype), np.empty(c_out, dtype=y.dtype),
                       np.empty(c_out, dtype=np.int32), np.empty(c_out, dtype=np.int32))
            for pr in range(poh):
                for a in range(ph):
                    r = pr * psh + a - ptop
                    if r < 0 or r >= oh:  # the pooling window's 'same' padding: never a maximum
                        continue
                    for c in range(ow):
                        z_rc = z[a, c]
                        for j in range(c_out):  # vectorised over channels; the taps are unrolled
                            total = zero
                            for p in range(kh):
                                for q in range(kw):
                                    for k in range(c_in):
                                        tap = (p * kw + q) * c_in + k
                                        total += x_pad[n, r * sh + p, c * sw + q, k] * w_taps[tap, j]
                            z_rc[j] = total
                r0 = pr * psh - ptop
                if r0 >= 0 and r0 + ph <= oh and pleft == 0 and (y.shape[2] - 1) * psw + pw <= ow:
                    # every window inside the map: pool.pool_window_row's scan (same values, same tie rule)
                    # with constant window loops, which LLVM unrolls, so the channel loop vectorises with the
                    # running maximum in registers (seed model's first layer, 128 images, one thread: the
                    # pooling took 0.18 ms instead of 0.67). Written inline: a compiled helper held as a
                    # closure variable would make Numba's disk cache miss in every new process.
                    for pc in range(y.shape[2]):
                        c0 = pc * psw
                        for j in range(c_out):
                            best, best_at = z[0, c0, j] + b[j], np.int32(r0 * ow + c0)
                            for a in range(ph):
                                for e in range(pw):
                                    if a + e > 0:  # (0, 0) started the scan
                                        value = z[a, c0 + e, j] + b[j]
                                        if value > best:  # strict: the first maximum wins (TF's tie rule)
                                            best, best_at = value, np.int32((r0 + a) * ow + c0 + e)
                            y[n, pr, pc, j] = max(best, zero) if relu else best
                            winner[n, pr, pc, j] = best_at
                else:
                    pool_window_row(z, r0, b, relu, pr, oh, ow, ph, pw, psh, psw, ptop, pleft, buffers, y[n, pr],
                                    winner[n, pr])

    return conv_pool


@functools.cache
def _direct_backward(kh, kw, c_in):
    """The direct backward kernel for one receptive field (KH, KW, C_in)."""

    @njit(parallel=True, cache=True)
    def backward(x_pad, w, dy, y, relu, winner, sh, sw, oh, ow, ph, pw, psh, psw, ptop, pleft, chunk, need_dx,
                 dw_parts, db_parts, dx_pad):
        """Per row of pooling windows: ``g[a, c, j]`` = the gradient of conv output ``(r, c, j)`` (``dy``
        masked by ReLU's derivative, routed to each window's winner, 0 elsewhere; overlapping windows add
        up), then for every output position ``(r, c)`` and tap ``(p, q, k)``::

            dw[p, q, k, j]                   += g[a, c, j] * x_pad[n, r*sh + p, c*sw + q, k]
            dx_pad[n, r*sh + p, c*sw + q, k] += sum_j g[a, c, j] * w[p, q, k, j]            (if need_dx)

        Images are split into fixed chunks with one partial ``dw`` each (no races; the parts are summed in
        a fixed order, so the result does not depend on the thread count)."""
        c_out = w.shape[3]
        n_images, poh, pow_, _ = dy.shape
        w_taps = w.reshape(kh * kw * c_in, c_out)
        dw_taps = dw_parts.reshape(dw_parts.shape[0], kh * kw * c_in, c_out)
        zero = dy.dtype.type(0)
        for part in prange(dw_parts.shape[0]):
            g = np.empty((ph, ow, c_out), dtype=dy.dtype)
            masked = np.empty((pow_, c_out), dtype=dy.dtype)
            db, dw = db_parts[part], dw_taps[part]
            for n in range(part * chunk, min((part + 1) * chunk, n_images)):
                for pr in range(poh):
                    g[:] = 0
                    route_window_row(dy[n, pr], y[n, pr], relu, winner[n, pr], pr, oh, ow, ph, pw, psh, psw, ptop,
                                     pleft, pr * psh - ptop, masked, db, g)
                    for a in range(ph):
                        r = pr * psh + a - ptop
                        if r < 0 or r >= oh:
                            continue
                        # position-outer, tap-inner: consecutive updates go to different dw rows (tap-outer
                        # made each update wait for the previous one to the same row: 1.5x slower)
                        for c in range(ow):
                            g_rc = g[a, c]
                            for p in range(kh):
                                for q in range(kw):
                                    for k in range(c_in):
                                        pixel = x_pad[n, r * sh + p, c * sw + q, k]
                                        dw_tap = dw[(p * kw + q) * c_in + k]
                                        for j in range(c_out):
                                            dw_tap[j] += pixel * g_rc[j]
                            if need_dx:
                                for p in range(kh):
                                    for q in range(kw):
                                        for k in range(c_in):
                                            w_tap = w_taps[(p * kw + q) * c_in + k]
                                            total = zero
                                            for j in range(c_out):
                                                total += g_rc[j] * w_tap[j]
                                            dx_pad[n, r * sh + p, c * sw + q, k] += total

    return backward
