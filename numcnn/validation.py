"""Cheap checks at numcnn's boundaries: once per call, never per element in a loop.

Integer images are **refused**, not converted: a uint8 image in 0..255 fed to a model trained on 0..1 gives
confident, silently wrong answers. ``numcnn.preprocessing.images_to_input`` converts them explicitly.
"""

from __future__ import annotations

import numpy as np

from .errors import InputDTypeError, LabelError, NonFiniteError, ShapeError


def check_batch(x, expected_shape, name: str, dtype, require_finite: bool = False) -> np.ndarray:
    """A batch (N, *expected_shape) of real numbers as a contiguous ``dtype`` array."""
    x = np.asarray(x)
    if x.dtype.kind in "iub":
        raise InputDTypeError(
            f"{name} got integer inputs (dtype {x.dtype}); numcnn refuses them rather than guess their scale: "
            f"use numcnn.preprocessing.images_to_input(x) for 0..255 images, or x.astype('float32')")
    if x.dtype.kind != "f":
        raise InputDTypeError(f"{name} expects a float array, got dtype {x.dtype}")
    expected = tuple(expected_shape)
    shown = ", ".join(map(str, expected))
    if x.shape == expected:
        raise ShapeError(f"{name} expects a batch of shape (N, {shown}); got one example of shape {x.shape} — "
                         f"add a batch axis with x[None]")
    if x.ndim != len(expected) + 1 or x.shape[1:] != expected:
        raise ShapeError(f"{name} expects input of shape (N, {shown}), got {x.shape}")
    if x.shape[0] == 0:
        raise ShapeError(f"{name} got an empty batch (0 examples)")
    if require_finite and not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise NonFiniteError(f"{name} got {bad} NaN or infinite input values; clean the data first")
    return np.ascontiguousarray(x, dtype=dtype)


def check_labels(y, n_examples: int, output_shape, name: str) -> np.ndarray:
    """Sparse labels (N,) in [0, classes) or one-hot/dense targets (N, *output_shape)."""
    y = np.asarray(y)
    if y.ndim == 0 or len(y) != n_examples:
        raise LabelError(f"{name}: x has {n_examples} examples but y has {len(y) if y.ndim else 'a scalar'}")
    if y.dtype.kind not in "biuf":
        raise LabelError(f"{name}: labels must be numbers, got dtype {y.dtype}")
    if y.shape[1:] == tuple(output_shape):
        return y  # dense targets (one-hot or regression)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise LabelError(f"{name}: labels must have shape ({n_examples},) or ({n_examples}, "
                         f"{', '.join(map(str, output_shape))}), got {y.shape}")
    if y.dtype.kind == "f" and (not np.isfinite(y).all() or np.any(y != np.round(y))):
        raise LabelError(f"{name}: class labels must be whole numbers")
    classes = int(np.prod(output_shape))
    if y.min() < 0 or y.max() >= classes:
        raise LabelError(f"{name}: labels must lie in [0, {classes}), got values from {y.min()} to {y.max()}")
    return y.astype(np.int64)


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)
