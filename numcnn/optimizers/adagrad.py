"""Adagrad with Keras 3's update (keras/src/optimizers/adagrad.py).

``A += g^2``; ``w -= lr * g / sqrt(A + eps)`` (eps inside the root). The sums ``A`` start at
``initial_accumulator_value`` (0.1), which Keras's ``Constant`` initializer casts to the weights' dtype through
float32.
"""

from __future__ import annotations

import numpy as np

from .base import Optimizer


class Adagrad(Optimizer):
    name = "adagrad"
    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not np.isfinite(initial_accumulator_value) or initial_accumulator_value < 0:
            raise ValueError(f"initial_accumulator_value must be a finite number >= 0, got "
                             f"{initial_accumulator_value!r}")
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.epsilon = float(epsilon)

    def new_slot(self, name, param):
        return np.full_like(param, param.dtype.type(np.float32(self.initial_accumulator_value)))

    def update(self, index, w, g, lr):
        accumulator = self.slots["accumulator"][index]
        accumulator += g * g
        w -= (lr * g) / np.sqrt(accumulator + w.dtype.type(self.epsilon))

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}
