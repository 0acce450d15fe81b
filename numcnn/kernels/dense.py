"""Fast Dense: one BLAS matrix product each way. Same results as ``reference.dense_forward/backward``.

``Y = X W + b``;  ``dX = dY Wᵀ``,  ``dW = Xᵀ dY``,  ``db = Σ_n dY[n, :]``.
"""

from __future__ import annotations


def dense_forward(x, w, b):
    y = x @ w
    y += b
    return y, (x, w)


def dense_backward(dy, cache, need_dx=True):
    x, w = cache
    return (dy @ w.T if need_dx else None), x.T @ dy, dy.sum(axis=0)
