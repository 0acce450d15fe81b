"""Nadam with Keras 3's update (keras/src/optimizers/nadam.py): Adam with Nesterov momentum and Dozat's
momentum schedule.

With ``t = iterations + 1``, ``u_t = b1 (1 - 0.5 * 0.96^t)`` and the product ``U_t = u_1 u_2 ... u_t``:

    m += (1 - b1)(g - m);   v += (1 - b2)(g^2 - v)
    m_hat = u_{t+1} m / (1 - U_t u_{t+1}) + (1 - u_t) g / (1 - U_t)
    v_hat = v / (1 - b2^t)
    w -= lr * m_hat / (sqrt(v_hat) + eps)

Keras keeps ``U_t`` in a variable updated once per step, before the parameters' updates, from the Python floats
``b1`` and 0.96 (in the weights' dtype), while ``u_t`` inside the update uses ``b1`` and 0.96 cast through
float32; both are copied exactly (it shows in float64). numcnn does not store ``U_t``: it is a function of the
step count alone, recomputed (same operations, same bits) when the count jumps, so ``get_state`` /
``set_state`` and saved files need nothing beyond ``iterations`` and the slots.
"""

from __future__ import annotations

import numpy as np

from .base import Optimizer


class Nadam(Optimizer):
    name = "nadam"
    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self._u_product = None
        self._u_product_cache = (None, None)  # ((steps, dtype), U after that many steps)

    def _u_factor(self, u_product, t, dtype):
        """``U_t = U_{t-1} * b1 * (1 - 0.5 * 0.96^t)`` as Keras's ``_backend_update_step`` computes it."""
        power = dtype(float(dtype(0.96)) ** t)
        return (u_product * dtype(self.beta_1)) * (dtype(1.0) - dtype(0.5) * power)

    def before_updates(self, params):
        dtype = params[0].dtype.type if params else np.float32
        key, u_product = self._u_product_cache
        if key != (self.iterations, dtype):  # first step, or the step count was set (resume): recompute
            u_product = dtype(1.0)
            for t in range(1, self.iterations + 1):
                u_product = self._u_factor(u_product, t, dtype)
        self._u_product = self._u_factor(u_product, self.iterations + 1, dtype)
        self._u_product_cache = ((self.iterations + 1, dtype), self._u_product)

    def update(self, index, w, g, lr):
        dtype = w.dtype.type
        t = self.iterations + 1
        decay = float(dtype(np.float32(0.96)))                  # ops.cast(0.96, dtype): through float32
        beta_1, beta_2 = dtype(np.float32(self.beta_1)), dtype(np.float32(self.beta_2))
        u_t = beta_1 * (dtype(1.0) - dtype(0.5) * dtype(decay ** t))
        u_t_1 = beta_1 * (dtype(1.0) - dtype(0.5) * dtype(decay ** (t + 1)))
        u_product_t = dtype(self._u_product)
        u_product_t_1 = u_product_t * u_t_1
        beta_2_power = dtype(float(beta_2) ** t)
        m, v = self.slots["m"][index], self.slots["v"][index]
        m += (g - m) * (dtype(1) - beta_1)
        v += (g * g - v) * (dtype(1) - beta_2)
        m_hat = (u_t_1 * m) / (dtype(1) - u_product_t_1) + ((dtype(1) - u_t) * g) / (dtype(1) - u_product_t)
        v_hat = v / (dtype(1) - beta_2_power)
        w -= (m_hat * lr) / (np.sqrt(v_hat) + dtype(self.epsilon))

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon}
