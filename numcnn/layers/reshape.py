"""Shape layers: ``Input`` (declares the input shape), ``Flatten``, ``Reshape``, ``UpSampling2D`` and
``ZeroPadding2D``. Except bilinear upsampling, none of them does arithmetic in its forward pass: each output
is a copy of one input entry (or a padding zero), and each backward sends every gradient back to the entry
it was copied from (Flatten, Reshape: ``dx = dy`` reshaped; nearest UpSampling2D: the sum over the copies;
ZeroPadding2D: a crop, the zeros being constants). Bilinear upsampling's backward is the transpose of its
weighted blend.
"""

from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..errors import ShapeError
from ..kernels.geometry import as_pair
from .base import Layer
from .pooling import check_image_shape, check_images


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


class Reshape(Layer):
    """``Reshape(target_shape)``: the same numbers in C order, per example, in another shape (Keras's rule:
    the batch axis is left alone, one entry of ``target_shape`` may be -1 and is then inferred).

    Forward: ``y[n].flat[i] = x[n].flat[i]`` (no copy: a view). Backward: ``dx = dy`` reshaped back.
    Shapes: x (N, *input_shape) -> y (N, *target_shape), ``prod(target_shape) == prod(input_shape)``.
    """

    def __init__(self, target_shape, name: str | None = None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        target_shape = tuple(target_shape) if isinstance(target_shape, (tuple, list)) else None

        def is_dimension(d):
            return isinstance(d, (int, np.integer)) and not isinstance(d, bool) and (d >= 1 or d == -1)

        if not target_shape or not all(map(is_dimension, target_shape)):
            raise ValueError(f"Reshape target_shape must be a tuple of positive ints (one may be -1), "
                             f"got {target_shape!r}")
        if target_shape.count(-1) > 1:
            raise ValueError(f"Reshape target_shape may contain -1 at most once, got {target_shape}")
        self.target_shape = tuple(int(d) for d in target_shape)

    def compute_output_shape(self, input_shape):
        size = math.prod(input_shape)
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if size % known != 0:
                raise ShapeError(f"Reshape {self.name!r} cannot reshape {tuple(input_shape)} ({size} values per "
                                 f"example) to {self.target_shape}: {size} is not a multiple of {known}")
            return tuple(size // known if d == -1 else d for d in self.target_shape)
        if size != known:
            raise ShapeError(f"Reshape {self.name!r} cannot reshape {tuple(input_shape)} ({size} values per "
                             f"example) to {self.target_shape} ({known} values)")
        return self.target_shape

    def forward(self, x, training=False):
        self._cache = x.shape
        return x.reshape(x.shape[0], *self.compute_output_shape(x.shape[1:]))

    def backward(self, dy):
        return dy.reshape(self._cache)

    def get_config(self):
        return {**super().get_config(), "target_shape": list(self.target_shape)}  # as given (-1 unresolved)


class UpSampling2D(Layer):
    """``UpSampling2D(size=2, interpolation="nearest")``: enlarge each image ``sh`` times down, ``sw`` across.

    ``"nearest"`` (Keras's default) repeats each pixel:

        forward   y[n, r, c, k] = x[n, r // sh, c // sw, k]
        backward  dx[n, i, j, k] = sum_{a < sh, b < sw} dy[n, i*sh + a, j*sw + b, k]   (the block's sum)

    ``"bilinear"`` is TF's ResizeBilinear with half-pixel centres (what Keras calls): output ``(r, c)`` blends
    the 2x2 pixels ``(a or b, c0 or c1)`` around its source position
    ``((r + 1/2) / sh - 1/2, (c + 1/2) / sw - 1/2)`` (clamped to the image) with weights ``ly``, ``lx``
    (``numcnn.kernels.reference.bilinear_taps``)::

        forward   y = (1-ly)(1-lx) x[a, c0] + (1-ly) lx x[a, c1] + ly (1-lx) x[b, c0] + ly lx x[b, c1]
        backward  each of the four pixels gets dy times its weight (+=: neighbouring outputs share pixels)

    TF computes the positions and weights in float32 for every dtype; so does numcnn. (TF's whole bilinear
    resize is float32 arithmetic, so in float64 the two agree to ~1e-7 relative, not to float64 precision.)
    Shapes: x (N, H, W, C) -> y (N, H*sh, W*sw, C).
    """

    INTERPOLATIONS = ("nearest", "bilinear")

    def __init__(self, size=2, interpolation: str = "nearest", name: str | None = None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.size = as_pair(size, "size")
        name_lower = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if name_lower not in self.INTERPOLATIONS:
            raise ValueError(f"UpSampling2D interpolation {interpolation!r} is not implemented in numcnn; choose "
                             f"one of {list(self.INTERPOLATIONS)}")
        self.interpolation = name_lower

    def compute_output_shape(self, input_shape):
        check_image_shape(self, input_shape)
        height, width, channels = input_shape
        return (height * self.size[0], width * self.size[1], channels)

    def forward(self, x, training=False):
        check_images(self, x)
        y, self._cache = kernels.upsampling2d_forward(x, self.size, self.interpolation)
        return y

    def backward(self, dy):
        return kernels.upsampling2d_backward(dy, self._cache)

    def get_config(self):
        return {**super().get_config(), "size": list(self.size), "interpolation": self.interpolation}


def padding_pairs(padding) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras's three forms of ZeroPadding2D's ``padding`` -> ``((top, bottom), (left, right))``:
    ``p`` (all four sides), ``(ph, pw)`` (symmetric per axis), ``((top, bottom), (left, right))``."""
    def is_count(value):
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 0

    problem = (f"ZeroPadding2D padding must be an int, a pair of ints (symmetric_height, symmetric_width) or "
               f"a pair of pairs ((top, bottom), (left, right)), all >= 0; got {padding!r}")
    if is_count(padding):
        return ((int(padding),) * 2,) * 2
    if not isinstance(padding, (tuple, list)) or len(padding) != 2:
        raise ValueError(problem)
    pairs = []
    for axis in padding:
        if is_count(axis):
            pairs.append((int(axis), int(axis)))
        elif isinstance(axis, (tuple, list)) and len(axis) == 2 and all(map(is_count, axis)):
            pairs.append((int(axis[0]), int(axis[1])))
        else:
            raise ValueError(problem)
    return tuple(pairs)


class ZeroPadding2D(Layer):
    """``ZeroPadding2D(padding=1)``: add rows and columns of zeros around each image.

    Forward: ``y[n, top + i, left + j, k] = x[n, i, j, k]``, zeros in the padding.
    Backward: the zeros are constants, so ``dx[n, i, j, k] = dy[n, top + i, left + j, k]`` (a crop).
    Shapes: x (N, H, W, C) -> y (N, top + H + bottom, left + W + right, C). ``padding`` takes Keras's forms
    (see ``padding_pairs``); the config stores ``[[top, bottom], [left, right]]``, as Keras does.
    """

    def __init__(self, padding=1, name: str | None = None, input_shape=None):
        super().__init__(name=name, input_shape=input_shape)
        self.padding = padding_pairs(padding)

    def compute_output_shape(self, input_shape):
        check_image_shape(self, input_shape)
        height, width, channels = input_shape
        (top, bottom), (left, right) = self.padding
        return (top + height + bottom, left + width + right, channels)

    def forward(self, x, training=False):
        check_images(self, x)
        y, self._cache = kernels.zero_padding2d_forward(x, self.padding)
        return y

    def backward(self, dy):
        return kernels.zero_padding2d_backward(dy, self._cache)

    def get_config(self):
        return {**super().get_config(), "padding": [list(pair) for pair in self.padding]}
