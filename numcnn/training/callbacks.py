"""Keras 3's callback protocol and the common callbacks (keras/src/callbacks/*.py), for ``Sequential.fit``.

A callback is an object whose methods ``fit`` calls at fixed points (the same ones as Keras)::

    set_model(model); set_params({"verbose", "epochs", "steps"})
    on_train_begin(logs)
        on_epoch_begin(epoch, logs)
            on_train_batch_begin(batch, logs)  ...  on_train_batch_end(batch, logs)   # logs: running means
            (validation: on_test_begin, on_test_batch_begin/end, on_test_end)
        on_epoch_end(epoch, logs)          # logs: the epoch's loss and metrics, val_* after validation
    on_train_end(logs)

Setting ``model.stop_training = True`` ends training after the current batch (checked after every batch and
every epoch). Epochs and batches count from 0. The logs of one call are one dict shared by all callbacks in
order, so a callback can add to it (``ReduceLROnPlateau`` and ``LearningRateScheduler`` add
``"learning_rate"``, which then reaches ``History`` — added last, as Keras does).

A callback whose decisions depend on earlier epochs (``EarlyStopping``'s ``wait`` and ``best``,
``ReduceLROnPlateau``'s, ``ModelCheckpoint``'s ``best``) says so with ``get_state()`` / ``set_state(state)``:
``fit(checkpoint_dir=...)`` saves that state in every checkpoint and a resumed fit puts it back after
``on_train_begin``, so the resumed run stops, reduces and saves exactly when the uninterrupted one would.

Monitored values are compared as Keras compares them: in float32 (Keras's ``ops.less``/``ops.greater`` turn
Python floats into float32 tensors), with ``min_delta`` subtracted from the current value in float64 first.
``tests/test_training_callbacks.py`` measures this and every rule below against Keras's own callbacks, fed the
same scripted logs (e.g. 0.2999999999 after 0.3 is no improvement for Keras: both round to one float32).
"""

from __future__ import annotations

import collections
import csv
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from . import metrics as metrics_module


def _say(message: str) -> None:
    print(message, file=sys.stderr)


class Callback:
    """Base class: every hook does nothing; ``on_train_batch_begin/end`` call ``on_batch_begin/end``."""

    def __init__(self):
        self.params = None
        self.model = None

    def set_params(self, params: dict) -> None:
        self.params = params

    def set_model(self, model) -> None:
        self.model = model

    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_train_batch_begin(self, batch, logs=None): self.on_batch_begin(batch, logs=logs)
    def on_train_batch_end(self, batch, logs=None): self.on_batch_end(batch, logs=logs)
    def on_test_batch_begin(self, batch, logs=None): pass
    def on_test_batch_end(self, batch, logs=None): pass
    def on_predict_batch_begin(self, batch, logs=None): pass
    def on_predict_batch_end(self, batch, logs=None): pass
    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_test_begin(self, logs=None): pass
    def on_test_end(self, logs=None): pass
    def on_predict_begin(self, logs=None): pass
    def on_predict_end(self, logs=None): pass

    def get_state(self) -> dict | None:
        """What this callback must carry over a checkpoint and resume (JSON values; a list of arrays for
        weights), or None when it keeps nothing from epoch to epoch (the default)."""
        return None

    def set_state(self, state: dict) -> None:
        """Put back what ``get_state`` returned (called after ``on_train_begin`` when a fit resumes)."""
        for key, value in state.items():
            setattr(self, key, value)


def _pythonify(logs) -> dict:
    """Logs as Keras hands them to callbacks: keys sorted, values as Python floats where they convert."""
    result = {}
    for key, value in sorted((logs or {}).items()):
        try:
            result[key] = float(value)
        except (TypeError, ValueError):
            result[key] = value
    return result


class History(Callback):
    """Per-epoch logs of ``fit``, as in Keras: ``history.history["loss"]``, ``history.epoch``.

    ``fit`` makes a new one per call (unless one is passed in ``callbacks``) and returns it; it is also
    ``model.history``. A resumed fit (``resume=True``) starts it with the epochs already in the checkpoint."""

    def __init__(self):
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.append(epoch, logs or {})
        if self.model is not None:
            self.model.history = self

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))


class CallbackList:
    """The callbacks of one ``fit``/``evaluate``/``predict`` call, called in order, with a ``History`` added
    last when asked (``add_history``) unless the list has one."""

    def __init__(self, callbacks=None, add_history=False, model=None, history: History | None = None, **params):
        self.callbacks = list(callbacks or [])
        for callback in self.callbacks:
            if not isinstance(callback, Callback):
                raise TypeError(f"callbacks must be numcnn.callbacks.Callback objects, got {type(callback).__name__}")
        self.history = next((c for c in self.callbacks if isinstance(c, History)), None)
        if self.history is None and add_history:
            self.history = history if history is not None else History()
            self.callbacks.append(self.history)
        self.params = params
        for callback in self.callbacks:
            callback.set_params(params)
        if model is not None:
            if self.history is not None:
                model.history = self.history
            for callback in self.callbacks:
                callback.set_model(model)

    def get_states(self) -> dict:
        """``{key: state}`` of every callback with a state, keyed by class name and rank among its class
        (``"EarlyStopping"``, ``"EarlyStopping_1"``, ...)."""
        return {key: state for key, callback in self._keyed() if (state := callback.get_state()) is not None}

    def set_states(self, states: dict) -> None:
        """Put saved states back; a stateful callback the checkpoint has no state for starts afresh, with a
        warning (the resumed run may then stop or reduce later than the uninterrupted one)."""
        for key, callback in self._keyed():
            if key in states:
                callback.set_state(states[key])
            elif callback.get_state() is not None:
                warnings.warn(f"the checkpoint has no state for callback {key}: it starts afresh", stacklevel=3)

    def _keyed(self):
        counts: dict[str, int] = {}
        for callback in self.callbacks:
            name = type(callback).__name__
            counts[name] = counts.get(name, -1) + 1
            yield (name if counts[name] == 0 else f"{name}_{counts[name]}"), callback

    @property
    def stops_on_non_finite_loss(self) -> bool:
        """Whether a callback ends training on a NaN/inf loss (``TerminateOnNaN``): then ``fit`` reports the
        step to the callbacks instead of raising ``TrainingDivergedError``."""
        return any(isinstance(callback, TerminateOnNaN) for callback in self.callbacks)

    def _call(self, hook: str, *args, logs=None) -> None:
        logs = _pythonify(logs)
        for callback in self.callbacks:
            getattr(callback, hook)(*args, logs=logs)

    def on_train_begin(self, logs=None): self._call("on_train_begin", logs=logs)
    def on_train_end(self, logs=None): self._call("on_train_end", logs=logs)
    def on_epoch_begin(self, epoch, logs=None): self._call("on_epoch_begin", epoch, logs=logs)
    def on_epoch_end(self, epoch, logs=None): self._call("on_epoch_end", epoch, logs=logs)
    def on_train_batch_begin(self, batch, logs=None): self._call("on_train_batch_begin", batch, logs=logs)
    def on_train_batch_end(self, batch, logs=None): self._call("on_train_batch_end", batch, logs=logs)
    def on_test_begin(self, logs=None): self._call("on_test_begin", logs=logs)
    def on_test_end(self, logs=None): self._call("on_test_end", logs=logs)
    def on_test_batch_begin(self, batch, logs=None): self._call("on_test_batch_begin", batch, logs=logs)
    def on_test_batch_end(self, batch, logs=None): self._call("on_test_batch_end", batch, logs=logs)
    def on_predict_begin(self, logs=None): self._call("on_predict_begin", logs=logs)
    def on_predict_end(self, logs=None): self._call("on_predict_end", logs=logs)
    def on_predict_batch_begin(self, batch, logs=None): self._call("on_predict_batch_begin", batch, logs=logs)

    def on_predict_batch_end(self, batch, logs=None):
        for callback in self.callbacks:  # the outputs are arrays: not pythonified
            callback.on_predict_batch_end(batch, logs=logs)


# ----------------------------------------------------------------------------------------------
# Callbacks that watch a logged value
# ----------------------------------------------------------------------------------------------
class MonitorCallback(Callback):
    """Shared by EarlyStopping, ModelCheckpoint and ReduceLROnPlateau: which value, which direction is better.

    ``mode="auto"`` takes the direction from the monitored name (``val_`` removed): "loss" is minimised, a
    compiled metric goes its own way (accuracies up, errors down); anything else is an error, as in Keras."""

    def __init__(self, monitor="val_loss", mode="auto", baseline=None, min_delta=0):
        super().__init__()
        if mode not in ("auto", "min", "max"):
            warnings.warn(f"{type(self).__name__} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3)
            mode = "auto"
        self.monitor, self.mode = monitor, mode
        self.best = baseline
        self.min_delta = abs(min_delta)
        self.monitor_op = None  # np.less or np.greater, set on first use (it needs the model's metrics)

    def _set_monitor_op(self):
        if self.mode == "min":
            self.monitor_op = np.less
        elif self.mode == "max":
            self.monitor_op = np.greater
        else:
            name = self.monitor.removeprefix("val_")
            if name == "loss":
                self.monitor_op = np.less
            elif name in getattr(self.model, "metrics", []):
                self.monitor_op = np.greater if metrics_module.direction(name) == "up" else np.less
            else:
                raise ValueError(f"{type(self).__name__} callback received monitor={self.monitor}, but numcnn "
                                 f"cannot tell whether that metric should be maximized or minimized. Pass "
                                 f"mode='max' in order to monitor based on the highest metric value, or pass "
                                 f"mode='min' in order to use the lowest value.")
        if self.monitor_op is np.less:
            self.min_delta *= -1

    def _is_improvement(self, value, reference) -> bool:
        if reference is None:
            return True
        return bool(self.monitor_op(np.float32(value - self.min_delta), np.float32(reference)))


class EarlyStopping(MonitorCallback):
    """Stop training when the monitored value has not improved for ``patience`` epochs (Keras 3's rules).

    An epoch improves when ``value - min_delta`` beats the best so far (minimising: ``value + min_delta <
    best``). With ``baseline``, epochs that improve but do not beat the baseline still count towards
    ``patience``. ``start_from_epoch`` epochs are ignored at first. ``restore_best_weights`` puts back the weights
    of the best epoch at the end of training (even when training was not stopped early)."""

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto", baseline=None,
                 restore_best_weights=False, start_from_epoch=0):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience, self.verbose, self.baseline = patience, verbose, baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait, self.stopped_epoch, self.best_weights, self.best_epoch = 0, 0, None, 0

    def on_train_begin(self, logs=None):
        self.wait, self.stopped_epoch, self.best, self.best_weights, self.best_epoch = 0, 0, None, None, 0

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights, self.best_epoch = self.model.get_weights(), epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def get_state(self):
        return {"wait": self.wait, "stopped_epoch": self.stopped_epoch, "best": self.best,
                "best_epoch": self.best_epoch, "best_weights": self.best_weights}

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            _say(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                          f"Available metrics are: {','.join(logs)}", stacklevel=2)
        return value


# Names model.save understands (numcnn.io.save): a full model, or Keras's weights-only file.
MODEL_SUFFIXES = (".keras", ".npz")
WEIGHTS_SUFFIX = ".weights.h5"


class ModelCheckpoint(MonitorCallback):
    """Save the model (or only its weights) after every epoch or every ``save_freq`` batches.

    ``filepath`` may hold ``{epoch}`` (counted from 1) and any log key, with formats: ``"m-{epoch:02d}-
    {val_loss:.2f}.keras"``. The suffix picks the format (``model.save``): ``.keras`` a Keras 3 file, ``.npz``
    numcnn's own; with ``save_weights_only`` Keras's ``.weights.h5``. Every write is atomic (a temporary file
    renamed over the target). ``save_best_only`` saves only when the monitored value improves on the best so
    far (or on ``initial_value_threshold``)."""

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False, save_weights_only=False,
                 mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__(monitor, mode, initial_value_threshold)
        self.filepath = str(filepath)
        self.verbose, self.save_best_only, self.save_weights_only = verbose, save_best_only, save_weights_only
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq < 1):
            raise ValueError(f"Unrecognized save_freq: {save_freq}. Expected save_freq are 'epoch' or integer values")
        self.save_freq = save_freq
        if save_weights_only and not self.filepath.endswith(WEIGHTS_SUFFIX):
            raise ValueError(f"When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must "
                             f"end in `{WEIGHTS_SUFFIX}` (Keras weights format). Received: filepath={self.filepath}")
        if not save_weights_only and not self.filepath.endswith(MODEL_SUFFIXES):
            raise ValueError(f"The filepath provided must end in `.keras` (Keras model format) or `.npz` (numcnn's "
                             f"format). Received: filepath={self.filepath}")
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = None
        self._current_epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def get_state(self):
        return {"best": self.best, "_batches_seen_since_last_saving": self._batches_seen_since_last_saving,
                "_last_batch_seen": self._last_batch_seen}

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    def _should_save_on_batch(self, batch) -> bool:
        if self.save_freq == "epoch":
            return False
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            added = batch + 1  # a new epoch started
        else:
            added = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += added
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _should_save(self, epoch, logs, filepath) -> bool:
        if not self.save_best_only:
            if self.verbose > 0:
                _say(f"Epoch {epoch + 1}: saving model to {filepath}")
            return True
        if self.monitor_op is None:
            self._set_monitor_op()
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=2)
            return True
        best = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                _say(f"Epoch {epoch + 1}: {self.monitor} improved from {best} to {current:.5f}, saving model to "
                     f"{filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            _say(f"Epoch {epoch + 1}: {self.monitor} did not improve from {best}")
        return False

    def _file_path(self, epoch, batch, logs) -> str:
        logs = logs or {}
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as error:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". Reason: {error}') from None

    def _save_model(self, epoch, batch, logs) -> None:
        filepath = self._file_path(epoch, batch, logs)
        if Path(filepath).is_dir():
            raise IsADirectoryError(f"Please specify a non-directory filepath for ModelCheckpoint. Filepath used is "
                                    f"an existing directory: {filepath}")
        if self._should_save(epoch, logs, filepath):
            Path(filepath).parent.mkdir(parents=True, exist_ok=True)
            self.model.save(filepath, overwrite=True)  # the suffix decides; .weights.h5 holds weights only


class ReduceLROnPlateau(MonitorCallback):
    """Multiply the learning rate by ``factor`` when the monitored value has not improved for ``patience``
    epochs, then wait ``cooldown`` epochs; never below ``min_lr``. Logs ``learning_rate`` every epoch."""

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto", min_delta=1e-4,
                 cooldown=0, min_lr=0.0):
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.factor, self.min_lr, self.patience, self.verbose = factor, min_lr, patience, verbose
        self.cooldown, self.cooldown_counter, self.wait = cooldown, 0, 0

    def on_train_begin(self, logs=None):
        self.best, self.cooldown_counter, self.wait = None, 0, 0

    def get_state(self):
        """The counters and the best value (the reduced learning rate is the optimizer's: saved with it)."""
        return {"best": self.best, "cooldown_counter": self.cooldown_counter, "wait": self.wait}

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _reduce_learning_rate(self, epoch) -> bool:
        optimizer = self.model.optimizer
        old = float(optimizer.learning_rate)  # a float32 value, as Keras reads its variable
        if old > float(np.float32(self.min_lr)):
            new = max(old * self.factor, self.min_lr)
            optimizer.learning_rate = new
            if self.verbose > 0:
                _say(f"Epoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to {new}.")
            return True
        return False

    def on_epoch_end(self, epoch, logs=None):
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs)}.", stacklevel=2)
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best, self.wait = current, 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience and self._reduce_learning_rate(epoch):
                self.cooldown_counter, self.wait = self.cooldown, 0


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of every epoch to ``schedule(epoch, lr)`` (or ``schedule(epoch)``);
    logs ``learning_rate`` at the end of the epoch."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule, self.verbose = schedule, verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = self.model.optimizer
        try:
            learning_rate = self.schedule(epoch, float(optimizer.learning_rate))
        except TypeError:  # a schedule of the epoch alone, as Keras allows
            learning_rate = self.schedule(epoch)
        if not isinstance(learning_rate, (float, np.float32, np.float64)):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {learning_rate}")
        optimizer.learning_rate = float(learning_rate)
        if self.verbose > 0:
            _say(f"Epoch {epoch + 1}: LearningRateScheduler setting learning rate to {learning_rate}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class CSVLogger(Callback):
    """Write one CSV row per epoch: ``epoch`` then the log keys in sorted order (the ``val_`` columns are there
    from the first row even before any validation, as Keras writes them). ``append=True`` continues a file."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.sep, self.filename, self.append = separator, str(filename), append
        self.writer, self.keys, self.append_header, self.csv_file = None, None, True, None

    def on_train_begin(self, logs=None):
        if self.append:
            if Path(self.filename).exists():
                with open(self.filename) as handle:
                    self.append_header = not bool(len(handle.readline()))
            mode = "a"
        else:
            mode = "w"
        if self.csv_file and not self.csv_file.closed:
            self.csv_file.close()
        self.csv_file = open(self.filename, mode)
        self.writer, self.keys = None, None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}

        def handle_value(value):
            if isinstance(value, str):
                return value
            if isinstance(value, collections.abc.Iterable) and not (isinstance(value, np.ndarray) and value.ndim == 0):
                return f'"[{", ".join(map(str, value))}]"'
            return value

        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys.extend([f"val_{key}" for key in self.keys])
        if not self.writer:
            class Dialect(csv.excel):
                delimiter = self.sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys, dialect=Dialect)
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, handle_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite (``raise_error=True``: raise a
    ``RuntimeError`` instead). numcnn never applies such a step: the weights stay those of the last good one."""

    def __init__(self, raise_error: bool = False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and (math.isnan(loss) or math.isinf(loss)):
            if self.raise_error:
                raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. Terminating "
                                   f"training immediately.")
            _say(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback from plain functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: ...)``."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        functions = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                     "on_train_begin": on_train_begin, "on_train_end": on_train_end,
                     "on_train_batch_begin": on_train_batch_begin, "on_train_batch_end": on_train_batch_end, **kwargs}
        for hook, function in functions.items():
            if function is not None:
                if not hasattr(Callback, hook):
                    raise ValueError(f"LambdaCallback: unknown hook {hook!r}")
                setattr(self, hook, function)


__all__ = ["Callback", "CallbackList", "History", "EarlyStopping", "ModelCheckpoint", "ReduceLROnPlateau",
           "LearningRateScheduler", "CSVLogger", "TerminateOnNaN", "LambdaCallback", "MonitorCallback"]
