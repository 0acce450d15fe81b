"""``Input`` (declares the input shape) and ``Flatten`` (NHWC -> (N, H*W*C) in C order, as Keras)."""

from __future__ import annotations

import numpy as np

from .base import Layer


class Input(Layer):
    """Declares the shape of one input example, batch axis excluded, e.g. ``Input((28, 28, 1))``."""

    def __init__(self, shape, name: str | None = None):
        shape = tuple(shape)
        if not shape or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in shape):
            raise ValueError(f"Input shape must be a tuple of positive ints, got {shape!r}")
        super().__init__(name=name, input_shape=shape)
        self.shape = tuple(int(d) for d in shape)

    def forward(self, x, training=False):
        return x

    def backward(self, dy):
        return dy

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape)}


class Flatten(Layer):
    """``y[n, (r*W + c)*C + k] = x[n, r, c, k]``: Keras's element order for channels_last, no transposes."""

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def forward(self, x, training=False):
        self._cache = x.shape
        return x.reshape(x.shape[0], int(np.prod(x.shape[1:])))

    def backward(self, dy):
        return dy.reshape(self._cache)
