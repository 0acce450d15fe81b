"""Learning-rate schedules with Keras 3's formulas (keras/src/optimizers/schedules/learning_rate_schedule.py).

A schedule maps the optimizer's step count (``iterations``: the steps already taken) to a learning rate.
Pass one as any optimizer's ``learning_rate``; it is evaluated once per step. Every formula is computed in
float32, operation by operation as Keras computes it (Keras's schedules work in the dtype of
``initial_learning_rate``, a float32 tensor), so the values are Keras's float32 values. Powers and cosines are
taken in float64 by the C library and rounded once to float32 (correctly rounded in practice; TensorFlow's own
float32 ``pow``/``cos`` may differ from that by an ulp).

With ``s`` the step (float32):

* ``ExponentialDecay``:     ``lr0 * decay_rate ** (s / decay_steps)``; ``staircase``: the exponent floored.
* ``InverseTimeDecay``:     ``lr0 / (1 + decay_rate * (s / decay_steps))``; ``staircase``: the ratio floored.
* ``PiecewiseConstantDecay(boundaries, values)``: ``values[0]`` while ``s <= boundaries[0]``, ``values[i]``
  while ``boundaries[i-1] < s <= boundaries[i]``, ``values[-1]`` after the last boundary.
* ``CosineDecay``: ``lr0 * ((1 - alpha) * 0.5 * (1 + cos(pi * min(s, decay_steps) / decay_steps)) + alpha)``.
  With ``warmup_target``: first a linear warm-up from ``lr0`` to ``warmup_target`` over ``warmup_steps``
  (``lr0 + (warmup_target - lr0) * s / warmup_steps``), then the cosine decay from ``warmup_target`` over the
  next ``decay_steps`` steps.

``serialize``/``deserialize`` write and read Keras's form, ``{"module": "keras.optimizers.schedules",
"class_name": ..., "config": {...}, "registered_name": None}``, from a fixed table (nothing is imported or run).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

f32 = np.float32


def _power(base, exponent):
    """float32 ``base ** exponent``: libm's float64 pow, rounded once to float32."""
    return f32(float(base) ** float(exponent))


def _cos(x):
    return f32(math.cos(float(x)))


def _number(value, name, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")
    return value


class LearningRateSchedule:
    """Base class: ``schedule(step) -> float32 learning rate``; ``get_config()`` / ``from_config(config)``."""

    def __call__(self, step):
        raise NotImplementedError(f"learning rate schedule {type(self).__name__!r} must override __call__(step)")

    def get_config(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: dict) -> "LearningRateSchedule":
        return cls(**config)

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"


class _DecayEveryStep(LearningRateSchedule):
    """ExponentialDecay and InverseTimeDecay: both decay with ``p = step / decay_steps`` (floored if
    ``staircase``), and take the same arguments."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False, name=None):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _number(decay_steps, "decay_steps", positive=True)
        self.decay_rate = _number(decay_rate, "decay_rate")
        self.staircase = bool(staircase)
        self.name = name or type(self).__name__

    def progress(self, step):
        p = f32(step) / f32(self.decay_steps)
        return np.floor(p) if self.staircase else p

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "decay_rate": self.decay_rate, "staircase": self.staircase, "name": self.name}


class ExponentialDecay(_DecayEveryStep):
    """``lr = initial_learning_rate * decay_rate ** p``."""

    def __call__(self, step):
        return f32(self.initial_learning_rate) * _power(f32(self.decay_rate), self.progress(step))


class InverseTimeDecay(_DecayEveryStep):
    """``lr = initial_learning_rate / (1 + decay_rate * p)``."""

    def __call__(self, step):
        p = self.progress(step)
        return f32(self.initial_learning_rate) / (f32(1) + f32(self.decay_rate) * p)


class PiecewiseConstantDecay(LearningRateSchedule):
    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        boundaries, values = list(boundaries), list(values)
        if len(boundaries) != len(values) - 1:
            raise ValueError(f"The length of boundaries should be 1 less than the length of values. Received: "
                             f"boundaries={boundaries} of length {len(boundaries)}, and values={values} of length "
                             f"{len(values)}.")
        self.boundaries = [_number(b, "boundaries") for b in boundaries]
        self.values = [_number(v, "values") for v in values]
        self.name = name

    def __call__(self, step):
        # Keras casts the boundaries to the step's dtype: for an integer step count they are truncated to integers
        integer_step = isinstance(step, (numbers.Integral, np.integer))
        boundaries = [int(b) if integer_step else b for b in self.boundaries]
        for boundary, value in zip(boundaries, self.values):
            if step <= boundary:
                return f32(value)
        return f32(self.values[-1])

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class CosineDecay(LearningRateSchedule):
    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0, name="CosineDecay", warmup_target=None,
                 warmup_steps=0):
        self.initial_learning_rate = _number(initial_learning_rate, "initial_learning_rate")
        self.decay_steps = _number(decay_steps, "decay_steps", positive=True)
        self.alpha = _number(alpha, "alpha")
        self.name = name
        self.warmup_target = None if warmup_target is None else _number(warmup_target, "warmup_target")
        self.warmup_steps = _number(warmup_steps, "warmup_steps")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")

    def _decay(self, step, decay_steps, decay_from_lr):
        completed_fraction = step / decay_steps
        cosine_decayed = f32(0.5) * (f32(1.0) + _cos(f32(math.pi) * completed_fraction))
        decayed = f32(1 - self.alpha) * cosine_decayed + f32(self.alpha)  # (1 - alpha): a Python float, as in Keras
        return decay_from_lr * decayed

    def _warmup(self, step, warmup_steps, warmup_target, initial_learning_rate):
        completed_fraction = step / warmup_steps
        return (warmup_target - initial_learning_rate) * completed_fraction + initial_learning_rate

    def __call__(self, step):
        initial_learning_rate = f32(self.initial_learning_rate)
        decay_steps = f32(self.decay_steps)
        step = f32(step)
        if self.warmup_target is None:
            return self._decay(min(step, decay_steps), decay_steps, initial_learning_rate)
        warmup_target, warmup_steps = f32(self.warmup_target), f32(self.warmup_steps)
        step = min(step, decay_steps + warmup_steps)
        if step < warmup_steps:
            return self._warmup(step, warmup_steps, warmup_target, initial_learning_rate)
        return self._decay(step - warmup_steps, decay_steps, warmup_target)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate, "decay_steps": self.decay_steps,
                "alpha": self.alpha, "name": self.name, "warmup_target": self.warmup_target,
                "warmup_steps": self.warmup_steps}


SCHEDULES = {cls.__name__: cls for cls in (ExponentialDecay, InverseTimeDecay, PiecewiseConstantDecay, CosineDecay)}


def serialize(schedule: LearningRateSchedule) -> dict:
    """Keras's serialised form of a schedule (what an optimizer's ``get_config()["learning_rate"]`` holds)."""
    return {"module": "keras.optimizers.schedules", "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config: dict) -> LearningRateSchedule:
    """A schedule from ``serialize``'s dict (or Keras's), looked up in a fixed table by ``class_name``."""
    if not isinstance(config, dict) or config.get("class_name") not in SCHEDULES:
        name = config.get("class_name") if isinstance(config, dict) else config
        raise ValueError(f"unknown learning rate schedule {name!r}; numcnn has {sorted(SCHEDULES)}")
    return SCHEDULES[config["class_name"]].from_config(dict(config.get("config", {})))
