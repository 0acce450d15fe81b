"""Activation layers: ``ReLU``, ``Softmax`` and ``Activation(name)``.

* ReLU:    ``y = max(x, 0)``;  backward ``dx = dy * [x > 0]`` (derivative 0 at exactly 0, as TF).
* Softmax: ``p_j = exp(z_j - max z) / sum_k exp(z_k - max z)`` over the last axis;
  backward ``dz_i = p_i (dy_i - sum_j dy_j p_j)``.
* linear:  ``y = x``, ``dx = dy``.

When a softmax ends a model trained with cross-entropy, ``Sequential`` skips this backward and starts
from the fused, stable gradient ``softmax(z) - onehot(y)`` (see ``numcnn.losses``), as Keras does.
"""

from __future__ import annotations

from .. import kernels
from .base import Layer


def _identity_forward(x):
    return x, None


def _identity_backward(dy, cache):
    return dy


ACTIVATION_KERNELS = {
    "relu": (kernels.relu_forward, kernels.relu_backward),
    "softmax": (kernels.softmax_forward, kernels.softmax_backward),
    "linear": (_identity_forward, _identity_backward),
}


def activation_name(activation) -> str:
    """Normalise Keras's spellings: ``None`` and ``"linear"`` both mean no activation."""
    name = "linear" if activation is None else activation
    if name not in ACTIVATION_KERNELS:
        raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATION_KERNELS)} or None")
    return name


class Activation(Layer):
    """Apply a named activation elementwise (softmax: over the last axis)."""

    def __init__(self, activation, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.activation = activation_name(activation)
        self._forward_kernel, self._backward_kernel = ACTIVATION_KERNELS[self.activation]

    def forward(self, x, training=False):
        y, self._cache = self._forward_kernel(x)
        return y

    def backward(self, dy):
        return self._backward_kernel(dy, self._cache)

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
