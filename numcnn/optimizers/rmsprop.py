"""RMSprop with Keras 3's update (keras/src/optimizers/rmsprop.py).

``s = rho * s + (1 - rho) g^2``; ``w -= lr * g / sqrt(s + eps)`` (eps inside the root); centered:
``a = rho * a + (1 - rho) g`` and the root of ``s - a^2 + eps``; momentum: ``M = momentum * M + lr * g /
sqrt(...)``, ``w -= M``.
"""

from __future__ import annotations

import numpy as np

from .base import Optimizer


class RMSprop(Optimizer):
    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon = float(rho), float(momentum), float(epsilon)
        self.centered = bool(centered)

    def active_slots(self):
        return ("velocity",) + (("average_gradient",) if self.centered else ()) + (
            ("momentum",) if self.momentum > 0 else ())

    def update(self, index, w, g, lr):
        dtype = w.dtype.type
        rho, one_minus_rho, epsilon = dtype(self.rho), dtype(1 - self.rho), dtype(self.epsilon)
        s = self.slots["velocity"][index]
        s[...] = rho * s + one_minus_rho * (g * g)
        if self.centered:
            a = self.slots["average_gradient"][index]
            a[...] = rho * a + one_minus_rho * g
            denominator = s - a * a + epsilon
        else:
            denominator = s + epsilon
        increment = (lr * g) / np.sqrt(denominator)
        if self.momentum > 0:
            big_m = self.slots["momentum"][index]
            big_m[...] = dtype(self.momentum) * big_m + increment
            w -= big_m
        else:
            w -= increment

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon,
                "centered": self.centered}
