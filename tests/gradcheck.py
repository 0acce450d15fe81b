"""The one finite-difference and comparison helper every gradient test uses (float64, central differences)."""

from __future__ import annotations

import numpy as np


def relative_error(numerical, analytical) -> float:
    """``||a - b|| / max(||a||, ||b||)`` over the whole array: robust when single entries are ~0."""
    numerical, analytical = np.asarray(numerical, np.float64), np.asarray(analytical, np.float64)
    scale = max(np.linalg.norm(numerical), np.linalg.norm(analytical), 1e-300)
    return float(np.linalg.norm(numerical - analytical) / scale)


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6, indices=None) -> np.ndarray:
    """Central differences ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)`` of a scalar ``f`` at ``x``.

    ``x`` is perturbed in place and restored. With ``indices`` (flat positions), only those entries are
    computed (the rest stay NaN) — whole-model checks sample entries to stay fast.
    """
    assert x.dtype == np.float64, "finite differences are only meaningful in float64"
    grad = np.full(x.shape, np.nan)
    flat, grad_flat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size) if indices is None else indices:
        original = flat[i]
        flat[i] = original + eps
        plus = f()
        flat[i] = original - eps
        minus = f()
        flat[i] = original
        grad_flat[i] = (plus - minus) / (2 * eps)
    return grad


def check_gradient(f, x, analytical, eps=1e-6, indices=None) -> float:
    """Relative error between ``analytical`` and central differences of ``f`` at ``x`` (on ``indices``)."""
    numerical = numerical_gradient(f, x, eps, indices)
    if indices is None:
        return relative_error(numerical, analytical)
    indices = np.asarray(indices)
    return relative_error(numerical.reshape(-1)[indices], np.asarray(analytical).reshape(-1)[indices])
