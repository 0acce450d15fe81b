"""``Conv2D``: 2-D convolution (cross-correlation) over NHWC images.

Source document, section 3.1: ``y_ij = f(sum_k x_ik * w_kj + b_j)``. Exactly (``f`` = activation)::

    y[n, r, c, j] = f( b[j] + sum_{p<KH, q<KW, k<C_in} x_pad[n, r*sh + p, c*sw + q, k] * w[p, q, k, j] )

Backward, with ``dz = dy * f'(z)``::

    dx_pad[n, r*sh+p, c*sw+q, k] += dz[n, r, c, j] * w[p, q, k, j]
    dw[p, q, k, j]               += dz[n, r, c, j] * x_pad[n, r*sh+p, c*sw+q, k]
    db[j]                        += dz[n, r, c, j]

Shapes: x (N, H, W, C_in); kernel (KH, KW, C_in, C_out) as in Keras; bias (C_out,); y (N, OH, OW, C_out)
with ``OH = floor((H - KH) / sh) + 1`` ('valid') or ``ceil(H / sh)`` ('same', TF's asymmetric padding:
the odd extra row/column goes bottom/right). See ``numcnn.kernels.reference`` for the literal loops.
"""

from __future__ import annotations

from .. import kernels
from ..kernels.geometry import PADDINGS, as_pair, output_size_and_padding
from .base import AffineLayer
from .pooling import MaxPooling2D


class Conv2D(AffineLayer):
    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name: str | None = None, input_shape=None):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, name, input_shape)
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"Conv2D filters must be a positive int, got {filters!r}")
        if padding not in PADDINGS:
            raise ValueError(f"Conv2D padding must be 'valid' or 'same', got {padding!r}")
        self.filters = filters
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.strides = as_pair(strides, "strides")
        self.padding = padding

    def kernel_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D {self.name!r} expects inputs (H, W, C), got shape {input_shape}")
        return (*self.kernel_size, input_shape[-1], self.filters)

    def compute_output_shape(self, input_shape):
        height, width, _ = input_shape
        out_h = output_size_and_padding(height, self.kernel_size[0], self.strides[0], self.padding)[0]
        out_w = output_size_and_padding(width, self.kernel_size[1], self.strides[1], self.padding)[0]
        return (out_h, out_w, self.filters)

    def affine_forward(self, x, w, b):
        return kernels.conv2d_forward(x, w, b, self.strides, self.padding)

    def affine_backward(self, dz, cache, need_dx=True):
        return kernels.conv2d_backward(dz, cache, need_dx)

    # --- the fused fast path: this layer and a MaxPooling2D after it as one kernel -----------------
    def fuses_with(self, next_layer) -> bool:
        """Whether ``Sequential`` may run this layer and ``next_layer`` as one fused kernel
        (``kernels.conv_pool_forward``: same math, the full-size activation is never stored)."""
        return isinstance(next_layer, MaxPooling2D) and self.activation in ("relu", "linear")

    def forward_pooled(self, x, pool: MaxPooling2D, training=False):
        """``pool.forward(self.forward(x))`` in one kernel; the layers' own caches are left untouched."""
        self.check_input(x)
        y, self._pooled_cache = kernels.conv_pool_forward(
            x, self.params["kernel"], self._bias(), self.strides, self.padding,
            pool.pool_size, pool.strides, pool.padding, relu=self.activation == "relu")
        return y

    def backward_pooled(self, dy, need_input_gradient=True):
        """Backward of ``forward_pooled``: fills ``self.grads``, returns ``dL/dx`` (None if not needed)."""
        dx, dw, db = kernels.conv_pool_backward(dy, self._pooled_cache, need_input_gradient)
        self.set_gradients(dw, db)
        return dx

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
        }
