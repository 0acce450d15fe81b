"""Training checkpoints: stop anywhere (even ``kill -9``), resume, and end with bit-identical weights.

A checkpoint is one numcnn model file (``checkpoint.npz``, written atomically: a crash mid-write leaves the
previous checkpoint intact) holding the weights, the optimizer's state, and in its header the training
position: epoch, step within the epoch, the shuffling generator's state *at the start of the epoch* (a resumed
run redraws the same order and skips the batches already done), the epoch's running totals and the history.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import ModelFileError
from .io import read_arrays_file, save_model


@dataclass
class TrainingState:
    epoch: int = 0
    step: int = 0            # batches done in this epoch
    loss_sum: float = 0.0    # Σ batch loss x batch size, this epoch
    correct: int = 0
    seen: int = 0
    rng_state: dict | None = None
    history: "object" = field(default=None)

    def __post_init__(self):
        if self.history is None:
            from .model import History

            self.history = History()

    def add_batch(self, loss: float, size: int, correct: int) -> None:
        self.step += 1
        self.loss_sum += loss * size
        self.seen += size
        self.correct += correct

    def next_epoch(self, epoch: int, rng_state: dict) -> None:
        """Start epoch ``epoch``; ``rng_state`` is the shuffling generator's state before its permutation."""
        self.epoch, self.step, self.loss_sum, self.correct, self.seen = epoch, 0, 0.0, 0, 0
        self.rng_state = rng_state

    def to_json(self) -> dict:
        return {"epoch": self.epoch, "step": self.step, "loss_sum": self.loss_sum, "correct": self.correct,
                "seen": self.seen, "rng_state": self.rng_state,
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
        save_model(model, self.path, include_optimizer=True, extra={"training": copy.deepcopy(state.to_json())})

    def restore(self, model, rng: np.random.Generator) -> TrainingState:
        """Load weights and optimizer state into ``model``, the generator state into ``rng``; return the position."""
        from .model import History

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
            history = History()
            history.epoch = list(saved["history"]["epoch"])
            history.history = {k: list(v) for k, v in saved["history"]["history"].items()}
            state = TrainingState(saved["epoch"], saved["step"], saved["loss_sum"], saved["correct"], saved["seen"],
                                  saved["rng_state"], history)
        except (KeyError, TypeError, ValueError) as error:
            raise ModelFileError(f"{self.path}: not a numcnn training checkpoint ({error})") from None
        if state.rng_state is not None:
            rng.bit_generator.state = state.rng_state
        return state
