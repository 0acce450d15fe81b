"""The training loop behind ``Sequential.fit`` / ``evaluate`` / ``predict`` / ``*_on_batch``, as plain functions
of a model (anything with ``Sequential``'s API: nothing here imports ``numcnn.model``).

One training step is two functions, so that a data-parallel fit can reuse the whole loop and change only the
gradient reduction between them::

    result = compute_gradients(model, x, y, sample_weight)   # forward, loss, backward -> BatchResult
    result = reduce_gradients(result)                         # e.g. an all-reduce across workers (optional)
    apply_gradients(model, result)                            # divergence check, then the optimizer's step

``fit(..., reduce_gradients=f)`` calls ``f`` on every batch's ``BatchResult``. Each worker's loss and gradients
are means over its own ``result.size`` examples, so the global mean is ``sum_i size_i g_i / sum_i size_i``.
``fit(..., shard_batch=s)`` makes each worker compute on ``s(batch)``, its part of every batch's example indices
(the reduction then returns the whole batch's result: its loss, gradients, output and size), and
``save_checkpoints=False`` makes a worker read ``checkpoint_dir`` on resume without ever writing it
(``numcnn.distributed``: only rank 0 writes).

Keras's semantics, kept here (each checked against Keras in ``tests/test_training_callbacks.py`` and
``tests/test_keras_habits_more.py``):

* the epoch's ``loss`` is the mean of the batch losses, each taken before its batch's update, weighted by batch
  size; metrics are means over every example of the epoch (``metrics.RunningMeans``);
* ``validation_split`` takes the *last* fraction of the arrays as validation data, before any shuffling;
* ``class_weight``/``sample_weight`` weight the loss as ``sum_n w_n l_n / N`` (``weighting``) and the
  ``weighted_metrics``, not the ``metrics``;
* ``initial_epoch`` is the epoch to start from (``fit(epochs=10, initial_epoch=7)`` runs epochs 7, 8, 9);
* ``steps_per_epoch``: an epoch is that many batches, and the next one goes on in the same pass over the
  (shuffled) data; a new pass (a new order) starts when the data runs out, and an epoch that reaches the end of
  a pass ends there (with 40 examples in 5 batches, ``steps_per_epoch=3`` runs epochs of 3, 2, 3, 2, ... batches);
  ``validation_steps`` / ``evaluate(steps=...)``: the first batches only;
* ``evaluate`` returns the loss alone as a float when there are no metrics, else a list (``keras_return``);
* callbacks are called as ``callbacks`` describes; ``model.stop_training = True`` ends training after the
  current batch.

numcnn's own additions: ``seed`` (the shuffling generator, so that a run is reproducible bit for bit) and
``checkpoint_dir`` / ``checkpoint_every`` / ``resume`` (``numcnn.checkpoint``: a killed run resumes to the same
weights, bit for bit, with the callbacks' state — ``Callback.get_state`` — put back, so it also stops and
reduces the learning rate when the uninterrupted run does).
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from .. import validation
from ..checkpoint import Checkpointer, TrainingState
from ..errors import TrainingDivergedError
from . import weighting
from .callbacks import CallbackList, History
from .metrics import RunningMeans

DEFAULT_BATCH_SIZE = 32  # Keras's, when batch_size=None


@dataclass
class BatchResult:
    """What one training batch produced: its loss (a mean over its examples, before the update), the gradients
    of the trainable weights (``model.trainable_params()`` order), the model's output (for the metrics) and the
    number of examples."""

    loss: float
    grads: list
    output: np.ndarray
    size: int


# ----------------------------------------------------------------------------------------------
# One step
# ----------------------------------------------------------------------------------------------
def compute_gradients(model, x, y, sample_weight=None) -> BatchResult:
    """Forward (training mode), the (weighted) loss and backward; nothing is updated."""
    loss, grads = model.loss_and_gradients(x, y, sample_weight=sample_weight)
    return BatchResult(loss, grads, model._last_output, len(x))  # the output of the forward pass just run


def apply_gradients(model, result: BatchResult) -> None:
    """One optimizer step with ``result.grads`` — unless the loss or a gradient is NaN/inf: then nothing is
    applied (the weights stay the last good ones) and ``TrainingDivergedError`` is raised."""
    if not np.isfinite(result.loss) or not all(np.isfinite(np.sum(g)) for g in result.grads):
        raise TrainingDivergedError(f"the loss or a gradient became non-finite (loss {result.loss}); the weights "
                                    f"are those from before this step — try a smaller learning rate")
    model.optimizer.apply(model.trainable_params(), result.grads)


def train_batch(model, x, y, sample_weight=None, reduce_gradients=None) -> BatchResult:
    """``compute_gradients``, the optional reduction, then ``apply_gradients``."""
    result = compute_gradients(model, x, y, sample_weight)
    if reduce_gradients is not None:
        result = reduce_gradients(result)
    apply_gradients(model, result)
    return result


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------
def _batch_size(batch_size) -> int:
    return DEFAULT_BATCH_SIZE if batch_size is None else validation.check_positive_int(batch_size, "batch_size")


def _count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def _verbosity(verbose) -> int:
    """Keras's ``verbose``: "auto" (= 1), 0 (silent), 1 (a progress bar and one line per epoch) or 2 (one line
    per epoch, as Keras prints for logs that go to a file)."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or not isinstance(verbose, (int, np.integer)) or verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, got {verbose!r}")
    return int(verbose)


def _examples(model, x, y, sample_weight, name):
    """``(x, y, sample_weight)`` checked at the model's boundary (finite inputs, labels that fit the output)."""
    x = model._as_batch(x, require_finite=True)
    y = validation.check_labels(y, len(x), model.output_shape, name)
    return x, y, weighting.check_sample_weight(sample_weight, len(x), name)


def split_tail(arrays, validation_split: float):
    """Keras's ``validation_split``: the first ``floor(N * (1 - split))`` examples train, the rest validate."""
    if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) or not (
            0 <= validation_split < 1):
        raise ValueError(f"validation_split must be a number in [0, 1), got {validation_split!r}")
    n = len(arrays[0])
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError(f"Training data contains {n} samples, which is not sufficient to split it into a "
                         f"validation and training set as specified by `validation_split={validation_split}`. "
                         f"Either provide more data, or a different value for the `validation_split` argument.")
    train = tuple(None if a is None else a[:split_at] for a in arrays)
    held_out = tuple(None if a is None else a[split_at:] for a in arrays)
    return train, held_out


def _unpack_validation_data(validation_data):
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
        raise ValueError("validation_data must be a tuple (x_val, y_val) or (x_val, y_val, val_sample_weight)")
    x, y, *rest = validation_data
    return x, y, (rest[0] if rest else None)


def _should_validate(epoch: int, validation_freq) -> bool:
    """Keras: an integer ``n`` validates every n-th epoch (counting from 1); a list names the epochs."""
    if isinstance(validation_freq, int):
        return (epoch + 1) % validation_freq == 0
    return (epoch + 1) in validation_freq


def in_keras_order(logs: dict, model) -> list:
    """Logs as Keras's ``evaluate`` lists them (``Trainer._flatten_metrics_in_order``): the loss, the compiled
    metrics, then the weighted metrics, each by its *metric* name, then every log not listed, sorted by key.
    Keras's quirk kept: a weighted metric named like an unweighted one repeats the unweighted value in its place
    (``metrics=["accuracy"], weighted_metrics=["accuracy"]`` lists ``[loss, acc, acc, weighted_acc]``)."""
    names = ["loss", *model.metrics, *model.weighted_metrics]
    return [logs[name] for name in names if name in logs] + [logs[key] for key in sorted(logs) if key not in names]


def keras_return(logs: dict, model, return_dict: bool):
    """What ``evaluate`` and the ``*_on_batch`` methods return, as Keras does: the logs as a dict (keys sorted)
    with ``return_dict``, else the values in ``in_keras_order`` — the loss alone as a float, not a list."""
    if return_dict:
        return dict(sorted(logs.items()))
    values = in_keras_order(logs, model)
    return values[0] if len(values) == 1 else values


def running_means(model) -> RunningMeans:
    """Empty running sums of the loss and of the model's compiled (weighted) metrics."""
    return RunningMeans(model.metrics, model.weighted_metrics)


# ----------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------
def fit(model, x, y, batch_size=None, epochs=1, verbose="auto", callbacks=None, validation_split=0.0,
        validation_data=None, shuffle=True, class_weight=None, sample_weight=None, initial_epoch=0,
        steps_per_epoch=None, validation_steps=None, validation_batch_size=None, validation_freq=1, seed=None,
        checkpoint_dir=None, checkpoint_every=None, resume=False, reduce_gradients=None, shard_batch=None,
        save_checkpoints=True) -> History:
    """Train ``model`` (see ``Sequential.fit`` for the arguments); returns the ``History``."""
    model._require_compiled()
    name = f"model {model.name!r} fit"
    batch_size, verbose = _batch_size(batch_size), _verbosity(verbose)
    epochs, initial_epoch = _count(epochs, "epochs"), _count(initial_epoch, "initial_epoch")
    steps_per_epoch = _optional_steps(steps_per_epoch, "steps_per_epoch")
    validation_steps = _optional_steps(validation_steps, "validation_steps")
    if class_weight is not None and sample_weight is not None:
        raise ValueError("You cannot use `class_weight` and `sample_weight` at the same time.")
    x, y, sample_weight = _examples(model, x, y, sample_weight, name)
    if validation_split and validation_data is None:
        (x, y, sample_weight), validation_data = split_tail((x, y, sample_weight), validation_split)
    if class_weight is not None:
        sample_weight = weighting.class_weight_to_sample_weight(y, class_weight, int(np.prod(model.output_shape)))
    if validation_data is not None:
        validation_data = _examples(model, *_unpack_validation_data(validation_data), f"{name} validation_data")
    if not isinstance(validation_freq, int) and not isinstance(validation_freq, (list, tuple, set)):
        raise ValueError(f"validation_freq must be an integer or a list of epochs, got {validation_freq!r}")
    rng = np.random.default_rng(seed) if seed is not None else model.rng
    checkpointer = Checkpointer(checkpoint_dir, checkpoint_every) if checkpoint_dir is not None else None
    saver = checkpointer if save_checkpoints else None  # None: restore from checkpoint_dir, never write it
    if resume:
        if checkpointer is None:
            raise ValueError("resume=True needs checkpoint_dir")
        state = checkpointer.restore(model, rng)
    else:
        state = TrainingState(epoch=initial_epoch, totals=running_means(model))
    batches_per_pass = math.ceil(len(x) / batch_size)
    callback_list = CallbackList(callbacks, add_history=True, model=model, history=state.history, verbose=verbose,
                                 epochs=epochs, steps=steps_per_epoch or batches_per_pass)
    if callback_list.history is not state.history:  # the caller passed a History: it carries the run on
        callback_list.history.epoch = list(state.history.epoch)
        callback_list.history.history = {key: list(values) for key, values in state.history.history.items()}
        state.history = callback_list.history

    model.stop_training = False
    callback_list.on_train_begin()
    if resume:  # after on_train_begin, which resets them: EarlyStopping's wait and best carry on
        callback_list.set_states(state.callback_states)
    epoch_logs, order = None, None
    first_epoch = epochs if state.stopped else state.epoch  # a run a callback stopped stays stopped
    for epoch in range(first_epoch, epochs):
        if order is None:
            order = _pass_order(rng, state, len(x), shuffle)
        callback_list.on_epoch_begin(epoch)
        epoch_logs = _run_epoch(model, x, y, sample_weight, order, batch_size, steps_per_epoch, epoch, epochs,
                                verbose, state, saver, callback_list, reduce_gradients, shard_batch)
        if validation_data is not None and _should_validate(epoch, validation_freq):
            val_x, val_y, val_weight = validation_data
            val_logs = evaluate(model, val_x, val_y, batch_size=validation_batch_size or batch_size, verbose=0,
                                sample_weight=val_weight, steps=validation_steps, callbacks=callback_list,
                                return_dict=True)
            epoch_logs.update({f"val_{key}": value for key, value in val_logs.items()})
        epoch_logs = dict(sorted(epoch_logs.items()))  # the key order Keras's logs (and so its History) have
        callback_list.on_epoch_end(epoch, epoch_logs)
        if state.pass_step >= batches_per_pass:  # the pass is done: the next epoch draws a new order
            state.next_pass(rng.bit_generator.state)
            order = None
        state.next_epoch(epoch + 1, running_means(model))
        state.stopped = bool(model.stop_training)
        if saver is not None:
            saver.save(model, state, callback_list)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}: " + _log_line(epoch_logs), file=sys.stderr)
        if model.stop_training:
            break
    callback_list.on_train_end(epoch_logs)
    return callback_list.history


def _log_line(logs) -> str:
    return ", ".join(f"{key}={value:.4f}" for key, value in logs.items())


def _progress(n_batches: int, description: str, verbose: int):
    """``range(n_batches)``, with a progress bar on stderr at ``verbose=1`` (cleared when done, as the line
    printed after it says the result)."""
    from tqdm.auto import tqdm

    return tqdm(range(n_batches), desc=description, unit="batch", disable=verbose != 1, leave=False,
                file=sys.stderr)


def _optional_steps(value, name: str):
    return None if value is None else validation.check_positive_int(value, name)


def _pass_order(rng, state, n: int, shuffle: bool) -> np.ndarray:
    """The order of the examples in the current pass over the data. A new pass draws it from the generator
    as it is (and records that state); a run resumed inside a pass puts the generator back to the recorded state
    and draws the same order again, leaving the generator where the uninterrupted run left it."""
    if state.pass_step == 0:
        state.next_pass(rng.bit_generator.state)
    else:
        rng.bit_generator.state = state.rng_state
    return rng.permutation(n) if shuffle else np.arange(n)


def _batches_this_epoch(steps_per_epoch, n_batches: int, state, what: str) -> int:
    """How many batches the epoch still runs: to its ``steps_per_epoch`` (default: the whole pass) but not past
    the end of the pass. With arrays Keras goes on where the last epoch stopped, and ends an epoch early, with a
    warning, when the pass runs out first (the next epoch then starts a new pass)."""
    left_in_pass = n_batches - state.pass_step
    if steps_per_epoch is None:
        return left_in_pass
    wanted = steps_per_epoch - state.step
    if wanted > left_in_pass:
        warnings.warn(f"{what}: steps_per_epoch={steps_per_epoch}, but the data has only {left_in_pass} more "
                      f"batches in this pass ({n_batches} in all): the epoch ends after them, as in Keras",
                      stacklevel=5)
    return min(wanted, left_in_pass)


def _run_epoch(model, x, y, sample_weight, order, batch_size, steps_per_epoch, epoch, epochs, verbose, state,
               checkpointer, callback_list, reduce_gradients, shard_batch=None) -> dict:
    """The batches of one epoch (from ``state.step`` on, when resuming); returns the epoch's logs."""
    means = state.totals
    n_batches = _batches_this_epoch(steps_per_epoch, math.ceil(len(x) / batch_size), state, f"model {model.name!r}")
    bar = _progress(n_batches, f"Epoch {epoch + 1}/{epochs}", verbose)
    for _ in bar:
        step = state.step
        callback_list.on_train_batch_begin(step)
        batch = order[state.pass_step * batch_size:(state.pass_step + 1) * batch_size]
        yb = y[batch]  # the metrics are over the whole batch (the reduction returns its whole output)
        wb = None if sample_weight is None else sample_weight[batch]
        mine = batch if shard_batch is None else shard_batch(batch)  # a data-parallel worker's part of the batch
        result = compute_gradients(model, x[mine], y[mine], None if sample_weight is None else sample_weight[mine])
        if reduce_gradients is not None:
            result = reduce_gradients(result)
        try:
            apply_gradients(model, result)
        except TrainingDivergedError as error:
            if not callback_list.stops_on_non_finite_loss:
                raise TrainingDivergedError(f"epoch {epoch + 1}, step {step + 1}: {error}") from None
            # TerminateOnNaN is listening: report the step (not applied) with a NaN loss, and let it stop training
            result.loss = result.loss if not np.isfinite(result.loss) else float("nan")
        means.update(result.loss, result.size, yb, result.output, sample_weight=wb)
        state.step += 1
        state.pass_step += 1
        callback_list.on_train_batch_end(step, means.results())
        if checkpointer is not None and checkpointer.due(state.step):
            checkpointer.save(model, state, callback_list)
        if verbose == 1:  # (formatting the postfix costs 25 us a step even with the bar disabled)
            bar.set_postfix(loss=f"{means.loss_sum / means.seen:.4f}", refresh=False)
        if model.stop_training:
            break
    bar.close()
    return means.results()


# ----------------------------------------------------------------------------------------------
# evaluate, predict
# ----------------------------------------------------------------------------------------------
def evaluate(model, x, y, batch_size=None, verbose="auto", sample_weight=None, steps=None, callbacks=None,
             return_dict=False):
    """The loss and metrics over ``(x, y)``, batch by batch in inference mode, returned as Keras returns them
    (``keras_return``: the loss alone as a float, ``[loss, *metrics]`` with metrics, a dict with
    ``return_dict``). ``steps``: only the first ``steps`` batches. The loss is computed as Keras does (from the
    logits when the model ends in the loss's activation; weighted by ``sample_weight``)."""
    model._require_compiled()
    x, y, sample_weight = _examples(model, x, y, sample_weight, f"model {model.name!r} evaluate")
    batch_size, verbose = _batch_size(batch_size), _verbosity(verbose)
    n_batches = math.ceil(len(x) / batch_size)
    steps = _optional_steps(steps, "steps")
    if steps is not None and steps > n_batches:
        warnings.warn(f"model {model.name!r} evaluate: steps={steps}, but the data has only {n_batches} batches: "
                      f"all of them are evaluated, as in Keras", stacklevel=3)
    n_batches = min(n_batches, steps or n_batches)
    callback_list = callbacks if isinstance(callbacks, CallbackList) else CallbackList(
        callbacks, model=model, verbose=verbose, epochs=1, steps=n_batches)
    means = running_means(model)
    callback_list.on_test_begin()
    for batch_index in _progress(n_batches, "Evaluate", verbose):
        callback_list.on_test_batch_begin(batch_index)
        batch = slice(batch_index * batch_size, (batch_index + 1) * batch_size)
        xb, yb = x[batch], y[batch]
        wb = None if sample_weight is None else sample_weight[batch]
        output = model.forward(xb)
        means.update(model.compute_loss(yb, output, sample_weight=wb), len(xb), yb, output, sample_weight=wb)
        model.release_caches()
        callback_list.on_test_batch_end(batch_index, means.results())
    logs = dict(sorted(means.results().items()))
    callback_list.on_test_end(logs)
    if verbose:
        print("Evaluate: " + _log_line(logs), file=sys.stderr)
    return keras_return(logs, model, return_dict)


def predict(model, x, batch_size=None, verbose="auto", callbacks=None) -> np.ndarray:
    """Model outputs for ``x``, computed ``batch_size`` examples at a time (inference mode); a progress bar at
    ``verbose=1`` ("auto")."""
    x = model._as_batch(x, require_finite=True)
    batch_size, verbose = _batch_size(batch_size), _verbosity(verbose)
    n_batches = math.ceil(len(x) / batch_size)
    callback_list = callbacks if isinstance(callbacks, CallbackList) else CallbackList(
        callbacks, model=model, verbose=verbose, epochs=1, steps=n_batches)
    callback_list.on_predict_begin()
    outputs = []
    for batch_index in _progress(n_batches, "Predict", verbose):
        callback_list.on_predict_batch_begin(batch_index)
        start = batch_index * batch_size
        outputs.append(model.forward(x[start:start + batch_size]))
        model.release_caches()  # (no backward follows: see Sequential.release_caches)
        callback_list.on_predict_batch_end(batch_index, {"outputs": outputs[-1]})
    callback_list.on_predict_end()
    return np.concatenate(outputs)


# ----------------------------------------------------------------------------------------------
# One batch, Keras's *_on_batch
# ----------------------------------------------------------------------------------------------
def train_on_batch(model, x, y, sample_weight=None, class_weight=None, return_dict=False):
    """One training step on exactly this batch; returns its loss and metrics (computed before the update):
    a float when there are no metrics, else ``[loss, *metrics]``, or a dict with ``return_dict``."""
    model._require_compiled()
    if class_weight is not None and sample_weight is not None:
        raise ValueError("Arguments `sample_weight` and `class_weight` cannot be specified at the same time.")
    x, y, sample_weight = _examples(model, x, y, sample_weight, f"model {model.name!r} train_on_batch")
    if class_weight is not None:
        sample_weight = weighting.class_weight_to_sample_weight(y, class_weight, int(np.prod(model.output_shape)))
    result = train_batch(model, x, y, sample_weight)
    means = running_means(model)
    means.update(result.loss, result.size, y, result.output, sample_weight=sample_weight)
    return keras_return(means.results(), model, return_dict)


def test_on_batch(model, x, y, sample_weight=None, return_dict=False):
    """The loss and metrics of one batch in inference mode, returned as ``train_on_batch`` returns them."""
    model._require_compiled()
    x, y, sample_weight = _examples(model, x, y, sample_weight, f"model {model.name!r} test_on_batch")
    output = model.forward(x)
    means = running_means(model)
    means.update(model.compute_loss(y, output, sample_weight=sample_weight), len(x), y, output,
                 sample_weight=sample_weight)
    return keras_return(means.results(), model, return_dict)


test_on_batch.__test__ = False  # (not a pytest test, despite the name)


def predict_on_batch(model, x) -> np.ndarray:
    """The model's outputs for one batch (inference mode)."""
    return model.forward(model._as_batch(x, require_finite=True))
