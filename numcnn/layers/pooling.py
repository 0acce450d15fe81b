"""``MaxPooling2D``: the largest value of each window, per channel.

Source document, section 3.2: ``y_i = max(x_{2i-1}, x_{2i})`` (1-D, size 2). Exactly, in 2-D::

    y[n, r, c, k] = max_{p<PH, q<PW} x_pad[n, r*sh + p, c*sw + q, k]      ('same' pads with -inf)

Backward: each output's gradient goes to **one** input, the window's first maximum in row-major order
(TF's tie rule); windows that overlap (strides < pool_size) **add** their gradients::

    dx[n, winner(r, c, k), k] += dy[n, r, c, k]

Shapes: x (N, H, W, C) -> y (N, OH, OW, C); ``strides=None`` means ``strides = pool_size``.
"""

from __future__ import annotations

from .. import kernels
from ..kernels.geometry import PADDINGS, as_pair, output_size_and_padding
from .base import Layer


class MaxPooling2D(Layer):
    def __init__(self, pool_size=2, strides=None, padding: str = "valid", name: str | None = None,
                 input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        if padding not in PADDINGS:
            raise ValueError(f"MaxPooling2D padding must be 'valid' or 'same', got {padding!r}")
        self.pool_size = as_pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else as_pair(strides, "strides")
        self.padding = padding

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"MaxPooling2D {self.name!r} expects inputs (H, W, C), got shape {input_shape}")
        height, width, channels = input_shape
        out_h = output_size_and_padding(height, self.pool_size[0], self.strides[0], self.padding)[0]
        out_w = output_size_and_padding(width, self.pool_size[1], self.strides[1], self.padding)[0]
        return (out_h, out_w, channels)

    def forward(self, x, training=False):
        y, self._cache = kernels.maxpool2d_forward(x, self.pool_size, self.strides, self.padding)
        return y

    def backward(self, dy):
        return kernels.maxpool2d_backward(dy, self._cache)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}
