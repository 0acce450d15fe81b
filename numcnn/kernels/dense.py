"""Fast Dense: BLAS matrix products. Same results as ``reference.dense_forward/backward``.

``Y = X W + b``;  ``dX = dY Wᵀ``,  ``dW = Xᵀ dY``,  ``db = Σ_n dY[n, :]``.

A CNN's dense layers are small products (the seed model's first: 32 x 576 times 576 x 64), too small to
split across threads: a multi-threaded BLAS spends more time waking and synchronising its threads than
multiplying (measured in a training step of the CIFAR-style model, batch 32, 2 threads, on a busy machine:
the 4096 -> 128 layer's forward took 35 ms of CPU time against 0.65 ms on one thread). So BLAS runs
single-threaded here, and only a large batch is split: chunks of at least ``ROWS_PER_CHUNK`` rows run on
numcnn's threads (``kernels.parallel``), each with its own partial ``dW``, added in chunk order.
"""

from __future__ import annotations

import numpy as np

from .parallel import run_chunks, single_threaded_blas

ROWS_PER_CHUNK = 64  # fewer rows than this per product, and BLAS re-reads W for little work


def row_chunks(n_rows: int) -> list[tuple[int, int]]:
    """Chunks of ``ROWS_PER_CHUNK`` rows (fixed by the batch size alone, never by the thread count)."""
    return [(start, min(start + ROWS_PER_CHUNK, n_rows)) for start in range(0, n_rows, ROWS_PER_CHUNK)]


def dense_forward(x, w, b):
    chunks = row_chunks(len(x))
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
    chunks = row_chunks(len(x))
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
