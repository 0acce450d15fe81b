"""Output sizes and padding, exactly as TensorFlow computes them.

For one spatial axis of length ``size``, a window of length ``kernel`` moved by ``stride``:

* ``"valid"``: no padding, ``out = floor((size - kernel) / stride) + 1``.
* ``"same"``:  ``out = ceil(size / stride)``;
  ``pad_total = max((out - 1) * stride + kernel - size, 0)``;
  ``pad_before = pad_total // 2`` and ``pad_after = pad_total - pad_before``.
  When ``pad_total`` is odd the extra row/column goes to the **bottom/right** (TF's rule;
  PyTorch's symmetric padding differs here, see pytorch#3867).
"""

from __future__ import annotations

PADDINGS = ("valid", "same")


def output_size_and_padding(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
    """Return ``(out, pad_before, pad_after)`` for one spatial axis (see the module docstring)."""
    if padding not in PADDINGS:
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    if kernel < 1 or stride < 1:
        raise ValueError(f"kernel size and stride must be >= 1, got kernel={kernel}, stride={stride}")
    if padding == "valid":
        if size < kernel:
            raise ValueError(f"input size {size} is smaller than the window {kernel} with padding='valid'")
        return (size - kernel) // stride + 1, 0, 0
    out = -(-size // stride)  # ceil(size / stride) in integers
    pad_total = max((out - 1) * stride + kernel - size, 0)
    pad_before = pad_total // 2
    return out, pad_before, pad_total - pad_before


def as_pair(value, name: str) -> tuple[int, int]:
    """Accept ``3`` or ``(3, 3)`` like Keras and return a pair of positive ints."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair of positive ints, got {value!r}")
    return pair
