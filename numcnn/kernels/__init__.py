"""The math of every op, as plain functions on arrays (no classes, no state, nothing else of numcnn).

``reference`` holds the formula-literal loops (the spec, slow); the modules ``conv``, ``pool``, ``dense``
and ``activations`` hold fast Numba/BLAS kernels with the **same signatures and results**:

    y, cache = conv2d_forward(x, w, b, strides=(1, 1), padding="valid")
    dx, dw, db = conv2d_backward(dy, cache)
    y, cache = maxpool2d_forward(x, pool_size=(2, 2), strides=None, padding="valid")
    dx = maxpool2d_backward(dy, cache)
    y, cache = conv_pool_forward(x, w, b, conv_strides, conv_padding, pool_size, pool_strides,
                                 pool_padding, relu)            # Conv2D -> ReLU -> MaxPooling2D in one
    dx, dw, db = conv_pool_backward(dy, cache, need_dx=True)
    y, cache = dense_forward(x, w, b)
    dx, dw, db = dense_backward(dy, cache)
    y, cache = relu_forward(x);     dx = relu_backward(dy, cache)
    p, cache = softmax_forward(z);  dz = softmax_backward(dy, cache)

Layout NHWC, conv kernels HWIO (kh, kw, c_in, c_out), dense kernels (in, out). float32 and float64 both
work; the output dtype is the input's. Caches are private to each implementation: pass a cache only to
the backward of the same module.
"""

from . import reference
from .activations import relu_backward, relu_forward, softmax_backward, softmax_forward
from .conv import conv2d_backward, conv2d_forward
from .dense import dense_backward, dense_forward
from .fused import conv_pool_backward, conv_pool_forward
from .geometry import as_pair, output_size_and_padding
from .pool import maxpool2d_backward, maxpool2d_forward

__all__ = [
    "reference",
    "conv2d_forward", "conv2d_backward",
    "maxpool2d_forward", "maxpool2d_backward",
    "conv_pool_forward", "conv_pool_backward",
    "dense_forward", "dense_backward",
    "relu_forward", "relu_backward",
    "softmax_forward", "softmax_backward",
    "output_size_and_padding", "as_pair",
]
