"""``Dropout``: zero each unit with probability ``rate`` while training (inverted dropout).

Forward, training (``forward(x, training=True)``), with a fresh mask each call, ``keep ~ Bernoulli(1 - rate)``::

    y = x * keep / (1 - rate)           (the kept units are scaled up, so E[y] = x)

inference (``training=False``): ``y = x``. Backward: ``dx = dy * keep / (1 - rate)`` after a training forward,
``dx = dy`` after an inference one.

Shapes: x (N, ...) -> y the same. ``noise_shape`` (Keras's argument, batch axis included, ``None`` entries
taken from the input) draws a smaller mask that broadcasts: ``noise_shape=(None, 1, 1, C)`` drops whole
channels of an (N, H, W, C) batch.

Randomness: every mask comes from the layer's own ``numpy.random.Generator`` (``self.rng``). With ``seed``
it is ``default_rng(seed)``; without, it is spawned from the model's generator when the model builds the
layer (``rng.spawn(1)``: a child stream from the generator's SeedSequence; the parent's own stream is left
untouched, so adding a Dropout changes no weight initialisation). The same model seed gives the same masks, bit
for bit, and checkpoints save the generator's state so a resumed run draws the masks it would have drawn.
A unit is kept when its uniform draw ``u >= rate`` (TF's rule, read in its dropout op's source), ``u`` a
32-bit draw ``bits / 2^32`` (``keep_mask``), the same for every dtype, so float32 and float64 models drop the
same units. TF's masks come from other generators and cannot be matched. Keras accepts ``rate=1`` (and
returns zeros); numcnn refuses it: nothing would learn, and the scale would be 1/0.
"""

from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..errors import ShapeError
from .base import Layer


class Dropout(Layer):
    def __init__(self, rate, noise_shape=None, seed=None, name: str | None = None, input_shape=None,
                 trainable: bool = True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        numeric = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, bool)
        if not numeric or not 0 <= rate < 1:  # (NaN fails the comparison too)
            raise ValueError(f"Dropout rate must be a number in [0, 1) (the fraction of units dropped; 1 would "
                             f"drop everything and scale by 1/0), got {rate!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"Dropout seed must be None or a non-negative int, got {seed!r}")
        self.rate = float(rate)
        self.seed = None if seed is None else int(seed)
        self.noise_shape = _check_noise_shape(noise_shape)
        if self.seed is not None:
            self.rng = np.random.default_rng(self.seed)  # usable unbuilt, e.g. Dropout(0.5, seed=1)(x, True)

    def create_params(self, rng):
        """No weights: the model's generator gives this layer its own mask stream (see the module docstring)."""
        if self.noise_shape is not None and len(self.noise_shape) != len(self.input_shape) + 1:
            raise ValueError(f"Dropout {self.name!r}: noise_shape {self.noise_shape} must have one entry per axis of "
                             f"the input, batch axis included: {len(self.input_shape) + 1}")
        self.rng = np.random.default_rng(self.seed) if self.seed is not None else rng.spawn(1)[0]

    def _mask_shape(self, x_shape) -> tuple[int, ...]:
        if self.noise_shape is None:
            return tuple(x_shape)
        if len(self.noise_shape) != len(x_shape):
            raise ShapeError(f"Dropout {self.name!r}: noise_shape {self.noise_shape} does not fit input {x_shape}")
        shape = tuple(d if wanted is None else wanted for wanted, d in zip(self.noise_shape, x_shape))
        if any(m not in (1, d) for m, d in zip(shape, x_shape)):
            raise ShapeError(f"Dropout {self.name!r}: noise_shape {self.noise_shape} does not broadcast to input "
                             f"{x_shape} (each entry must be None, 1 or the input's size)")
        return shape

    def keep_mask(self, shape) -> np.ndarray:
        """``u >= rate`` for ``u = bits / 2^32`` uniform on [0, 1), ``bits`` 32 random bits per unit taken from
        the raw stream of ``self.rng``'s bit generator (each 64-bit word gives two units): ``bits >=
        ceil(rate * 2^32)``, so a unit is kept with probability 1 - rate to within 2^-32. NumPy's float64
        uniforms take one word per unit and convert it: 0.77 ms for 262,144 units against 0.31 (Zen 5), a
        fifth of a Dropout-heavy discriminator's training step."""
        size = int(np.prod(shape, dtype=np.int64))
        bits = self.rng.bit_generator.random_raw(-(-size // 2)).view(np.uint32)[:size]
        threshold = math.ceil(self.rate * 2.0 ** 32)  # exact: scaling by a power of 2 does not round
        if threshold >= 2 ** 32:  # (a rate within 2^-32 of 1: no 32-bit draw reaches it)
            return np.zeros(shape, dtype=bool)
        return (bits >= np.uint32(threshold)).reshape(shape)

    def forward(self, x, training=False):
        if not training or self.rate == 0:
            self._cache = None  # the identity: backward passes dy through
            return x
        if self.rng is None:
            raise RuntimeError(f"Dropout {self.name!r} has no random generator: give it a seed, or add it to a "
                               f"model, which derives one from the model's seed")
        keep = self.keep_mask(self._mask_shape(x.shape))
        y, self._cache = kernels.dropout_forward(x, keep, self.rate)
        return y

    def backward(self, dy):
        if self._cache is None:
            return dy
        return kernels.dropout_backward(dy, self._cache)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate,
                "noise_shape": None if self.noise_shape is None else list(self.noise_shape), "seed": self.seed}


def _check_noise_shape(noise_shape):
    if noise_shape is None:
        return None
    try:
        shape = tuple(noise_shape)
    except TypeError:
        raise ValueError(f"Dropout noise_shape must be None or a tuple of ints/None, got {noise_shape!r}") from None
    for d in shape:
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1):
            raise ValueError(f"Dropout noise_shape entries must be None or positive ints, got {noise_shape!r}")
    return tuple(None if d is None else int(d) for d in shape)
