"""Fast Dense: BLAS matrix products. Same results as ``reference.dense_forward/backward``.

``Y = X W + b``;  ``dX = dY Wᵀ``,  ``dW = Xᵀ dY``,  ``db = Σ_n dY[n, :]``.

A CNN's dense layers are small products (the seed model's first: 32 x 576 times 576 x 64), too small to
split across threads: a multi-threaded BLAS spends more time waking and synchronising its threads than
multiplying (measured in a training step of the CIFAR-style model, batch 32, 2 threads, on a busy machine:
the 4096 -> 128 layer's forward took 35 ms of CPU time against 0.65 ms on one thread). So BLAS runs
single-threaded here, and only a large product is split (``row_chunks``): chunks of rows run on numcnn's
threads (``kernels.parallel``), each with its own partial ``dW``, added in chunk order.
"""

from __future__ import annotations

import numpy as np

from .parallel import even_chunks, run_chunks, single_threaded_blas

ROWS_PER_CHUNK = 64  # fewer rows than this per product, and BLAS re-reads W for little work
# ... and fewer multiply-adds than this per chunk, and waking a helper thread (tens of microseconds,
# kernels.parallel) costs more than the split saves. Measured with dense_forward / dense_backward on 2 threads,
# the former rule (64-row chunks) against this one, interleaved, medians (AMD EPYC Zen 5, OpenBLAS SkylakeX
# kernel; ms forward / backward): 128 x 576 -> 64, 2 chunks -> 1: 0.132 / 0.206 -> 0.060 / 0.120;
# 1000 x 64 -> 10, 16 -> 1: 0.099 / 0.181 -> 0.023 / 0.038; 1000 x 576 -> 64, 16 -> 2: 0.316 / 0.693 ->
# 0.288 / 0.505; the one loss: 256 x 3136 -> 10 (a thin product that mostly reads x), 4 -> 1: 0.240 / 0.357
# -> 0.255 / 0.412.
MIN_CHUNK_MULTIPLY_ADDS = 16 << 20


def row_chunks(n_rows: int, multiply_adds_per_row: int) -> list[tuple[int, int]]:
    """Chunks of rows, sizes differing by one row at most: a power of two of them (8 at most), each with
    ``ROWS_PER_CHUNK`` rows and ``MIN_CHUNK_MULTIPLY_ADDS`` multiply-adds at least (one chunk if the product
    is smaller). Fixed by the shapes alone, never by the thread count, so ``dW``'s sum is the same for any."""
    affordable = min(n_rows // ROWS_PER_CHUNK, n_rows * multiply_adds_per_row // MIN_CHUNK_MULTIPLY_ADDS, 8)
    return even_chunks(n_rows, 1 << max(0, affordable.bit_length() - 1))  # (the largest power of two <= it)


def dense_forward(x, w, b):
    chunks = row_chunks(len(x), w.shape[0] * w.shape[1])
    if len(chunks) == 1:
        with single_threaded_blas():
            y = x @ w
    else:
        y = np.empty((len(x), w.shape[1]), dtype=np.result_type(x, w))

        def work(share):
            for _, start, stop in share:
                np.matmul(x[start:stop], w, out=y[start:stop])

        run_chunks(chunks, work)
    y += b
    return y, (x, w)


def dense_backward(dy, cache, need_dx=True):
    x, w = cache
    chunks = row_chunks(len(x), w.shape[0] * w.shape[1])
    if len(chunks) == 1:
        with single_threaded_blas():
            return (dy @ w.T if need_dx else None), x.T @ dy, dy.sum(axis=0)
    dx = np.empty(x.shape, dtype=np.result_type(dy, w)) if need_dx else None
    dw_parts = np.empty((len(chunks), *w.shape), dtype=np.result_type(x, dy))

    def work(share):
        for i, start, stop in share:
            np.matmul(x[start:stop].T, dy[start:stop], out=dw_parts[i])
            if need_dx:
                np.matmul(dy[start:stop], w.T, out=dx[start:stop])

    run_chunks(chunks, work)
    return dx, dw_parts.sum(axis=0), dy.sum(axis=0)
