"""Training checkpoints: stop anywhere (even ``kill -9``), resume, and end with bit-identical weights.

A checkpoint is one numcnn model file (``checkpoint.npz``, written atomically: a crash mid-write leaves the
previous checkpoint intact) holding the weights, the optimizer's state, and in its header the training
position: epoch, step within the epoch, the shuffling generator's state *at the start of the epoch* (a resumed
run redraws the same order and skips the batches already done), the epoch's running totals and the history.

Everything else that changes while training is in the file too: BatchNormalization's moving statistics are
weights (in ``get_weights()``), and the state of every layer's own generator (``layer.rng``: Dropout's masks)
is saved in the header, so a resumed run draws the masks the uninterrupted run would have drawn.
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
    rng_state: dict | None = None
    history: History = field(default_factory=History)

    def next_epoch(self, epoch: int, rng_state: dict, totals: RunningMeans) -> None:
        """Start epoch ``epoch``; ``rng_state`` is the shuffling generator's state before its permutation."""
        self.epoch, self.step, self.totals, self.rng_state = epoch, 0, totals, rng_state

    def to_json(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "totals": self.totals.to_json(), "rng_state": self.rng_state,
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

    def save(self, model, state: TrainingState) -> None:
        training = copy.deepcopy(state.to_json())
        training["layer_rng_states"] = layer_rng_states(model)
        save_model(model, self.path, include_optimizer=True, extra={"training": training})

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
                                  history)
            restore_layer_rng_states(model, saved.get("layer_rng_states", {}))
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{self.path}: not a numcnn training checkpoint ({error})") from None
        if state.rng_state is not None:
            rng.bit_generator.state = state.rng_state
        return state


def _saved_totals(model, saved: dict) -> RunningMeans:
    """The epoch's running sums; checkpoints of numcnn 0.1 kept only the loss and an accuracy count."""
    if "totals" in saved:
        return RunningMeans.from_json(model.metrics, saved["totals"])
    return RunningMeans(model.metrics, saved["loss_sum"], saved["seen"],
                        {name: (saved["correct"], saved["seen"]) for name in model.metrics})


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
