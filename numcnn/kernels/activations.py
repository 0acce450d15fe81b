"""Fast ReLU and softmax (vectorised NumPy). Same results as ``reference.relu_*`` / ``softmax_*``."""

from __future__ import annotations

import numpy as np


def relu_forward(x):
    """``y = max(x, 0)``; the cache is ``x`` itself (backward needs only its sign)."""
    return np.where(x > 0, x, x.dtype.type(0)), x


def relu_backward(dy, x):
    return np.where(x > 0, dy, dy.dtype.type(0))


def softmax_forward(z):
    """``exp(z - max z) / sum exp(z - max z)`` over the last axis (stable: the largest exponent is 0)."""
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    p = e / np.sum(e, axis=-1, keepdims=True)
    return p, p


def softmax_backward(dy, p):
    return p * (dy - np.sum(dy * p, axis=-1, keepdims=True))
