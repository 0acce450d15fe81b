"""SGD with Keras 3's update (keras/src/optimizers/sgd.py).

``w -= lr * g``; with momentum ``v = momentum * v - lr * g`` then ``w += v`` (Nesterov: ``w += momentum * v -
lr * g``). ``momentum`` reaches the weights' dtype through float32, as Keras's ``ops.cast`` of a Python float.
"""

from __future__ import annotations

import numpy as np

from .base import Optimizer


class SGD(Optimizer):
    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)

    def active_slots(self):
        return ("momentum",) if self.momentum != 0 else ()

    def update(self, index, w, g, lr):
        if self.momentum == 0:
            w -= g * lr
            return
        momentum = w.dtype.type(np.float32(self.momentum))  # Keras: ops.cast(python float) goes via float32
        v = self.slots["momentum"][index]
        v[...] = v * momentum - g * lr
        if self.nesterov:
            w += v * momentum - g * lr
        else:
            w += v

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}
