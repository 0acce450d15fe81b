"""Training checkpoints: stop anywhere (even ``kill -9``), resume, and end with bit-identical weights.

A checkpoint is one numcnn model file (``checkpoint.npz``, written atomically: a crash mid-write leaves the
previous checkpoint intact) holding the weights, the optimizer's state, and in its header the training
position: epoch, step within the epoch, the shuffling generator's state *at the start of the epoch* (a resumed
run redraws the same order and skips the batches already done), the epoch's running totals and the history.

Everything else that changes while training is in the file too: BatchNormalization's moving statistics are
weights (in ``get_weights()``), and the state of every layer's own generator (``layer.rng``: Dropout's masks)
is saved in the header, so a resumed run draws the masks the uninterrupted run would have drawn. So is the state
of the callbacks that remember earlier epochs (``Callback.get_state``: ``EarlyStopping``'s ``wait`` and ``best``,
``ReduceLROnPlateau``'s counters; its reduced learning rate is in the optimizer's config), JSON in the header and
weights (``EarlyStopping(restore_best_weights=True)``'s) as arrays: a resumed run stops or reduces the learning
rate exactly when the uninterrupted one would, and a run that had stopped stays stopped.

With ``fit(steps_per_epoch=...)`` an epoch may end inside a pass over the data (Keras goes on from there in the
next epoch), so the position has two counts: ``step``, the batches done in this epoch, and ``pass_step``, the
batches done in the current pass, whose shuffling order ``rng_state`` redraws.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelFileError
from .io import read_arrays_file, save_model
from .training.callbacks import History
from .training.metrics import RunningMeans


@dataclass
class TrainingState:
    epoch: int = 0
    step: int = 0                # batches done in this epoch
    totals: RunningMeans = field(default_factory=RunningMeans)  # the epoch's running loss and metric sums
    rng_state: dict | None = None  # the shuffling generator's state before the current pass's permutation
    history: History = field(default_factory=History)
    pass_step: int = 0           # batches done in the current pass over the data (= step without steps_per_epoch)
    stopped: bool = False        # a callback stopped training (model.stop_training): a resumed fit stays stopped
    callback_states: dict = field(default_factory=dict)  # CallbackList.get_states() of the last save

    def next_epoch(self, epoch: int, totals: RunningMeans) -> None:
        """Start epoch ``epoch`` (the pass over the data goes on unless ``next_pass`` was called)."""
        self.epoch, self.step, self.totals = epoch, 0, totals

    def next_pass(self, rng_state: dict) -> None:
        """Start a new pass; ``rng_state`` is the shuffling generator's state before its permutation."""
        self.pass_step, self.rng_state = 0, rng_state

    def to_json(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "pass_step": self.pass_step, "stopped": self.stopped,
                "totals": self.totals.to_json(), "rng_state": self.rng_state,
                "history": {"epoch": self.history.epoch, "history": self.history.history}}


class Checkpointer:
    """Saves to ``directory/checkpoint.npz`` after every epoch and every ``every`` steps (if given)."""

    def __init__(self, directory, every: int | None = None):
        self.path = Path(directory) / "checkpoint.npz"
        if every is not None and (not isinstance(every, int) or every < 1):
            raise ValueError(f"checkpoint_every must be a positive integer, got {every!r}")
        self.every = every

    def due(self, step: int) -> bool:
        return self.every is not None and step % self.every == 0

    def save(self, model, state: TrainingState, callbacks=None) -> None:
        """Write the checkpoint; ``callbacks`` (a ``CallbackList``) adds the states of its callbacks."""
        training = copy.deepcopy(state.to_json())
        training["layer_rng_states"] = layer_rng_states(model)
        callback_states, arrays = split_arrays(callbacks.get_states() if callbacks is not None else {})
        training["callbacks"] = callback_states
        save_model(model, self.path, include_optimizer=True, extra={"training": training}, extra_arrays=arrays)

    def restore(self, model, rng: np.random.Generator) -> TrainingState:
        """Load weights and optimizer state into ``model``, the generator state into ``rng``; return the position."""
        if not self.path.is_file():
            raise ModelFileError(f"{self.path}: no checkpoint to resume from")
        header, arrays = read_arrays_file(self.path)
        try:
            saved = header["extra"]["training"]
            model.set_weights([arrays[f"weight_{i}"] for i in range(int(header["n_weights"]))])
            slots = {key[len("optimizer/"):]: value for key, value in arrays.items() if key.startswith("optimizer/")}
            iterations = int(header["compile"]["iterations"])
            if slots:
                model.optimizer.build(model.trainable_params())
                model.optimizer.set_state({"iterations": iterations, **slots})
            else:
                model.optimizer.iterations = iterations
            learning_rate = header["compile"]["optimizer"]["config"].get("learning_rate")
            if not isinstance(learning_rate, dict):  # a number, maybe changed by a callback (a schedule is fixed)
                model.optimizer.learning_rate = learning_rate
            history = History()
            history.epoch = list(saved["history"]["epoch"])
            history.history = {k: list(v) for k, v in saved["history"]["history"].items()}
            state = TrainingState(saved["epoch"], saved["step"], _saved_totals(model, saved), saved["rng_state"],
                                  history, pass_step=saved.get("pass_step", saved["step"]),
                                  stopped=saved.get("stopped", False),
                                  callback_states=join_arrays(saved.get("callbacks", {}), arrays))
            restore_layer_rng_states(model, saved.get("layer_rng_states", {}))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{self.path}: not a numcnn training checkpoint ({error})") from None
        if state.rng_state is not None:
            rng.bit_generator.state = state.rng_state
        return state


def _saved_totals(model, saved: dict) -> RunningMeans:
    """The epoch's running sums; checkpoints of numcnn 0.1 kept only the loss and an accuracy count."""
    if "totals" in saved:
        return RunningMeans.from_json(model.metrics, model.weighted_metrics, saved["totals"])
    return RunningMeans(model.metrics, (), saved["loss_sum"], saved["seen"],
                        {name: (saved["correct"], saved["seen"]) for name in model.metrics})


# A callback state's list of arrays (EarlyStopping's best weights) goes into the file as arrays; the header keeps
# {ARRAYS_MARK: count} in its place.
ARRAYS_MARK = "__arrays__"


def split_arrays(callback_states: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """``(JSON-ready states, {"extra/callbacks/<callback>/<key>/<i>": array})``."""
    states, arrays = {}, {}
    for name, state in callback_states.items():
        states[name] = {}
        for key, value in state.items():
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
                arrays.update({f"extra/callbacks/{name}/{key}/{i}": v for i, v in enumerate(value)})
                value = {ARRAYS_MARK: len(value)}
            states[name][key] = value
    return states, arrays


def join_arrays(states: dict, arrays: dict[str, np.ndarray]) -> dict:
    """The inverse of ``split_arrays``."""
    joined = {}
    for name, state in states.items():
        joined[name] = {}
        for key, value in state.items():
            if isinstance(value, dict) and ARRAYS_MARK in value:
                value = [arrays[f"extra/callbacks/{name}/{key}/{i}"] for i in range(int(value[ARRAYS_MARK]))]
            joined[name][key] = value
    return joined


def layer_rng_states(model) -> dict:
    """``{layer name: its generator's state}`` for every layer that draws random numbers (JSON-ready dicts)."""
    return {layer.name: layer.rng.bit_generator.state for layer in model.layers if layer.rng is not None}


def restore_layer_rng_states(model, states: dict) -> None:
    """Put each saved generator state back; a layer with a generator but no saved state could not resume
    bit-identically, so that is an error (``KeyError``, reported as a ``ModelFileError``)."""
    for layer in model.layers:
        if layer.rng is None:
            continue
        if layer.name not in states:
            raise KeyError(f"no saved generator state for layer {layer.name!r}")
        layer.rng.bit_generator.state = states[layer.name]
