"""``Conv2D``: 2-D convolution (cross-correlation) over NHWC images, and its transpose ``Conv2DTranspose``.

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

import numpy as np

from .. import kernels
from ..errors import ShapeError
from ..kernels.geometry import PADDINGS, as_pair, output_size_and_padding
from ..kernels.reference import conv2d_transpose_output_size
from .base import AffineLayer
from .pooling import MaxPooling2D


class _Convolution2D(AffineLayer):
    """What Conv2D and Conv2DTranspose share: filters, kernel size, strides and padding, checked alike."""

    def __init__(self, filters, kernel_size, strides, padding, activation, use_bias, kernel_initializer,
                 bias_initializer, name, input_shape):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, name, input_shape)
        kind = type(self).__name__
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(f"{kind} filters must be a positive int, got {filters!r}")
        if padding not in PADDINGS:
            raise ValueError(f"{kind} padding must be 'valid' or 'same', got {padding!r}")
        self.filters = filters
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.strides = as_pair(strides, "strides")
        self.padding = padding

    def require_image_shape(self, input_shape) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} {self.name!r} expects inputs (H, W, C), got shape {input_shape}")

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
        }


class Conv2D(_Convolution2D):
    cache_attributes = (*_Convolution2D.cache_attributes, "_pooled_cache")  # (forward_pooled's)

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", activation=None,
                 use_bias: bool = True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name: str | None = None, input_shape=None):
        super().__init__(filters, kernel_size, strides, padding, activation, use_bias, kernel_initializer,
                         bias_initializer, name, input_shape)

    def kernel_shape(self, input_shape):
        self.require_image_shape(input_shape)
        return (*self.kernel_size, input_shape[-1], self.filters)

    def compute_output_shape(self, input_shape):
        height, width, _ = input_shape
        out_h = output_size_and_padding(height, self.kernel_size[0], self.strides[0], self.padding)[0]
        out_w = output_size_and_padding(width, self.kernel_size[1], self.strides[1], self.padding)[0]
        return (out_h, out_w, self.filters)

    def affine_forward(self, x, w, b, epilogue=None):
        return kernels.conv2d_forward(x, w, b, self.strides, self.padding, epilogue=epilogue)

    def affine_backward(self, dz, cache, need_dx=True):
        return kernels.conv2d_backward(dz, cache, need_dx)

    def forward(self, x, training=False):
        """As every affine layer's forward; a ReLU activation is applied to each chunk of the convolution's
        output while it is still in cache (``kernels.conv2d_forward``'s ``epilogue``): the same operations
        as ``relu_forward`` after it, one pass over memory fewer."""
        if self.activation != "relu":
            return super().forward(x, training)
        self.check_input(x)
        z, y = self._convolve_then(x, relu=True)
        self.pre_activation = self._activation_cache = z  # (ReLU's cache is its input, as relu_forward's)
        return y

    # --- inference: this layer, a BatchNormalization and a ReLU after it, chunk by chunk ------------
    def fuses_normalization(self, following) -> bool:
        """Whether ``Sequential`` may run this layer and ``following`` (a BatchNormalization) as one step at
        inference (``forward_normalized``): a linear activation, as the Conv2D -> BN -> ReLU block has."""
        from .normalization import BatchNormalization

        return isinstance(following, BatchNormalization) and self.activation == "linear"

    def forward_normalized(self, x, norm, relu=None, pool=None):
        """Inference-mode ``pool(relu(norm(self(x))))`` (without ``relu`` or ``pool`` where they are None),
        with the batch normalization, the ReLU and the max pooling applied to each chunk of the convolution's
        output while it is still in cache: the same operations as the layers' own forwards (so the same
        bits), fewer passes over memory. Each layer keeps what its own ``backward`` needs, as if it had run
        alone — except that the ReLU keeps its output instead of its input: its derivative ``[input > 0]``
        is ``[output > 0]`` (NaN included: ReLU maps it to 0), and the normalized map is then never stored
        whole."""
        self.check_input(x)
        terms = norm.inference_terms(x.dtype)
        shape = (len(x), *self.compute_output_shape(x.shape[1:]))
        pooled, pool_chunk = pool.forward_by_chunks(shape, x.dtype) if pool is not None else (None, None)
        z, y = self._convolve_then(x, terms, relu=relu is not None, then=pool_chunk)
        self.pre_activation = z
        _, self._activation_cache = self._activation_forward(z)
        norm.keep_inference_input(z, terms)
        if relu is not None:
            relu.keep_input(y)
        return y if pool is None else pooled

    def _convolve_then(self, x, norm_terms=None, relu=False, then=None):
        """``(z, y)``: ``z = conv(x) + b``; per chunk of images, while it is in cache, ``n`` = the batch
        normalization of ``z`` with ``norm_terms`` (``n = z`` without them), ``y = relu(n)`` (``y = n``
        without ``relu``; both in one pass where both are asked) and ``then(start, stop, y_chunk)`` if given
        (a MaxPooling2D's ``pool_chunk``). The layer's convolution cache is set."""
        shape = (len(x), *self.compute_output_shape(x.shape[1:]))
        y = np.empty(shape, dtype=x.dtype) if relu or norm_terms is not None else None

        def epilogue(start, stop, rows):
            y_rows = y[start:stop].reshape(rows.shape)
            if norm_terms is not None:
                kernels.normalize_rows(rows, norm_terms, y_rows, relu)
            elif relu:
                kernels.relu_into(rows.reshape(-1), y_rows.reshape(-1))
            if then is not None:
                then(start, stop, y[start:stop])

        z, self._cache = self.affine_forward(x, self.params["kernel"], self._bias(), epilogue=epilogue)
        return z, z if y is None else y

    # --- the fused fast path: this layer and a MaxPooling2D after it as one kernel -----------------
    def fuses_with(self, next_layer) -> bool:
        """Whether ``Sequential`` may run this layer and ``next_layer`` as one fused kernel
        (``kernels.conv_pool_forward``: same math, the full-size activation is never stored)."""
        return isinstance(next_layer, MaxPooling2D) and self.activation in ("relu", "linear")

    def forward_pooled(self, x, pool: MaxPooling2D, training=False):
        """``pool.forward(self.forward(x))`` in one kernel; the layers' own caches are left untouched. At
        inference the convolution may run Winograd (``kernels.conv_pool_forward`` says why not in training)."""
        self.check_input(x)
        y, self._pooled_cache = kernels.conv_pool_forward(
            x, self.params["kernel"], self._bias(), self.strides, self.padding,
            pool.pool_size, pool.strides, pool.padding, relu=self.activation == "relu", winograd_rule=not training)
        return y

    def backward_pooled(self, dy, need_input_gradient=True):
        """Backward of ``forward_pooled``: fills ``self.grads``, returns ``dL/dx`` (None if not needed)."""
        dx, dw, db = kernels.conv_pool_backward(dy, self._pooled_cache, need_input_gradient)
        self.set_gradients(dw, db)
        return dx


class Conv2DTranspose(_Convolution2D):
    """``Conv2DTranspose``: the transposed convolution ("deconvolution"), which upsamples by its strides.

    Every input pixel adds a copy of the kernel, scaled by its values, to the output, ``strides`` apart;
    overlapping copies add up, then 'same' crops (``f`` = activation)::

        z_full[n, r*sh + p, c*sw + q, j] += x[n, r, c, k] * w[p, q, j, k]
        y[n, i, l, j] = f( b[j] + z_full[n, top + i, left + l, j] )

    **Its forward is a Conv2D's input gradient**: ``z - b`` is exactly the ``dx`` that
    ``kernels.conv2d_backward`` returns for a Conv2D with kernel ``w`` (read as HWIO: I = filters,
    O = C_in) on an image of the output's size, given ``dy = x``. So its backward is a Conv2D forward, with
    ``dz = dy * f'(z)`` and ``dz_full`` = ``dz`` padded back with zeros where 'same' cropped::

        dx[n, r, c, k] = sum_{p, q, j} dz_full[n, r*sh + p, c*sw + q, j] * w[p, q, j, k]    (Conv2D of dz)
        dw[p, q, j, k] = sum_{n, r, c} dz_full[n, r*sh + p, c*sw + q, j] * x[n, r, c, k]
        db[j]          = sum_{n, i, l} dz[n, i, l, j]

    Shapes: x (N, H, W, C_in); kernel (KH, KW, filters, C_in) — Keras's layout, out before in, the reverse
    of Conv2D's; bias (filters,); y (N, OH, OW, filters) with Keras 3's sizes (``output_padding=None``)::

        'valid':  OH = (H - 1) * sh + max(KH, sh)        'same':  OH = H * sh

    i.e. the size whose Conv2D with the same kernel size, strides and padding has H outputs; 'same' crops
    what that Conv2D pads (TF's rule: the odd extra row/column at the bottom/right). The kernel's
    initializer fans follow from its shape as Keras computes them: ``fan_in = KH*KW*filters``,
    ``fan_out = KH*KW*C_in``. See ``numcnn.kernels.reference.conv2d_transpose_forward`` for the literal loops.
    """

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "valid", output_padding=None,
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", name: str | None = None, input_shape=None):
        super().__init__(filters, kernel_size, strides, padding, activation, use_bias, kernel_initializer,
                         bias_initializer, name, input_shape)
        if output_padding is not None:
            raise ValueError(
                f"Conv2DTranspose supports only output_padding=None (Keras's default: output size "
                f"(H - 1) * stride + max(kernel, stride) for 'valid', H * stride for 'same'), got {output_padding!r}")
        self.output_padding = None

    def kernel_shape(self, input_shape):
        self.require_image_shape(input_shape)
        return (*self.kernel_size, self.filters, input_shape[-1])

    def create_params(self, rng):
        """Kernel (KH, KW, filters, C_in), then the bias (filters,): the *second-last* axis of the kernel."""
        shape = self.kernel_shape(self.input_shape)
        self.params = {"kernel": self._kernel_init(shape, rng, dtype=self.dtype)}
        if self.use_bias:
            self.params["bias"] = self._bias_init((self.filters,), rng, dtype=self.dtype)

    def _bias(self):
        if self.use_bias:
            return self.params["bias"]
        return np.zeros(self.filters, dtype=self.dtype)

    def check_input(self, x) -> None:
        """Images (N, H, W, C_in), with C_in the kernel's *last* axis (any H, W)."""
        c_in = self.params["kernel"].shape[-1]
        if x.ndim != 4 or x.shape[-1] != c_in:
            raise ShapeError(f"layer {self.name!r} (Conv2DTranspose) expects input (N, ?, ?, {c_in}), got {x.shape}")

    def compute_output_shape(self, input_shape):
        self.require_image_shape(input_shape)
        height, width, _ = input_shape
        out_h = conv2d_transpose_output_size(height, self.kernel_size[0], self.strides[0], self.padding)[0]
        out_w = conv2d_transpose_output_size(width, self.kernel_size[1], self.strides[1], self.padding)[0]
        return (out_h, out_w, self.filters)

    def affine_forward(self, x, w, b):
        return kernels.conv2d_transpose_forward(x, w, b, self.strides, self.padding)

    def affine_backward(self, dz, cache, need_dx=True):
        return kernels.conv2d_transpose_backward(dz, cache, need_dx)

    def get_config(self):
        return {**super().get_config(), "output_padding": self.output_padding}
