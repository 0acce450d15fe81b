"""Weight initializers (Keras's formulas), all drawn from an explicit ``numpy.random.Generator``.

Fans follow Keras: a dense kernel (in, out) has ``fan_in = in``, ``fan_out = out``; a conv kernel
(kh, kw, in, out) has ``fan_in = kh*kw*in`` and ``fan_out = kh*kw*out``.

* ``glorot_uniform``: ``U(-limit, limit)``, ``limit = sqrt(6 / (fan_in + fan_out))``
* ``he_uniform``:     ``U(-limit, limit)``, ``limit = sqrt(6 / fan_in)``
* ``he_normal``:      normal with stddev ``sqrt(2 / fan_in) / 0.87962566103423978`` truncated at 2 stddev
  (the constant is the stddev of a unit normal truncated to [-2, 2]: dividing by it makes the *truncated*
  distribution's stddev ``sqrt(2 / fan_in)``, as Keras's VarianceScaling does)
* ``glorot_normal``:  the same truncated normal with stddev ``sqrt(2 / (fan_in + fan_out))``
* ``zeros``, ``ones``
TensorFlow's random streams cannot be reproduced; numcnn's are reproducible from the seed, bit for bit.
"""

from __future__ import annotations

import numpy as np

TRUNCATED_NORMAL_STDDEV = 0.87962566103423978


def compute_fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` of a kernel shape, as Keras does."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _uniform(limit, shape, rng, dtype):
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


def _truncated_normal(stddev, shape, rng, dtype):
    """Normal(0, stddev) redrawn until every value lies within 2 stddev."""
    values = rng.standard_normal(size=shape)
    outside = np.abs(values) > 2.0
    while outside.any():
        values[outside] = rng.standard_normal(size=int(outside.sum()))
        outside = np.abs(values) > 2.0
    return (values * stddev).astype(dtype)


def glorot_uniform(shape, rng, dtype=np.float32):
    fan_in, fan_out = compute_fans(shape)
    return _uniform(np.sqrt(6.0 / (fan_in + fan_out)), shape, rng, dtype)


def glorot_normal(shape, rng, dtype=np.float32):
    fan_in, fan_out = compute_fans(shape)
    return _truncated_normal(np.sqrt(2.0 / (fan_in + fan_out)) / TRUNCATED_NORMAL_STDDEV, shape, rng, dtype)


def he_uniform(shape, rng, dtype=np.float32):
    fan_in, _ = compute_fans(shape)
    return _uniform(np.sqrt(6.0 / fan_in), shape, rng, dtype)


def he_normal(shape, rng, dtype=np.float32):
    fan_in, _ = compute_fans(shape)
    return _truncated_normal(np.sqrt(2.0 / fan_in) / TRUNCATED_NORMAL_STDDEV, shape, rng, dtype)


def zeros(shape, rng=None, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def ones(shape, rng=None, dtype=np.float32):
    return np.ones(shape, dtype=dtype)


INITIALIZERS = {f.__name__: f for f in (glorot_uniform, glorot_normal, he_uniform, he_normal, zeros, ones)}


def get(name):
    """Look an initializer up by its Keras name."""
    if callable(name):
        return name
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise ValueError(f"unknown initializer {name!r}; choose one of {sorted(INITIALIZERS)}") from None
