"""The math of every op, as plain functions on arrays (no classes, no state, nothing else of numcnn).

``reference`` holds the formula-literal loops (the spec, slow); the modules ``conv``, ``pool``, ``dense``,
``resample`` and ``activations`` hold fast Numba/BLAS kernels with the **same signatures and results**:

    y, cache = conv2d_forward(x, w, b, strides=(1, 1), padding="valid", epilogue=None, winograd_rule=True)
    dx, dw, db = conv2d_backward(dy, cache)
    y, cache = maxpool2d_forward(x, pool_size=(2, 2), strides=None, padding="valid")
    dx = maxpool2d_backward(dy, cache)
    y, cache, pool_chunk = maxpool2d_by_chunks(x_shape, dtype, ...)   # the same, filled chunk by chunk
    y, cache = avgpool2d_forward(x, pool_size=(2, 2), strides=None, padding="valid")   # 'same': padding
    dx = avgpool2d_backward(dy, cache)                                                 # not averaged
    y, cache = global_avgpool2d_forward(x);  dx = global_avgpool2d_backward(dy, cache)   # (N,H,W,C)->(N,C)
    y, cache = global_maxpool2d_forward(x);  dx = global_maxpool2d_backward(dy, cache)
    y, cache = upsampling2d_forward(x, size=(2, 2), interpolation="nearest")   # or "bilinear" (TF's)
    dx = upsampling2d_backward(dy, cache)
    y, cache = zero_padding2d_forward(x, padding=((1, 1), (1, 1)));  dx = zero_padding2d_backward(dy, cache)
    y, cache = conv_pool_forward(x, w, b, conv_strides, conv_padding, pool_size, pool_strides,
                                 pool_padding, relu)            # Conv2D -> ReLU -> MaxPooling2D in one
    dx, dw, db = conv_pool_backward(dy, cache, need_dx=True)
    y, cache = dense_forward(x, w, b)
    dx, dw, db = dense_backward(dy, cache)
    y, cache = relu_forward(x);     dx = relu_backward(dy, cache)
    p, cache = softmax_forward(z);  dz = softmax_backward(dy, cache)
    y, cache = sigmoid_forward(x);  dx = sigmoid_backward(dy, cache)   # also tanh, elu, gelu,
    y, cache = elu_forward(x, alpha=1.0)                              # leaky_relu (module activations)
    ACTIVATIONS[name] -> (forward, backward);  activation_name(name)  # the activation registry
    y, cache = conv2d_transpose_forward(x, w, b, strides, padding)    # w (kh, kw, filters, c_in)
    dx, dw, db = conv2d_transpose_backward(dy, cache, need_dx=True)
    mean, var = batchnorm_moments(x)                      # per channel (last axis), biased variance
    y, cache = batchnorm_forward(x, gamma, beta, mean, var, epsilon, batch_statistics, relu=False)
    dx, dgamma, dbeta = batchnorm_backward(dy, cache)    # through mean/var if batch_statistics
    terms = batchnorm_terms(dtype, gamma, beta, mean, var, epsilon)   # for the chunk epilogues below:
    normalize_rows(x_rows, terms, y_rows, relu);  relu_into(x, y)    # serial, nogil (conv2d_forward's epilogue)
    y, cache = dropout_forward(x, keep, rate);  dx = dropout_backward(dy, cache)   # module normalization

Layout NHWC, conv kernels HWIO (kh, kw, c_in, c_out), dense kernels (in, out). float32 and float64 both
work; the output dtype is the input's. Caches are private to each implementation: pass a cache only to
the backward of the same module.
"""

import hashlib
import os
import warnings


def _key_numba_cache_on_kernel_sources() -> None:
    """Make an edit to any kernel module recompile every cached kernel that may depend on it.

    Numba's ``cache=True`` stamps a compiled function with its *own* source file only. A kernel that calls a
    function of another module (``fused`` calls ``pool.pool_window_row``: Numba compiles the callee into the
    caller) would keep running the old callee after that module is edited, silently. So, ahead of Numba's own
    cache locators, numcnn registers locators for the functions of the numcnn package whose stamp also holds
    a SHA-256 of every ``numcnn/kernels/*.py``: an edit to any of them makes those caches stale and Numba
    recompiles. The cache files stay where Numba puts them (``__pycache__`` or ``$NUMBA_CACHE_DIR``). This
    must run before the kernel modules are imported: Numba picks a function's locator when decorating it.
    """
    from numba.core import caching

    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)
    mixin = getattr(caching, "_SourceFileBackedLocatorMixin", None)
    if impl is None or mixin is None or not isinstance(getattr(impl, "_locator_classes", None), list):
        warnings.warn("numcnn: this Numba version's cache cannot be keyed on the kernel sources; after editing "
                      "numcnn/kernels, set NUMBA_CACHE_DIR to a fresh directory", stacklevel=2)
        return
    kernels_dir = os.path.dirname(os.path.abspath(__file__))
    package_dir = os.path.dirname(kernels_dir)
    digest = hashlib.sha256()
    for name in sorted(os.listdir(kernels_dir)):
        if name.endswith(".py"):
            with open(os.path.join(kernels_dir, name), "rb") as source:
                digest.update(name.encode() + b"\0" + source.read() + b"\0")
    kernels_stamp = digest.hexdigest()

    def keyed(base):
        class KernelSourcesLocator(base):
            numcnn_kernels_stamp = kernels_stamp

            def get_source_stamp(self):
                return ("numcnn kernels", kernels_stamp, super().get_source_stamp())

            @classmethod
            def from_function(cls, py_func, py_file):
                if not os.path.abspath(py_file).startswith(package_dir + os.sep):
                    return None  # not numcnn's: Numba's own locators handle it
                return super().from_function(py_func, py_file)

        return KernelSourcesLocator

    locators = [c for c in impl._locator_classes if not hasattr(c, "numcnn_kernels_stamp")]  # (re-import)
    impl._locator_classes[:] = [keyed(c) for c in locators if issubclass(c, mixin)] + locators


_key_numba_cache_on_kernel_sources()

from . import reference  # noqa: E402  (every kernel import comes after the cache keying above)
from .activations import (ACTIVATIONS, activation_name, elu_backward, elu_forward, gelu_backward, gelu_forward,
                          leaky_relu_backward, leaky_relu_forward, relu_backward, relu_forward, relu_into,
                          sigmoid_backward, sigmoid_forward, softmax_backward, softmax_forward,
                          tanh_backward, tanh_forward)
from .conv import conv2d_backward, conv2d_forward
from .conv_transpose import conv2d_transpose_backward, conv2d_transpose_forward
from .dense import dense_backward, dense_forward
from .fused import conv_pool_backward, conv_pool_forward
from .geometry import as_pair, output_size_and_padding
from .normalization import (batchnorm_backward, batchnorm_cache, batchnorm_forward, batchnorm_moments,
                            batchnorm_terms, dropout_backward, dropout_forward, normalize_rows)
from .pool import (avgpool2d_backward, avgpool2d_forward, global_avgpool2d_backward, global_avgpool2d_forward,
                   global_maxpool2d_backward, global_maxpool2d_forward, maxpool2d_backward, maxpool2d_by_chunks,
                   maxpool2d_forward)
from .resample import upsampling2d_backward, upsampling2d_forward, zero_padding2d_backward, zero_padding2d_forward

__all__ = [
    "reference",
    "conv2d_forward", "conv2d_backward",
    "maxpool2d_forward", "maxpool2d_backward", "maxpool2d_by_chunks",
    "avgpool2d_forward", "avgpool2d_backward",
    "global_avgpool2d_forward", "global_avgpool2d_backward",
    "global_maxpool2d_forward", "global_maxpool2d_backward",
    "upsampling2d_forward", "upsampling2d_backward",
    "zero_padding2d_forward", "zero_padding2d_backward",
    "conv_pool_forward", "conv_pool_backward",
    "dense_forward", "dense_backward",
    "relu_forward", "relu_backward",
    "softmax_forward", "softmax_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "elu_forward", "elu_backward", "gelu_forward", "gelu_backward",
    "leaky_relu_forward", "leaky_relu_backward", "ACTIVATIONS", "activation_name",
    "conv2d_transpose_forward", "conv2d_transpose_backward",
    "batchnorm_moments", "batchnorm_forward", "batchnorm_backward", "batchnorm_terms", "batchnorm_cache",
    "normalize_rows", "relu_into",
    "dropout_forward", "dropout_backward",
    "output_size_and_padding", "as_pair",
]
