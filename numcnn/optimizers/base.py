"""The optimizer base class: Keras 3's step order, learning rate handling, clipping and weight decay.

One step (``apply(params, grads)``), as in Keras's ``BaseOptimizer.apply``:

1. clip the gradients: ``clipnorm`` per tensor ``g * c / max(||g||, c)``; ``global_clipnorm`` over all tensors
   ``g * c * min(1 / ||G||, 1 / c)`` (``||G||`` = the norm of all gradients together); ``clipvalue``
   ``clip(g, -c, c)``. At most one of them; 0 or None means no clipping.
2. decoupled weight decay ``w -= w * weight_decay * lr`` (every trainable array, biases included);
3. the optimizer's own update (``update``) with ``lr`` the learning rate of this step;
4. ``iterations += 1``.

The learning rate is a number or a schedule (``numcnn.optimizers.schedules``) evaluated at ``iterations``
(the number of steps already taken). Keras keeps a number in a float32 variable and computes a schedule in
float32, so either way ``lr`` is a float32 value (0.001 becomes 0.0010000000475), then cast to the weights'
dtype — also for float64 weights. Keras also casts ``weight_decay`` through float32 (``ops.cast`` of a Python
float makes a float32 tensor first). ``tests/test_optimizers_keras.py`` runs every optimizer and option beside
Keras's in float64, where such casts show (casting ``weight_decay`` directly instead: 3e-9 relative after a few
steps, against agreement to 1e-13).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import schedules


def check_learning_rate(value):
    """A learning rate: a finite number >= 0, or a ``LearningRateSchedule``."""
    if isinstance(value, schedules.LearningRateSchedule):
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"learning_rate must be a finite number >= 0 or a LearningRateSchedule, got {value!r}")
    return float(value)


def _check_option(value, name):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 or None, got {value!r}")
    return float(value)


class Optimizer:
    """Base class. ``apply(params, grads)`` updates each array of ``params`` in place.

    Subclasses define ``name``, ``slot_names`` (the per-parameter state arrays, e.g. Adam's ``m`` and ``v``)
    and ``update(index, w, g, lr)``, the update of parameter ``index`` with its (clipped) gradient."""

    name = "optimizer"
    slot_names: tuple[str, ...] = ()

    def __init__(self, learning_rate=0.001, clipnorm=None, clipvalue=None, global_clipnorm=None,
                 weight_decay=None):
        if sum(option is not None for option in (clipnorm, clipvalue, global_clipnorm)) > 1:
            raise ValueError("set at most one of clipnorm, clipvalue and global_clipnorm")
        self._learning_rate = check_learning_rate(learning_rate)
        self.clipnorm = _check_option(clipnorm, "clipnorm")
        self.clipvalue = _check_option(clipvalue, "clipvalue")
        self.global_clipnorm = _check_option(global_clipnorm, "global_clipnorm")
        self.weight_decay = _check_option(weight_decay, "weight_decay")
        self.iterations = 0
        self.slots: dict[str, list[np.ndarray]] = {}
        self._built_for: list[np.ndarray] = []  # the parameter arrays the slots belong to, in order

    # --- the learning rate -------------------------------------------------------------------
    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step as Keras reads it: a float32 value (of the number, or of the
        schedule at ``iterations``), returned as a Python float."""
        if isinstance(self._learning_rate, schedules.LearningRateSchedule):
            return float(self._learning_rate(self.iterations))
        return float(np.float32(self._learning_rate))

    @learning_rate.setter
    def learning_rate(self, value) -> None:
        """Set a new number (callbacks such as ``ReduceLROnPlateau`` do) or schedule. As in Keras, an optimizer
        created with a schedule refuses a plain number: its rate is the schedule's."""
        if (isinstance(self._learning_rate, schedules.LearningRateSchedule)
                and not isinstance(value, schedules.LearningRateSchedule)):
            raise TypeError("this optimizer was created with a LearningRateSchedule as its learning_rate, so its "
                            "learning rate is not settable; create it with a number to change it as it trains")
        self._learning_rate = check_learning_rate(value)

    # --- state -------------------------------------------------------------------------------
    def build(self, params) -> None:
        """Create the slot arrays of ``slot_names`` for each parameter (zeros unless ``new_slot`` says)."""
        self._built_for = list(params)
        self.slots = {name: [self.new_slot(name, p) for p in self._built_for] for name in self.active_slots()}

    def new_slot(self, name: str, param: np.ndarray) -> np.ndarray:
        """The initial value of slot ``name`` for ``param``: zeros (Adagrad starts its sums elsewhere)."""
        return np.zeros_like(param)

    def _follow(self, params) -> None:
        """Make the slots belong to ``params``, the arrays to update this step.

        Slots belong to parameter arrays (matched by identity: ``model.trainable_params()`` returns the same
        arrays every step). When the trainable set changes — a layer frozen or unfrozen with
        ``layer.trainable``, a model rebuilt — the arrays still trained keep their slots (their momentum carries
        on), newly trained arrays start from fresh slots, and the slots of arrays no longer trained are dropped
        (unfreezing them later starts them afresh). ``iterations`` carries on: it counts this optimizer's
        steps, shared by all parameters as in Keras."""
        if len(params) == len(self._built_for) and all(p is q for p, q in zip(params, self._built_for)):
            return
        position = {id(p): i for i, p in enumerate(self._built_for)}  # ids are unique: _built_for keeps them alive
        slots = {}
        for name in self.active_slots():
            previous = self.slots.get(name, [])
            slots[name] = []
            for p in params:
                i = position.get(id(p))
                kept = i is not None and i < len(previous) and previous[i].shape == p.shape
                slots[name].append(previous[i] if kept else self.new_slot(name, p))
        self._built_for, self.slots = list(params), slots

    def active_slots(self) -> tuple[str, ...]:
        return self.slot_names

    def get_state(self) -> dict:
        """``{"iterations": int, "<slot>/<index>": array, ...}``: everything needed to resume exactly."""
        state = {"iterations": self.iterations}
        for name, arrays in self.slots.items():
            for index, array in enumerate(arrays):
                state[f"{name}/{index}"] = array.copy()
        return state

    def set_state(self, state: dict) -> None:
        self.iterations = int(state["iterations"])
        for name, arrays in self.slots.items():
            for index, array in enumerate(arrays):
                array[...] = state[f"{name}/{index}"]

    # --- one step ----------------------------------------------------------------------------
    def apply(self, params, grads) -> None:
        params, grads = list(params), list(grads)
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameters but {len(grads)} gradients")
        if self.active_slots():
            self._follow(params)
        grads = self._clip([np.asarray(g) for g in grads])
        learning_rate = np.float32(self.learning_rate)  # once per step: a schedule is evaluated here
        self.before_updates(params)
        for index, (w, g) in enumerate(zip(params, grads)):
            lr = w.dtype.type(learning_rate)
            g = g.astype(w.dtype, copy=False)
            if self.weight_decay:
                w -= w * w.dtype.type(np.float32(self.weight_decay)) * lr
            self.update(index, w, g, lr)
        self.iterations += 1

    def before_updates(self, params) -> None:
        """Work shared by all parameters of a step, before their updates (Nadam's momentum product)."""

    def _clip(self, grads):
        """Keras's clipping, operation for operation (``tf.clip_by_norm``, ``clip_by_global_norm``)."""
        if self.clipnorm:
            return [self._clip_by_norm(g) for g in grads]
        if self.global_clipnorm:
            return self._clip_by_global_norm(grads)
        if self.clipvalue:
            v = self.clipvalue
            return [np.clip(g, g.dtype.type(-v), g.dtype.type(v)) for g in grads]
        return grads

    def _clip_by_norm(self, g):
        """``g * c / max(||g||, c)`` in ``g``'s dtype (``tf.clip_by_norm``)."""
        dtype = g.dtype.type
        norm = np.sqrt(np.sum(g * g))
        return (g * dtype(self.clipnorm)) / np.maximum(norm, dtype(self.clipnorm))

    def _clip_by_global_norm(self, grads):
        """``g * c * min(1 / ||G||, 1 / c)`` for every ``g``, in the gradients' dtype, with Keras's
        ``+ (norm - norm)``: it makes the scale NaN when the norm is (a zero norm gives 1 / 0 = inf, and the
        minimum picks 1 / c)."""
        dtype = grads[0].dtype.type if grads else np.float32
        squared_norms = np.array([np.sum(np.square(g)) for g in grads], dtype=dtype)
        norm = np.sqrt(np.sum(squared_norms))
        c = dtype(self.global_clipnorm)
        with np.errstate(divide="ignore"):
            scale = c * np.minimum(dtype(1) / norm, dtype(1) / c)
        scale = scale + (norm - norm)
        return [g * g.dtype.type(scale) for g in grads]

    def update(self, index: int, w: np.ndarray, g: np.ndarray, lr) -> None:
        raise NotImplementedError

    def get_config(self) -> dict:
        learning_rate = self._learning_rate
        if isinstance(learning_rate, schedules.LearningRateSchedule):
            learning_rate = schedules.serialize(learning_rate)
        config = {"learning_rate": learning_rate}
        for key in ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Optimizer":
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)
