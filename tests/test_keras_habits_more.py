"""More of what Keras users bring, each against Keras 3's own result: what ``evaluate`` returns, ``weighted_metrics``,
``fit(steps_per_epoch=..., validation_steps=...)`` with arrays, the state of ``EarlyStopping`` and
``ReduceLROnPlateau`` across a checkpoint and resume, and ``.keras`` files of every optimizer and schedule.

Where a value is logged, the optimizer is ``SGD(0)`` (the weights stay put, so numcnn's and Keras's numbers are of
the same model) unless training itself is the point; the Keras twin is built by ``to_keras`` (same weights).
"""

import json
import warnings
import zipfile

import numpy as np
import pytest

import numcnn
from numcnn import Sequential, callbacks, optimizers
from numcnn.layers import Dense, Input
from numcnn.optimizers import schedules
from numcnn.training import callbacks as callbacks_module


def small_model(metrics=(), weighted_metrics=(), optimizer=None, seed=0, classes=5):
    model = Sequential([Input((6,)), Dense(8, activation="relu"), Dense(classes, activation="softmax")], seed=seed)
    model.compile(optimizer if optimizer is not None else optimizers.SGD(0.0), "sparse_categorical_crossentropy",
                  metrics=list(metrics), weighted_metrics=list(weighted_metrics))
    return model


def examples(n=40, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, classes, n), rng.uniform(0, 2, n)


def keras_twin(keras, model, metrics=(), weighted_metrics=(), optimizer=None):
    from numcnn.interop.keras import to_keras

    twin = to_keras(model)
    twin.compile(optimizer if optimizer is not None else keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy",
                 metrics=list(metrics), weighted_metrics=list(weighted_metrics))
    return twin


def assert_close(ours, theirs, rel=1e-6):
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs)
        ours, theirs = list(ours.values()), list(theirs.values())
    assert type(ours) is type(theirs) or not isinstance(theirs, list), (ours, theirs)
    np.testing.assert_allclose(ours, theirs, rtol=rel, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# verbose in evaluate / predict (Keras's default "auto": a progress bar), numcnn.models
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("verbose, bar, line", [("auto", True, True), (1, True, True), (2, False, True),
                                                (0, False, False)])
def test_evaluate_and_predict_verbose_levels_print_what_keras_prints(capsys, verbose, bar, line):
    x, y, _ = examples()
    model = small_model(("accuracy",))
    loss, accuracy = model.evaluate(x, y, batch_size=8, verbose=verbose)
    err = capsys.readouterr().err
    assert ("Evaluate: " in err) is line and ("/5 [" in err) is bar, err  # tqdm: "1/5 [00:00<...]"
    if line:
        assert f"accuracy={accuracy:.4f}" in err and f"loss={loss:.4f}" in err
    model.predict(x, batch_size=8, verbose=verbose)
    err = capsys.readouterr().err
    assert ("Predict" in err and "/5 [" in err) is bar, err
    with pytest.raises(ValueError, match="verbose must be"):
        model.predict(x, verbose=3)


def test_numcnn_models_is_keras_models_spelling(tmp_path):
    model = small_model()
    numcnn.models.save_model(model, tmp_path / "m.keras")
    loaded = numcnn.models.load_model(tmp_path / "m.keras")
    assert isinstance(loaded, numcnn.models.Sequential) and numcnn.models.Sequential is Sequential
    x, _, _ = examples()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


# ------------------------------------------------------------------------------------------------
# evaluate's return, weighted_metrics
# ------------------------------------------------------------------------------------------------
METRIC_CASES = {
    "no metrics": ((), ()),
    "metrics": (("accuracy", "sparse_top_k_categorical_accuracy"), ()),
    "weighted only": ((), ("accuracy",)),
    # Keras lists a weighted metric named like an unweighted one by its metric name: the unweighted value twice,
    # the weighted one (logged as weighted_accuracy) last
    "same name both ways": (("accuracy",), ("accuracy", "sparse_top_k_categorical_accuracy")),
}


@pytest.mark.tf
@pytest.mark.parametrize("case", sorted(METRIC_CASES))
def test_evaluate_returns_what_keras_returns(tf, case):
    _, keras = tf
    names, weighted = METRIC_CASES[case]
    x, y, w = examples()
    model = small_model(names, weighted)
    twin = keras_twin(keras, model, names, weighted)
    for kwargs in ({}, {"sample_weight": w}, {"sample_weight": w, "return_dict": True}, {"return_dict": True}):
        ours = model.evaluate(x, y, batch_size=16, **kwargs)
        theirs = twin.evaluate(x, y, batch_size=16, verbose=0, **kwargs)
        assert type(ours) is type(theirs), (kwargs, ours, theirs)  # a float alone, else a list (or a dict)
        assert_close(ours, theirs)
    assert isinstance(small_model().evaluate(x, y), float)


@pytest.mark.tf
def test_weighted_metrics_in_fit_with_class_weight_and_validation_weights_match_keras(tf):
    """fit's class_weight weighs the weighted metrics (and the loss), val_sample_weight their val_ values; the
    plain metrics stay unweighted. Checked against Keras's own History, epoch by epoch."""
    _, keras = tf
    x, y, w = examples(48)
    names, weighted = ["accuracy"], ["accuracy", "sparse_top_k_categorical_accuracy"]
    model = small_model(names, weighted)
    twin = keras_twin(keras, model, names, weighted)
    arguments = dict(batch_size=16, epochs=2, shuffle=False, class_weight={0: 3.0, 2: 0.25},
                     validation_data=(x[:20], y[:20], w[:20]))
    ours = model.fit(x, y, verbose=0, **arguments).history
    theirs = twin.fit(x, y, verbose=0, **arguments).history
    assert_close(ours, theirs)
    assert ours["weighted_accuracy"] != ours["accuracy"]  # the weights matter here: the test can fail


def test_weighted_metrics_are_weighted_means_and_survive_files(tmp_path):
    """``sum w v / sum w`` by hand; zero weights give 0 (Keras's divide_no_nan); the names go into both files."""
    x, y, w = examples(30)
    model = small_model(["accuracy"], ["accuracy"])
    hit = (np.argmax(model.predict(x), axis=-1) == y).astype(np.float64)
    logs = model.evaluate(x, y, sample_weight=w, return_dict=True)
    assert logs["weighted_accuracy"] == pytest.approx(np.sum(w * hit) / np.sum(w), rel=1e-12)
    assert logs["accuracy"] == pytest.approx(hit.mean(), rel=1e-12)
    assert model.evaluate(x, y, sample_weight=np.zeros(30), return_dict=True)["weighted_accuracy"] == 0.0
    for name in ("m.npz", "m.keras"):
        model.save(tmp_path / name)
        assert numcnn.load_model(tmp_path / name).weighted_metrics == ["accuracy"]


# ------------------------------------------------------------------------------------------------
# steps_per_epoch, validation_steps, evaluate(steps=)
# ------------------------------------------------------------------------------------------------
def batch_counter(module):
    counts = []
    return counts, module.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: counts.append(0),
        on_train_batch_end=lambda batch, logs: counts.__setitem__(-1, counts[-1] + 1))


@pytest.mark.tf
@pytest.mark.parametrize("steps, validation_steps", [(3, 2), (7, 9)])
def test_steps_per_epoch_and_validation_steps_follow_keras(tf, steps, validation_steps):
    """40 examples in batches of 8 are 5 batches. Keras goes on in the same pass in the next epoch and ends an
    epoch early (with a warning) where the pass runs out: steps 3 gives epochs of 3, 2, 3, 2, 3 batches; steps 7
    gives 5 each. Validation takes the first ``validation_steps`` batches. The losses say which batches ran."""
    _, keras = tf
    x, y, _ = examples(40)
    model, twin = small_model(), None
    twin = keras_twin(keras, model)
    runs = {}
    for name, fitted, module in (("ours", model, numcnn), ("theirs", twin, keras)):
        counts, counter = batch_counter(module)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = fitted.fit(x, y, batch_size=8, epochs=5, steps_per_epoch=steps, shuffle=False, verbose=0,
                                 callbacks=[counter], validation_data=(x, y), validation_steps=validation_steps)
        runs[name] = counts, history.history, bool([w for w in caught if "data" in str(w.message)])
    assert runs["ours"][0] == runs["theirs"][0] == ([3, 2, 3, 2, 3] if steps == 3 else [5] * 5)
    assert_close(runs["ours"][1], runs["theirs"][1])
    assert runs["ours"][2] and runs["theirs"][2]  # both warn that the data ran out
    assert model.evaluate(x, y, batch_size=8, steps=2) == pytest.approx(
        twin.evaluate(x, y, batch_size=8, steps=2, verbose=0), rel=1e-6)


def test_steps_per_epoch_epochs_share_one_shuffled_pass():
    """With shuffling, epochs 1 and 2 (3 + 2 batches) are one permutation of the data: with the weights fixed,
    their example-weighted losses add up to the loss over all the data (two fresh permutations would not)."""
    x, y, _ = examples(40)
    model = small_model()
    history = model.fit(x, y, batch_size=8, epochs=2, steps_per_epoch=3, seed=5, verbose=0).history
    total = model.evaluate(x, y) * 40
    assert history["loss"][0] * 24 + history["loss"][1] * 16 == pytest.approx(total, rel=1e-6)
    assert history["loss"][0] != pytest.approx(history["loss"][1], rel=1e-3)  # different halves of the pass


def test_steps_per_epoch_resumes_inside_a_pass_bit_identically(tmp_path):
    x, y, _ = examples(40)
    arguments = dict(batch_size=8, epochs=4, steps_per_epoch=3, seed=3, verbose=0, checkpoint_dir=tmp_path)
    straight = small_model(["accuracy"], optimizer=optimizers.Adam(0.01))
    expected = straight.fit(x, y, **{**arguments, "checkpoint_dir": None})
    interrupted = small_model(["accuracy"], optimizer=optimizers.Adam(0.01))
    with pytest.raises(Crash):  # dies in epoch 2, the second epoch of the second pass
        interrupted.fit(x, y, **arguments, checkpoint_every=1, callbacks=[crash_at(2, 1)])
    resumed = small_model(["accuracy"], optimizer=optimizers.Adam(0.01), seed=9)
    history = resumed.fit(x, y, **arguments, resume=True)
    assert history.history == expected.history
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# EarlyStopping and ReduceLROnPlateau across a checkpoint and resume
# ------------------------------------------------------------------------------------------------
class Crash(Exception):
    pass


def crash_at(epoch, batch=None):
    """A callback that raises in ``epoch`` after ``batch`` (or at the end of training when ``epoch`` is "end")."""
    crasher = callbacks.Callback()
    crasher.epoch = None

    def on_epoch_begin(e, logs=None):
        crasher.epoch = e

    def on_train_batch_end(b, logs=None):
        if (crasher.epoch, b) == (epoch, batch):
            raise Crash()

    def on_train_end(logs=None):
        if epoch == "end":
            raise Crash()

    crasher.on_epoch_begin, crasher.on_train_batch_end, crasher.on_train_end = (on_epoch_begin, on_train_batch_end,
                                                                              on_train_end)
    return crasher


def plateau_callbacks():
    """Callbacks whose decisions depend on earlier epochs: val_loss improves by less than min_delta at times."""
    return [callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1, min_delta=0.01, cooldown=1),
            callbacks.EarlyStopping(monitor="val_loss", patience=3, min_delta=0.01, restore_best_weights=True)]


def plateau_examples():
    """Learnable labels (a noisy linear teacher): val_loss falls for some epochs, then levels off."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    return x, np.argmax(x @ rng.normal(size=(6, 5)) + rng.normal(size=(64, 5)), axis=-1)


def plateau_fit(model, x, y, **kwargs):
    arguments = dict(batch_size=8, epochs=30, seed=1, verbose=0, validation_data=(x[48:], y[48:]))
    return model.fit(x[:48], y[:48], **{**arguments, **kwargs})


def plateau_model(seed=0):
    return small_model(["accuracy"], optimizer=optimizers.SGD(0.1, momentum=0.5), seed=seed)


@pytest.mark.parametrize("crash", [(9, 1), (10, 0), ("end", None)], ids=["epoch 9", "epoch 10", "at the end"])
def test_early_stopping_and_reduce_lr_resume_where_the_uninterrupted_run_would(tmp_path, crash, monkeypatch):
    """A fit killed in epoch 9 or 10 (checkpoint every batch) or after it had stopped, resumed by a new process
    (fresh callback objects, other initial weights), stops in the same epoch, with the same learning rates, the
    same best epoch and the same restored weights as the uninterrupted fit. Without the saved callback state the
    resumed run decides otherwise (checked last: the test can fail)."""
    x, y = plateau_examples()
    straight = plateau_model()
    stop_callbacks = plateau_callbacks()
    expected = plateau_fit(straight, x, y, callbacks=stop_callbacks)
    stopped_at = len(expected.epoch)
    assert 10 < stopped_at < 30 and len(set(expected.history["learning_rate"])) > 2  # it reduces, then stops
    assert stop_callbacks[1].best_epoch < stopped_at - 1  # so restore_best_weights changes the weights

    def resume():
        interrupted = plateau_model()
        with pytest.raises(Crash):
            plateau_fit(interrupted, x, y, callbacks=[crash_at(*crash), *plateau_callbacks()], checkpoint_dir=tmp_path,
                        checkpoint_every=1)
        resumed = plateau_model(seed=7)
        fresh = plateau_callbacks()
        return resumed, fresh, plateau_fit(resumed, x, y, callbacks=fresh, checkpoint_dir=tmp_path, resume=True)

    resumed, fresh, history = resume()
    assert history.history == expected.history and history.epoch == expected.epoch
    assert fresh[1].stopped_epoch == stop_callbacks[1].stopped_epoch and fresh[1].best == stop_callbacks[1].best
    assert resumed.optimizer.learning_rate == straight.optimizer.learning_rate
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)

    monkeypatch.setattr(callbacks_module.CallbackList, "set_states", lambda self, states: None)
    forgetful, _, forgetful_history = resume()  # at the end: the same epochs, but the best weights are lost
    assert forgetful_history.history != expected.history or not all(
        np.array_equal(a, b) for a, b in zip(straight.get_weights(), forgetful.get_weights()))


def test_callback_states_are_stored_without_pickle(tmp_path):
    """The checkpoint holds the callbacks' state as JSON in its header and the best weights as plain arrays."""
    x, y = plateau_examples()
    plateau_fit(plateau_model(), x, y, epochs=3, callbacks=plateau_callbacks(), checkpoint_dir=tmp_path)
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as archive:
        header = json.loads(archive["header"].tobytes())
        best = [name for name in archive.files if name.startswith("extra/callbacks/EarlyStopping/best_weights/")]
        assert len(best) == 4 and all(archive[name].dtype == np.float32 for name in best)
    saved = header["extra"]["training"]["callbacks"]
    assert set(saved) == {"ReduceLROnPlateau", "EarlyStopping"} and "wait" in saved["EarlyStopping"]


# ------------------------------------------------------------------------------------------------
# .keras files of every optimizer and learning-rate schedule, both ways
# ------------------------------------------------------------------------------------------------
OPTIMIZER_CASES = {
    "AdamW": lambda: optimizers.AdamW(learning_rate=0.01, weight_decay=0.05),
    "AdamW amsgrad": lambda: optimizers.AdamW(learning_rate=0.01, amsgrad=True),
    "Adam amsgrad": lambda: optimizers.Adam(learning_rate=0.01, amsgrad=True, clipnorm=1.0),
    "Nadam": lambda: optimizers.Nadam(learning_rate=0.01),
    "Adagrad": lambda: optimizers.Adagrad(learning_rate=0.05, initial_accumulator_value=0.2),
    "ExponentialDecay": lambda: optimizers.SGD(schedules.ExponentialDecay(0.1, 2, 0.5, staircase=True), momentum=0.9),
    "PiecewiseConstantDecay": lambda: optimizers.Adam(schedules.PiecewiseConstantDecay([1, 3], [0.05, 0.01, 0.001])),
    "CosineDecay": lambda: optimizers.RMSprop(schedules.CosineDecay(0.01, 10, alpha=0.1, warmup_target=0.05,
                                                                    warmup_steps=2)),
    "InverseTimeDecay": lambda: optimizers.Nadam(schedules.InverseTimeDecay(0.02, 2, 0.5)),
}


def trained_model(optimizer, x, y):
    model = Sequential([Input((6,)), Dense(5, activation="softmax")], seed=3)
    model.compile(optimizer, "sparse_categorical_crossentropy", metrics=["accuracy"])
    for start in (0, 8):
        model.train_step(x[start:start + 8], y[start:start + 8])
    return model


@pytest.mark.tf
@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
def test_optimizers_and_schedules_go_through_keras_files_both_ways(tf, tmp_path, case):
    """numcnn's file gives Keras the same optimizer (its own serialization equals the file's config) with the
    same state: one more step in Keras and in numcnn gives the same weights. Keras's file of it gives numcnn
    the same optimizer config (the learning rate as Keras stores it, in float32), step count and slots."""
    _, keras = tf
    x, y, _ = examples(24)
    model = trained_model(OPTIMIZER_CASES[case](), x, y)
    model.save(tmp_path / "ours.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(tmp_path / "ours.keras")
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    with zipfile.ZipFile(tmp_path / "ours.keras") as archive:
        written = json.loads(archive.read("config.json"))["compile_config"]["optimizer"]
    assert written == keras.saving.serialize_keras_object(loaded.optimizer)
    assert int(loaded.optimizer.iterations) == model.optimizer.iterations == 2

    loaded.train_on_batch(x[16:], y[16:])
    model.train_step(x[16:], y[16:])
    for ours, theirs in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)

    loaded.save(tmp_path / "theirs.keras")
    back = numcnn.load_model(tmp_path / "theirs.keras")
    expected = dict(model.optimizer.get_config())
    if not isinstance(expected["learning_rate"], dict):
        expected["learning_rate"] = float(np.float32(expected["learning_rate"]))
    assert type(back.optimizer) is type(model.optimizer) and back.optimizer.get_config() == expected
    assert back.optimizer.iterations == 3
    for name, arrays in model.optimizer.slots.items():
        for ours, theirs in zip(arrays, back.optimizer.slots[name]):
            np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-7)


@pytest.mark.tf
def test_nadam_momentum_product_in_the_file_is_keras_own(tf, tmp_path):
    """Keras's Nadam keeps ``u_product`` after its slots; numcnn writes the value Keras reaches after the same
    number of steps (a Keras Nadam trained 2 steps on its own)."""
    _, keras = tf
    x, y, _ = examples(24)
    model = trained_model(optimizers.Nadam(0.01), x, y)
    model.save(tmp_path / "ours.keras")
    loaded = keras.models.load_model(tmp_path / "ours.keras")
    twin = keras_twin(keras, model, optimizer=keras.optimizers.Nadam(0.01))
    for start in (0, 8):
        twin.train_on_batch(x[start:start + 8], y[start:start + 8])
    ours, theirs = loaded.optimizer.variables[-1], twin.optimizer.variables[-1]  # (named "variable_<n>")
    assert ours.shape == theirs.shape == () and len(loaded.optimizer.variables) == len(twin.optimizer.variables)
    assert ours.numpy() == theirs.numpy() != 1.0  # 1.0: what a fresh Nadam starts from
