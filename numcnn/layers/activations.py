"""Activation layers: ``Activation(name)``, ``ReLU``, ``Softmax``, ``LeakyReLU`` and ``ELU``.

Each applies ``y = f(x)`` elementwise (softmax: over the last axis) and its backward is ``dx = dy * f'(x)``
(softmax: ``dz_i = p_i (dy_i - sum_j dy_j p_j)``). Shapes: any ``(N, ...)``, unchanged. The names and
formulas (``numcnn.kernels.activations``, where the registry ``ACTIVATIONS`` lives):

* ``relu``: ``max(x, 0)``, ``f' = [x > 0]`` (0 at exactly 0, as TF); ``linear``: ``x``, ``f' = 1``
* ``softmax``: ``p_j = exp(z_j - max z) / sum_k exp(z_k - max z)``
* ``sigmoid``: ``1 / (1 + exp(-x))``, ``f' = y (1 - y)``;  ``tanh``: ``f' = 1 - y^2``
* ``elu``: ``x`` if ``x > 0`` else ``alpha (exp(x) - 1)``, ``f' = 1`` or ``alpha exp(x)``; alpha 1
* ``gelu``: ``x Phi(x)``, ``Phi`` the standard normal CDF (Keras 3's exact erf form), ``f' = Phi(x) + x phi(x)``
* ``leaky_relu``: ``x`` if ``x > 0`` else ``negative_slope x``; the string uses 0.2, the ``LeakyReLU``
  layer 0.3 (Keras's two defaults)

When a softmax (or a sigmoid) ends a model trained with the matching cross-entropy, ``Sequential`` skips
this backward and starts from the fused, stable gradient computed from the logits (see ``numcnn.losses``),
as Keras does.
"""

from __future__ import annotations

import math
import numbers

from ..kernels import activations as activation_kernels
from ..kernels.activations import ACTIVATIONS, activation_name
from .base import Layer

ACTIVATION_KERNELS = ACTIVATIONS  # the registry's former name (it lived here): name -> (forward, backward)

__all__ = ["Activation", "ReLU", "Softmax", "LeakyReLU", "ELU", "ACTIVATIONS", "activation_name"]


class Activation(Layer):
    """Apply a named activation (``"relu"``, ``"sigmoid"``, ``"tanh"``, ``"elu"``, ``"gelu"``,
    ``"leaky_relu"``, ``"softmax"``, ``"linear"`` or None) elementwise (softmax: over the last axis)."""

    def __init__(self, activation, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.activation = activation_name(activation)
        self._forward_kernel, self._backward_kernel = ACTIVATIONS[self.activation]

    def forward(self, x, training=False):
        y, self._cache = self._forward_kernel(x)
        return y

    def backward(self, dy):
        return self._backward_kernel(dy, self._cache)

    def is_relu(self) -> bool:
        return self.activation == "relu"

    def keep_input(self, x) -> None:
        """Keep what ``backward`` needs after a ReLU forward of ``x`` computed by the layer before
        (``Conv2D.forward_normalized``); only for ``is_relu()`` layers (ReLU's cache is its input)."""
        if not self.is_relu():
            raise TypeError(f"layer {self.name!r} is not a ReLU")
        self._cache = x

    def get_config(self):
        return {**super().get_config(), "activation": self.activation}


class ReLU(Activation):
    """``y = max(x, 0)``."""

    def __init__(self, name: str | None = None, **kwargs):
        super().__init__("relu", name=name, **kwargs)

    def get_config(self):
        return {"name": self.name}


class Softmax(Activation):
    """``p = softmax(z)`` over the last axis."""

    def __init__(self, name: str | None = None, **kwargs):
        super().__init__("softmax", name=name, **kwargs)

    def get_config(self):
        return {"name": self.name}


def _finite_number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


class LeakyReLU(Activation):
    """``y = x`` if ``x > 0`` else ``negative_slope * x``; backward ``dx = dy`` or ``negative_slope * dy``.

    The default slope is the Keras *layer*'s, 0.3 (``activation="leaky_relu"`` uses 0.2, Keras's function
    default)."""

    def __init__(self, negative_slope: float = 0.3, name: str | None = None, **kwargs):
        super().__init__("leaky_relu", name=name, **kwargs)
        self.negative_slope = _finite_number(negative_slope, "LeakyReLU negative_slope")
        if self.negative_slope < 0:
            raise ValueError(f"LeakyReLU negative_slope must be >= 0 (as in Keras), got {negative_slope!r}")

    def forward(self, x, training=False):
        y, self._cache = activation_kernels.leaky_relu_forward(x, self.negative_slope)
        return y

    def get_config(self):
        return {**Layer.get_config(self), "negative_slope": self.negative_slope}


class ELU(Activation):
    """``y = x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``; backward ``dx = dy`` or ``dy * alpha * exp(x)``."""

    def __init__(self, alpha: float = 1.0, name: str | None = None, **kwargs):
        super().__init__("elu", name=name, **kwargs)
        self.alpha = _finite_number(alpha, "ELU alpha")

    def forward(self, x, training=False):
        y, self._cache = activation_kernels.elu_forward(x, self.alpha)
        return y

    def get_config(self):
        return {**Layer.get_config(self), "alpha": self.alpha}
