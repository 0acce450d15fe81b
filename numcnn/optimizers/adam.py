"""Adam (with AMSGrad) and AdamW with Keras 3's updates (keras/src/optimizers/adam.py, adamw.py).

With ``t = iterations + 1``:

    m += (1 - b1)(g - m);   v += (1 - b2)(g^2 - v)
    alpha = lr * sqrt(1 - b2^t) / (1 - b1^t)
    w -= alpha * m / (sqrt(v) + eps)

eps is added to the *uncorrected* sqrt(v) (this differs from PyTorch's form). ``amsgrad=True`` keeps the
running maximum ``v_hat = max(v_hat, v)`` and divides by ``sqrt(v_hat) + eps`` instead.

AdamW is Adam with decoupled weight decay on by default (``weight_decay=0.004``): before the update,
``w -= w * weight_decay * lr`` (the base optimizer's step, shared by every optimizer).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .base import Optimizer


class Adam(Optimizer):
    name = "adam"
    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
        self.amsgrad = bool(amsgrad)
        self._scalars_cache = (None, None)  # (key, scalars) of the last step: see _scalars

    def active_slots(self):
        return ("m", "v", "v_hat") if self.amsgrad else ("m", "v")

    def update(self, index, w, g, lr):
        m, v = self.slots["m"][index], self.slots["v"][index]
        g = np.ascontiguousarray(g).reshape(-1)
        if self.amsgrad:
            _amsgrad_step(w.reshape(-1), g, m.reshape(-1), v.reshape(-1), self.slots["v_hat"][index].reshape(-1),
                          *self._scalars(w.dtype.type, lr))
        else:
            _adam_step(w.reshape(-1), g, m.reshape(-1), v.reshape(-1), *self._scalars(w.dtype.type, lr))

    def _scalars(self, dtype, lr):
        """``(alpha, 1 - beta_1, 1 - beta_2, epsilon)`` of this step in ``dtype``: the same for every
        parameter of a step, so computed once (a dozen NumPy scalar operations per parameter were 30% of
        ``apply``'s time, measured)."""
        key = (self.iterations, dtype, lr, self.beta_1, self.beta_2, self.epsilon)
        if self._scalars_cache[0] != key:
            t = self.iterations + 1
            # Keras casts beta_1, beta_2 for the bias correction via float32 (ops.cast of a Python float), but
            # uses the Python floats 1 - beta_1, 1 - beta_2 and epsilon directly: matching that to the last
            # bit matters for float64 trajectories.
            # The powers beta**t are taken in float64 by the C library's pow (Python's ``**``), then rounded to
            # ``dtype``: NumPy's own float32/float64 power dispatches by CPU (on AVX-512 its SIMD pow is not
            # correctly rounded: float32 0.999**9 came out 1 ulp low, measured on Zen 4), so it would make the
            # trajectory depend on the CPU. libm's pow is within 0.52 ulp in float64, far below float32's ulp.
            beta_1_power = dtype(float(np.float32(self.beta_1)) ** t)
            beta_2_power = dtype(float(np.float32(self.beta_2)) ** t)
            alpha = lr * np.sqrt(1 - beta_2_power) / (1 - beta_1_power)
            self._scalars_cache = (key, (alpha, dtype(1 - self.beta_1), dtype(1 - self.beta_2), dtype(self.epsilon)))
        return self._scalars_cache[1]

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "amsgrad": self.amsgrad}


class AdamW(Adam):
    """Adam with decoupled weight decay, ``weight_decay=0.004`` by default (Keras's AdamW)."""

    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 amsgrad=False, **kwargs):
        if weight_decay is None:
            raise ValueError("Argument `weight_decay` must be a float. Received: weight_decay=None")
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, amsgrad=amsgrad,
                         weight_decay=weight_decay, **kwargs)


@njit(cache=True, error_model="numpy")
def _adam_step(w, g, m, v, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
    """Adam's update in one pass over memory (NumPy would make six passes and four temporaries); the same
    operations in the same order as Keras, so the same bits. ``w, g, m, v`` are flat views; scalars are
    already of the weights' dtype (a Python float would promote float32 arithmetic to float64).
    ``error_model="numpy"``: no Python ZeroDivisionError check in the loop, which lets it vectorise (5.7x
    faster, measured; the divisor ``sqrt(v) + epsilon`` is never 0)."""
    for i in range(w.size):
        m[i] += (g[i] - m[i]) * one_minus_beta_1
        v[i] += (g[i] * g[i] - v[i]) * one_minus_beta_2
        w[i] -= (m[i] * alpha) / (np.sqrt(v[i]) + epsilon)


@njit(cache=True, error_model="numpy")
def _amsgrad_step(w, g, m, v, v_hat, alpha, one_minus_beta_1, one_minus_beta_2, epsilon):
    """``_adam_step`` with AMSGrad's running maximum ``v_hat = max(v_hat, v)`` in the denominator."""
    for i in range(w.size):
        m[i] += (g[i] - m[i]) * one_minus_beta_1
        v[i] += (g[i] * g[i] - v[i]) * one_minus_beta_2
        v_hat[i] = max(v_hat[i], v[i])
        w[i] -= (m[i] * alpha) / (np.sqrt(v_hat[i]) + epsilon)
