"""Fast activation kernels and the registry of activation names (``ACTIVATIONS``).

Each activation is a pair ``y, cache = forward(x)`` / ``dx = backward(dy, cache)``, elementwise except
softmax (over the last axis). Same results as the ``reference`` loops; the formulas (``y`` and ``dy/dx``):

* relu:        ``max(x, 0)``;                         ``[x > 0]`` (0 at exactly 0, as TF)
* softmax:     ``exp(z - max z) / sum exp(z - max z)``; ``dz_i = p_i (dy_i - sum_j dy_j p_j)``
* sigmoid:     ``1 / (1 + exp(-x))``;                 ``y (1 - y)``
* tanh:        ``tanh(x)``;                           ``1 - y^2``
* elu(alpha):  ``x`` if ``x > 0`` else ``alpha (exp(x) - 1)``;  ``1`` if ``x > 0`` else ``alpha exp(x)``
* gelu:        ``x Phi(x) = x (1 + erf(x / sqrt 2)) / 2`` (Keras 3's default, the exact erf form);
               ``Phi(x) + x phi(x)``, ``phi(x) = exp(-x^2 / 2) / sqrt(2 pi)``
* leaky_relu(negative_slope): ``x`` if ``x > 0`` else ``negative_slope x``;  ``1`` or ``negative_slope``
* linear:      ``x``;                                 ``1``

The string names use Keras's defaults: ``"elu"`` has alpha 1 and ``"leaky_relu"`` negative_slope 0.2 (the
``LeakyReLU`` *layer*'s default, 0.3, is another one; both are checked against Keras in the tests).

ReLU and leaky ReLU are pure memory traffic, so they are Numba loops that touch each element once (NumPy's
``np.where(x > 0, x, s * x)`` builds two temporaries first: measured on 256 x 14 x 14 x 32 floats, one thread,
6.9 ms of CPU against 0.2). The others are vectorised NumPy: their
transcendental functions dominate, and NumPy's are already vectorised. Every constant is made in the
input's dtype, so float32 stays float32.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from scipy import special

from .parallel import ELEMENTWISE_BLOCK, block_span, run_elementwise


# Each elementwise kernel is a serial loop over a span of elements, and a parallel loop over blocks of
# spans; ``parallel.run_elementwise`` picks one by size (a parallel launch costs more than a small pass).
@njit(nogil=True, cache=True)
def _relu_span(x, y, start, stop):
    zero = x.dtype.type(0)
    x, y = x[start:stop], y[start:stop]  # loops from 0 (``range(start, stop)`` did not vectorise)
    for i in range(x.size):
        y[i] = x[i] if x[i] > 0 else zero


@njit(parallel=True, cache=True)
def _relu_parallel(x, y):
    for block in prange(-(-x.size // ELEMENTWISE_BLOCK)):
        _relu_span(x, y, *block_span(block, x.size))


@njit(nogil=True, cache=True)
def _relu_backward_span(dy, x, dx, start, stop):
    zero = x.dtype.type(0)
    dy, x, dx = dy[start:stop], x[start:stop], dx[start:stop]
    for i in range(x.size):
        dx[i] = dy[i] if x[i] > 0 else zero


@njit(parallel=True, cache=True)
def _relu_backward_parallel(dy, x, dx):
    for block in prange(-(-x.size // ELEMENTWISE_BLOCK)):
        _relu_backward_span(dy, x, dx, *block_span(block, x.size))


@njit(nogil=True, cache=True)
def relu_into(x, y):
    """``y = max(x, 0)`` on flat arrays, as ``relu_forward``: serial and without the GIL, for numcnn's worker
    threads (a convolution applies it to each chunk of its output while the chunk is still in cache)."""
    _relu_span(x, y, 0, x.size)


def relu_forward(x):
    """``y = max(x, 0)``; the cache is ``x`` itself (backward needs only its sign)."""
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    run_elementwise(_relu_span, _relu_parallel, x.size, x.reshape(-1), y.reshape(-1))
    return y, x


def relu_backward(dy, x):
    """``dx = dy`` where ``x > 0``, else 0."""
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    dx = np.empty_like(x)
    run_elementwise(_relu_backward_span, _relu_backward_parallel, x.size, dy.reshape(-1), x.reshape(-1),
                    dx.reshape(-1))
    return dx


def softmax_forward(z):
    """``exp(z - max z) / sum exp(z - max z)`` over the last axis (stable: the largest exponent is 0)."""
    e = np.exp(z - np.max(z, axis=-1, keepdims=True))
    p = e / np.sum(e, axis=-1, keepdims=True)
    return p, p


def softmax_backward(dy, p):
    return p * (dy - np.sum(dy * p, axis=-1, keepdims=True))


@njit(nogil=True, cache=True)
def _sigmoid_from_exp_span(x, e, y, start, stop):
    one = y.dtype.type(1)
    x, e, y = x[start:stop], e[start:stop], y[start:stop]
    for i in range(x.size):
        y[i] = (one if x[i] >= 0 else e[i]) / (one + e[i])


@njit(parallel=True, cache=True)
def _sigmoid_from_exp_parallel(x, e, y):
    for block in prange(-(-x.size // ELEMENTWISE_BLOCK)):
        _sigmoid_from_exp_span(x, e, y, *block_span(block, x.size))


def sigmoid_forward(x):
    """``1 / (1 + exp(-x))``, computed without overflow: with ``e = exp(-|x|)`` (at most 1),
    ``sigmoid(x) = 1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` for ``x < 0`` (the same number:
    multiply top and bottom by ``exp(x)``). ``exp(-x)`` itself would overflow for ``x < -88`` in float32.
    ``e`` is NumPy's (vectorised); the choice of numerator and the division are one Numba loop, where LLVM
    turns the choice into a branch-free select: ``np.where`` branches on each sign, and on random signs took
    0.76 ms for 200,704 floats (a 256-image batch of the MNIST generator's output) against 0.10 for the exp
    (Zen 5). The same operations, so the same bits."""
    x = np.ascontiguousarray(x)
    e = np.exp(-np.abs(x))
    y = np.empty_like(e)
    run_elementwise(_sigmoid_from_exp_span, _sigmoid_from_exp_parallel, x.size, x.reshape(-1), e.reshape(-1),
                    y.reshape(-1))
    return y, e


def sigmoid_backward(dy, e):
    """``dx = dy * y (1 - y) = dy * e / (1 + e)^2`` with ``e = exp(-|x|)`` (both signs: the derivative is
    even). From ``e``, not from ``y``: in float32 ``1 - y`` keeps only a few digits once ``y`` is near 1
    (x = 10: 3 digits), ``e`` keeps them all."""
    one_plus_e = e.dtype.type(1) + e
    return dy * (e / (one_plus_e * one_plus_e))


def tanh_forward(x):
    """``tanh(x)``; the cache is ``e = exp(-2|x|)`` for the backward (as ``exp(-|x|)^2``: ``-2|x|`` would
    overflow to -inf for the largest inputs, the square merely underflows to 0)."""
    x = np.asarray(x)
    e = np.exp(-np.abs(x))
    return np.tanh(x), e * e


def tanh_backward(dy, e):
    """``dx = dy * (1 - tanh(x)^2) = dy * 4 e / (1 + e)^2`` with ``e = exp(-2|x|)`` (``1 - tanh^2`` is
    ``sech^2 = 4 / (exp(x) + exp(-x))^2``; written with ``e`` it keeps its digits where ``tanh`` is near 1,
    as for the sigmoid)."""
    one_plus_e = e.dtype.type(1) + e
    return dy * (e.dtype.type(4) * e / (one_plus_e * one_plus_e))


def elu_forward(x, alpha=1.0):
    """``x`` where ``x > 0``, else ``alpha (exp(x) - 1)`` (``expm1``: exact for small ``|x|``)."""
    x = np.asarray(x)
    alpha = x.dtype.type(alpha)
    y = np.where(x > 0, x, alpha * np.expm1(np.minimum(x, x.dtype.type(0))))  # min: no exp overflow for x > 0
    return y, (x, alpha)


def elu_backward(dy, cache):
    """``dx = dy`` where ``x > 0``, else ``dy * alpha * exp(x)``."""
    x, alpha = cache
    return np.where(x > 0, dy, dy * alpha * np.exp(np.minimum(x, x.dtype.type(0))))


def gelu_forward(x):
    """``x Phi(x)``, ``Phi`` the standard normal CDF, as ``Phi(x) = erfc(-x / sqrt 2) / 2`` — the same number
    as ``(1 + erf(x / sqrt 2)) / 2`` without its cancellation for negative ``x`` (TF computes it so too)."""
    x = np.asarray(x)
    cdf = x.dtype.type(0.5) * special.erfc(-x * x.dtype.type(1 / math.sqrt(2.0)))
    return x * cdf, (x, cdf)


def gelu_backward(dy, cache):
    """``d(x Phi(x))/dx = Phi(x) + x phi(x)``, ``phi(x) = exp(-x^2 / 2) / sqrt(2 pi)`` (the normal density)."""
    x, cdf = cache
    density = np.exp(x.dtype.type(-0.5) * x * x) * x.dtype.type(1 / math.sqrt(2.0 * math.pi))
    return dy * (cdf + x * density)


@njit(nogil=True, cache=True)
def _leaky_relu_span(x, slope, y, start, stop):
    x, y = x[start:stop], y[start:stop]
    for i in range(x.size):
        y[i] = x[i] if x[i] > 0 else slope * x[i]


@njit(parallel=True, cache=True)
def _leaky_relu_parallel(x, slope, y):
    for block in prange(-(-x.size // ELEMENTWISE_BLOCK)):
        _leaky_relu_span(x, slope, y, *block_span(block, x.size))


@njit(nogil=True, cache=True)
def _leaky_relu_backward_span(dy, x, slope, dx, start, stop):
    dy, x, dx = dy[start:stop], x[start:stop], dx[start:stop]
    for i in range(x.size):
        dx[i] = dy[i] if x[i] > 0 else slope * dy[i]


@njit(parallel=True, cache=True)
def _leaky_relu_backward_parallel(dy, x, slope, dx):
    for block in prange(-(-x.size // ELEMENTWISE_BLOCK)):
        _leaky_relu_backward_span(dy, x, slope, dx, *block_span(block, x.size))


def leaky_relu_forward(x, negative_slope=0.2):
    """``x`` where ``x > 0``, else ``negative_slope * x`` (0.2: the default of Keras's "leaky_relu" string).
    One pass in Numba (see the module docstring)."""
    x = np.ascontiguousarray(x)
    slope = x.dtype.type(negative_slope)
    y = np.empty_like(x)
    run_elementwise(_leaky_relu_span, _leaky_relu_parallel, x.size, x.reshape(-1), slope, y.reshape(-1))
    return y, (x, slope)


def leaky_relu_backward(dy, cache):
    """``dx = dy`` where ``x > 0``, else ``negative_slope * dy``."""
    x, slope = cache
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    dx = np.empty_like(x)
    run_elementwise(_leaky_relu_backward_span, _leaky_relu_backward_parallel, x.size, dy.reshape(-1),
                    x.reshape(-1), slope, dx.reshape(-1))
    return dx


def linear_forward(x):
    return x, None


def linear_backward(dy, cache):
    return dy


# name -> (forward, backward). Layers look activations up here; parametrised ones (elu, leaky_relu) use
# their Keras string defaults, the ELU and LeakyReLU layers pass their own parameter.
ACTIVATIONS = {
    "linear": (linear_forward, linear_backward),
    "relu": (relu_forward, relu_backward),
    "softmax": (softmax_forward, softmax_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
    "elu": (elu_forward, elu_backward),
    "gelu": (gelu_forward, gelu_backward),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
}


def activation_name(activation) -> str:
    """Normalise Keras's spellings (``None`` and ``"linear"`` both mean no activation); refuse unknown names."""
    name = "linear" if activation is None else activation
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)} or None")
    return name


def get(activation):
    """``(forward, backward)`` of an activation name (see ``activation_name``)."""
    return ACTIVATIONS[activation_name(activation)]
