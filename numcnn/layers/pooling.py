"""Pooling layers: ``MaxPooling2D``, ``AveragePooling2D``, ``GlobalMaxPooling2D``, ``GlobalAveragePooling2D``.

Source document, section 3.2: ``y_i = max(x_{2i-1}, x_{2i})`` (1-D, size 2). Exactly, in 2-D, for the window
of output ``(r, c)`` (``x_pad`` = the input with TF's asymmetric 'same' padding, none for 'valid')::

    max:      y[n, r, c, k] = max_{p<PH, q<PW} x_pad[n, r*sh + p, c*sw + q, k]        (padding is -inf)
    average:  y[n, r, c, k] = (1 / |W_rc|) sum_{(i, j) in W_rc} x[n, i, j, k]        (W_rc: the window's
              cells inside the image; padding is not averaged, as TF: |W_rc| = PH*PW for 'valid')

Global pooling is one window covering the whole image: ``y[n, k] = max or mean over (i, j) of x[n, i, j, k]``.
Max pooling's gradient on ties follows TF: to the first maximum for MaxPooling2D, split evenly among the tied
maxima for GlobalMaxPooling2D (see the classes).

Shapes: x (N, H, W, C) -> y (N, OH, OW, C) with ``OH = floor((H - PH) / sh) + 1`` ('valid') or
``ceil(H / sh)`` ('same'); ``strides=None`` means ``strides = pool_size``. Global: (N, C), or (N, 1, 1, C)
with ``keepdims=True``. The literal loops are in ``numcnn.kernels.reference``.
"""

from __future__ import annotations

from .. import kernels
from ..errors import ShapeError
from ..kernels.geometry import PADDINGS, as_pair, output_size_and_padding
from .base import Layer


def check_images(layer: Layer, x) -> None:
    """Image layers take a batch of NHWC images: (N, H, W, C)."""
    if x.ndim != 4:
        raise ShapeError(f"layer {layer.name!r} ({type(layer).__name__}) expects images (N, H, W, C), "
                         f"got an array of shape {x.shape}")


def check_image_shape(layer: Layer, input_shape) -> None:
    if len(input_shape) != 3:
        raise ValueError(f"{type(layer).__name__} {layer.name!r} expects inputs (H, W, C), got shape {input_shape}")


class _Pooling2D(Layer):
    """What max and average pooling share: the window, its strides, the padding and the output shape."""

    def __init__(self, pool_size=2, strides=None, padding: str = "valid", name: str | None = None,
                 input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        if padding not in PADDINGS:
            raise ValueError(f"{type(self).__name__} padding must be 'valid' or 'same', got {padding!r}")
        self.pool_size = as_pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else as_pair(strides, "strides")
        self.padding = padding

    def compute_output_shape(self, input_shape):
        check_image_shape(self, input_shape)
        height, width, channels = input_shape
        out_h = output_size_and_padding(height, self.pool_size[0], self.strides[0], self.padding)[0]
        out_w = output_size_and_padding(width, self.pool_size[1], self.strides[1], self.padding)[0]
        return (out_h, out_w, channels)

    def get_config(self):
        return {**super().get_config(), "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding}


class MaxPooling2D(_Pooling2D):
    """The largest value of each window, per channel.

    Forward: ``y[n, r, c, k] = max_{p<PH, q<PW} x_pad[n, r*sh + p, c*sw + q, k]`` ('same' pads with -inf).

    Backward: each output's gradient goes to **one** input, the window's first maximum in row-major order
    (TF's tie rule); windows that overlap (strides < pool_size) **add** their gradients::

        dx[n, winner(r, c, k), k] += dy[n, r, c, k]

    Shapes: x (N, H, W, C) -> y (N, OH, OW, C).
    """

    def forward(self, x, training=False):
        check_images(self, x)
        y, self._cache = kernels.maxpool2d_forward(x, self.pool_size, self.strides, self.padding)
        return y

    def forward_by_chunks(self, x_shape, dtype):
        """``(y, pool_chunk)``: ``forward``'s output for an input of ``x_shape``, which the layer before fills
        by calling ``pool_chunk(start, stop, x_chunk)`` on each chunk of images it makes
        (``kernels.maxpool2d_by_chunks``); the layer keeps the cache ``forward`` keeps."""
        y, self._cache, pool_chunk = kernels.maxpool2d_by_chunks(x_shape, dtype, self.pool_size, self.strides,
                                                                  self.padding)
        return y, pool_chunk

    def backward(self, dy):
        return kernels.maxpool2d_backward(dy, self._cache)


class AveragePooling2D(_Pooling2D):
    """The mean of each window, per channel, over the window's cells that lie inside the image.

    Forward: ``y[n, r, c, k] = (1 / |W_rc|) sum_{(i, j) in W_rc} x[n, i, j, k]``, where ``W_rc`` is window
    ``(r, c)`` without its 'same' padding. TF does not count padded cells (a 3x3 map of ones pooled 2x2,
    stride 2, 'same' stays all ones: its edge windows divide by 2 and 1, not 4); 'valid' divides by PH*PW.

    Backward: ``y[n, r, c, k]`` is a sum of ``x / |W_rc|``, so every cell of the window receives the output's
    gradient divided by the window's count; overlapping windows (strides < pool_size) **add up**::

        dx[n, i, j, k] += dy[n, r, c, k] / |W_rc|      for every (i, j) in W_rc

    Shapes: x (N, H, W, C) -> y (N, OH, OW, C).
    """

    def forward(self, x, training=False):
        check_images(self, x)
        y, self._cache = kernels.avgpool2d_forward(x, self.pool_size, self.strides, self.padding)
        return y

    def backward(self, dy):
        return kernels.avgpool2d_backward(dy, self._cache)


class _GlobalPooling2D(Layer):
    """Pooling over all of H and W: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with ``keepdims=True``."""

    _forward_kernel = _backward_kernel = None  # set by each subclass (staticmethods)

    def __init__(self, keepdims: bool = False, name: str | None = None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        if not isinstance(keepdims, bool):
            raise ValueError(f"{type(self).__name__} keepdims must be True or False, got {keepdims!r}")
        self.keepdims = keepdims

    def compute_output_shape(self, input_shape):
        check_image_shape(self, input_shape)
        channels = input_shape[-1]
        return (1, 1, channels) if self.keepdims else (channels,)

    def forward(self, x, training=False):
        check_images(self, x)
        y, self._cache = self._forward_kernel(x)  # (N, C)
        return y.reshape(y.shape[0], 1, 1, y.shape[1]) if self.keepdims else y

    def backward(self, dy):
        return self._backward_kernel(dy.reshape(dy.shape[0], dy.shape[-1]), self._cache)

    def get_config(self):
        return {**super().get_config(), "keepdims": self.keepdims}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """The mean of each channel over the whole image.

    Forward: ``y[n, k] = (1 / (H W)) sum_{i<H, j<W} x[n, i, j, k]``.
    Backward: every pixel has weight ``1 / (H W)`` in the mean: ``dx[n, i, j, k] = dy[n, k] / (H W)``.
    Shapes: x (N, H, W, C) -> y (N, C); (N, 1, 1, C) with ``keepdims=True`` (Keras's default is False).
    """

    _forward_kernel = staticmethod(kernels.global_avgpool2d_forward)
    _backward_kernel = staticmethod(kernels.global_avgpool2d_backward)


class GlobalMaxPooling2D(_GlobalPooling2D):
    """The largest value of each channel over the whole image.

    Forward: ``y[n, k] = max_{i<H, j<W} x[n, i, j, k]``.
    Backward: the gradient goes to the maximum; where ``T`` positions tie for it, each gets ``dy / T``::

        dx[n, i, j, k] = dy[n, k] / T[n, k]  where x[n, i, j, k] == y[n, k], else 0

    That is TF's rule for this layer (Keras computes it with ``reduce_max``, whose gradient splits ties;
    measured in tests/test_layers_pooling_shape.py: three tied maxima get 1/3 each). It differs from
    ``MaxPooling2D``, whose TF kernel sends a tie's whole gradient to the first maximum in row-major order.
    Shapes: x (N, H, W, C) -> y (N, C); (N, 1, 1, C) with ``keepdims=True`` (Keras's default is False).
    """

    _forward_kernel = staticmethod(kernels.global_maxpool2d_forward)
    _backward_kernel = staticmethod(kernels.global_maxpool2d_backward)
