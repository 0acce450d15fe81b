"""The training loop Keras users expect: fit's arguments, callbacks, metrics, weighted losses and the *_on_batch
API, each against Keras 3's own result (live, via the ``tf`` fixture: the same weights and data through Keras),
plus the structure of ``numcnn.training`` (no import circles) and bit-identical resume.

How the Keras facts are measured: a numcnn model and its Keras twin (``numcnn.interop.keras.to_keras``: same
layers, same weights) get the same data. Where training would make the two drift apart, the optimizer is
``SGD(0)`` (the weights stay put, so every logged number is comparable) or a single full-batch step. Callbacks
are driven both ways: inside real ``fit`` calls, and directly (``on_epoch_end(epoch, logs)`` with scripted logs,
on Keras's callback objects and numcnn's side by side), which tests Keras's own decision rules cheaply.
"""

import ast
import math
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numcnn
from numcnn import Sequential, callbacks, optimizers
from numcnn.errors import TrainingDivergedError
from numcnn.layers import Dense, Input
from numcnn.training import metrics
from tests.gradcheck import check_gradient

HYPOTHESIS = settings(max_examples=20, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def small_model(classes=5, metric_names=("accuracy",), optimizer=None, seed=0, dtype="float32", loss=None,
                activation="softmax"):
    model = Sequential([Input((6,)), Dense(8, activation="relu"), Dense(classes, activation=activation)], seed=seed,
                       dtype=dtype)
    model.compile(optimizer if optimizer is not None else optimizers.SGD(0.0),
                  loss or "sparse_categorical_crossentropy", metrics=list(metric_names))
    return model


def examples(n=40, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype(np.float32), rng.integers(0, classes, n)


def keras_twin(tf, model, optimizer, metric_names=(), loss="sparse_categorical_crossentropy"):
    from numcnn.interop.keras import to_keras

    keras_model = to_keras(model)
    keras_model.compile(optimizer=optimizer, loss=loss, metrics=list(metric_names))
    return keras_model


def assert_logs_equal(ours: dict, theirs: dict, rel=1e-6):
    assert list(ours) == list(theirs)  # the same names in the same (sorted) order
    for key in ours:
        assert np.allclose(ours[key], theirs[key], rtol=rel, atol=1e-7), (key, ours[key], theirs[key])


# ------------------------------------------------------------------------------------------------
# Structure: the loop lives in numcnn.training, and the import circle model <-> io <-> checkpoint is gone
# ------------------------------------------------------------------------------------------------
PACKAGE = Path(numcnn.__file__).parent
MODULES = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
           for p in PACKAGE.rglob("*.py")}


def imports_of(module: str, lazy: bool) -> set[str]:
    """The numcnn modules ``module`` imports: at import time (module level, class bodies), and with ``lazy`` also
    inside functions. Importing ``a.b.c`` runs package ``a.b`` first, so that counts too (except ``numcnn``
    itself, which is always initialised first, and the importer's own packages)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()

    def resolve(node):
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = package.split(".")[:len(package.split(".")) - (node.level - 1)] if node.level else []
        target = ".".join(base + ([node.module] if node.module else []))
        return [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]

    def visit(nodes, in_function):
        for node in nodes:
            if isinstance(node, (ast.Import, ast.ImportFrom)) and (lazy or not in_function):
                found.update(name for name in resolve(node) if name.startswith("numcnn"))
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    visit(children, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))

    visit(ast.parse(path.read_text()).body, False)
    result = set()
    for name in found:
        while name not in MODULES:
            name = name.rpartition(".")[0]
        parts = name.split(".")
        result.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    return {name for name in result if name != "numcnn" and not (module + ".").startswith(name + ".")}


def find_cycle(graph: dict) -> list | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == "open":
                return stack[stack.index(other):] + [other]
            if other not in state and (cycle := visit(other)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circles_and_the_loop_does_not_import_the_model():
    """At import time no numcnn module imports one that imports it back. The training loop and checkpoints work on
    any model object: they never import numcnn.model (before, checkpoint.py imported it for History). Among
    model, io, checkpoint and training, the only imports that go back to a module's importers are Sequential's
    thin methods calling up: fit/evaluate/... into training.loop, save into io."""
    at_import = {module: imports_of(module, lazy=False) for module in MODULES}
    assert find_cycle(at_import) is None, find_cycle(at_import)
    everywhere = {module: imports_of(module, lazy=True) for module in MODULES}
    training_side = [m for m in MODULES if m.startswith("numcnn.training") or m == "numcnn.checkpoint"]
    for module in training_side:
        assert "numcnn.model" not in everywhere[module], module
    upward_calls = everywhere["numcnn.model"] - at_import["numcnn.model"]
    assert upward_calls == {"numcnn.training.loop", "numcnn.io"}
    core = {"numcnn.model", "numcnn.io", "numcnn.checkpoint", *training_side}
    graph = {m: (everywhere[m] & core) - (upward_calls if m == "numcnn.model" else set()) for m in core}
    assert find_cycle(graph) is None, find_cycle(graph)


def test_the_cycle_check_can_fail():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_keras_names_for_the_training_api():
    assert numcnn.callbacks.EarlyStopping is callbacks.EarlyStopping  # import numcnn.callbacks works too
    assert numcnn.History is callbacks.History
    model = small_model(optimizer="adamw")
    assert isinstance(model.optimizer, optimizers.AdamW)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        model.compile(metrics=["f1"])


# ------------------------------------------------------------------------------------------------
# Metrics by Keras name
# ------------------------------------------------------------------------------------------------
METRIC_CASES = {
    "sparse": (["accuracy", "acc", "sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"],
               "sparse_categorical_crossentropy"),
    "onehot": (["accuracy", "categorical_accuracy", "top_k_categorical_accuracy", "mse", "mae"],
               "categorical_crossentropy"),
    "binary": (["accuracy", "binary_accuracy", "mean_squared_error", "mean_absolute_error"], "mse"),
}


@pytest.mark.tf
@pytest.mark.parametrize("case", list(METRIC_CASES))
def test_metrics_by_keras_name_match_keras(tf, case):
    """Names, order and values of evaluate's results (batches of 16 over 50 examples: a partial last batch)."""
    names, loss = METRIC_CASES[case]
    classes = 1 if case == "binary" else 7
    x, labels = examples(50, classes=max(classes, 2))
    y = {"sparse": labels, "onehot": np.eye(7)[labels], "binary": (labels[:, None] % 2).astype(np.float32)}[case]
    model = small_model(classes, names, loss=loss, activation=None if case == "binary" else "softmax")
    _, keras = tf
    keras_model = keras_twin(tf, model, keras.optimizers.SGD(0.0), names, loss)
    ours = model.evaluate(x, y, batch_size=16, return_dict=True)
    theirs = keras_model.evaluate(x, y, batch_size=16, return_dict=True, verbose=0)
    assert_logs_equal(ours, theirs)
    assert model.evaluate(x, y, batch_size=16) == pytest.approx(keras_model.evaluate(x, y, batch_size=16, verbose=0),
                                                                  rel=1e-6)


@pytest.mark.tf
@HYPOTHESIS
@given(data=st.data())
def test_metric_functions_follow_keras_on_ties(tf, data):
    """Scores with many exact ties: top-k counts a tied class as in (tf.math.in_top_k), argmax takes the first."""
    _, keras = tf
    n, classes = data.draw(st.integers(1, 6)), data.draw(st.integers(2, 8))
    k = data.draw(st.integers(1, classes + 1))
    rng = np.random.default_rng(data.draw(st.integers(0, 1 << 20)))
    p = rng.integers(0, 3, size=(n, classes)).astype(np.float32)
    y = rng.integers(0, classes, size=n)
    onehot = np.eye(classes, dtype=np.float32)[y]
    pairs = [
        (metrics.sparse_top_k_categorical_accuracy(y, p, k),
         keras.metrics.sparse_top_k_categorical_accuracy(y, p, k=k)),
        (metrics.top_k_categorical_accuracy(onehot, p, k), keras.metrics.top_k_categorical_accuracy(onehot, p, k=k)),
        (metrics.sparse_categorical_accuracy(y, p), keras.metrics.sparse_categorical_accuracy(y, p)),
        (metrics.categorical_accuracy(onehot, p), keras.metrics.categorical_accuracy(onehot, p)),
        (metrics.binary_accuracy(onehot, p / 2), keras.ops.mean(keras.metrics.binary_accuracy(onehot, p / 2), -1)),
    ]
    for ours, theirs in pairs:  # (Keras averages in float32)
        np.testing.assert_allclose(ours, np.asarray(theirs).reshape(ours.shape), rtol=1e-6, atol=0)


# ------------------------------------------------------------------------------------------------
# fit: validation_split, initial_epoch, History
# ------------------------------------------------------------------------------------------------
@pytest.mark.tf
def test_fit_logs_validation_split_and_initial_epoch_as_keras_does(tf):
    """With SGD(0) the weights stay put, so every logged value can be compared: the train loss and metrics over
    the first 70% of the arrays, val_* over the last 30% (Keras splits before shuffling)."""
    _, keras = tf
    x, y = examples(50, classes=7)
    names = ["accuracy", "sparse_top_k_categorical_accuracy"]
    model = small_model(7, names)
    keras_model = keras_twin(tf, model, keras.optimizers.SGD(0.0), names)
    ours = model.fit(x, y, batch_size=16, epochs=4, initial_epoch=2, validation_split=0.3, verbose=0, seed=0)
    theirs = keras_model.fit(x, y, batch_size=16, epochs=4, initial_epoch=2, validation_split=0.3, verbose=0)
    assert ours.epoch == theirs.epoch == [2, 3]
    assert list(ours.history) == list(theirs.history)
    for key in ours.history:
        np.testing.assert_allclose(ours.history[key], theirs.history[key], rtol=1e-6, err_msg=key)
    split = math.floor(50 * (1 - 0.3))
    assert ours.history["val_loss"][0] == pytest.approx(model.evaluate(x[split:], y[split:])[0], rel=1e-12)
    assert ours.history["loss"][0] == pytest.approx(model.evaluate(x[:split], y[:split])[0], rel=1e-6)
    assert model.history is ours


def test_validation_data_with_sample_weights_and_validation_freq():
    x, y = examples(30)
    model = small_model()
    weights = np.linspace(0, 2, 10)
    history = model.fit(x[:20], y[:20], epochs=4, verbose=0, validation_freq=2,
                        validation_data=(x[20:], y[20:], weights))
    assert len(history.history["loss"]) == 4 and len(history.history["val_loss"]) == 2  # epochs 2 and 4
    expected = model.evaluate(x[20:], y[20:], sample_weight=weights)[0]
    assert history.history["val_loss"][-1] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="not sufficient to split"):
        model.fit(x[:1], y[:1], validation_split=0.1, verbose=0)  # floor(1 * 0.9) = 0 examples left to train


# ------------------------------------------------------------------------------------------------
# class_weight / sample_weight: Keras's weighted loss
# ------------------------------------------------------------------------------------------------
@pytest.mark.tf
def test_class_weight_loss_and_step_are_keras_weighted_sum_over_batch_size(tf):
    """Keras 3 ('sum_over_batch_size') divides the weighted sum of per-example losses by the batch size, not by
    the sum of the weights — measured here from Keras's own per-example losses — and numcnn's loss, metrics
    (unweighted) and the weights after one full-batch SGD step agree with Keras's."""
    _, keras = tf
    x, y = examples(24, classes=3)
    class_weight = {0: 0.25, 1: 0.5}  # class 2 weighs 1.0 (not listed)
    model = small_model(3, ["accuracy"], optimizer=optimizers.SGD(0.5))
    keras_model = keras_twin(tf, model, keras.optimizers.SGD(0.5), ["accuracy"])
    probabilities = model.predict(x)
    ours = model.fit(x, y, batch_size=24, epochs=1, shuffle=False, class_weight=class_weight, verbose=0)
    theirs = keras_model.fit(x, y, batch_size=24, epochs=1, shuffle=False, class_weight=class_weight, verbose=0)

    per_example = keras.losses.SparseCategoricalCrossentropy(reduction=None)(y, probabilities).numpy()
    w = np.array([class_weight.get(int(label), 1.0) for label in y])
    keras_loss = theirs.history["loss"][0]
    assert keras_loss == pytest.approx(np.sum(w * per_example) / len(y), rel=1e-5)
    assert abs(keras_loss / (np.sum(w * per_example) / np.sum(w)) - 1) > 0.3  # not the weights' sum
    assert ours.history["loss"][0] == pytest.approx(keras_loss, rel=1e-6)
    assert ours.history["accuracy"][0] == pytest.approx(theirs.history["accuracy"][0])
    assert ours.history["accuracy"][0] == pytest.approx(np.mean(np.argmax(probabilities, -1) == y))  # unweighted
    for a, b in zip(model.get_weights(), keras_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.tf
def test_sample_weight_in_fit_and_evaluate_match_keras(tf):
    """Per-example weights (zeros included) over partial batches, in fit's epoch loss and in evaluate."""
    _, keras = tf
    x, y = examples(26, classes=4)
    weights = np.random.default_rng(5).choice([0.0, 0.5, 1.0, 3.0], size=26)
    model = small_model(4, ["sparse_categorical_accuracy"])
    keras_model = keras_twin(tf, model, keras.optimizers.SGD(0.0), ["sparse_categorical_accuracy"])
    ours = model.fit(x, y, batch_size=10, epochs=1, shuffle=False, sample_weight=weights, verbose=0)
    theirs = keras_model.fit(x, y, batch_size=10, epochs=1, shuffle=False, sample_weight=weights, verbose=0)
    assert_logs_equal({k: v[0] for k, v in ours.history.items()}, {k: v[0] for k, v in theirs.history.items()})
    assert_logs_equal(model.evaluate(x, y, batch_size=8, sample_weight=weights, return_dict=True),
                      keras_model.evaluate(x, y, batch_size=8, sample_weight=weights, return_dict=True, verbose=0))


@settings(max_examples=25, deadline=None, derandomize=True)
@given(data=st.data())
def test_weighted_loss_gradients_match_finite_differences(data):
    """float64: the weighted loss's gradient w.r.t. every parameter, for the fused softmax cross-entropy, the
    cross-entropy of one-hot targets and the mean squared error; and its value is sum_n w_n l_n / N."""
    n, features, classes = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4)), data.draw(st.integers(2, 4))
    kind = data.draw(st.sampled_from(["sparse", "onehot", "mse"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 1 << 20)))
    model = Sequential([Input((features,)), Dense(5, activation="relu"),
                        Dense(classes, activation=None if kind == "mse" else "softmax")], seed=1, dtype="float64")
    model.set_weights([rng.normal(size=w.shape) for w in model.get_weights()])
    model.compile("sgd", {"sparse": "sparse_categorical_crossentropy", "onehot": "categorical_crossentropy",
                          "mse": "mse"}[kind])
    x = rng.normal(size=(n, features))
    labels = rng.integers(0, classes, n)
    y = {"sparse": labels, "onehot": np.eye(classes)[labels], "mse": rng.normal(size=(n, classes))}[kind]
    w = rng.choice([0.0, 0.3, 1.0, 2.5], size=n)
    loss, grads = model.loss_and_gradients(x, y, sample_weight=w)
    for param, grad in zip(model.trainable_params(), grads):
        assert check_gradient(lambda: model.loss_and_gradients(x, y, sample_weight=w)[0], param, grad.copy()) < 1e-6
    per_example = [model.loss_and_gradients(x[i:i + 1], y[i:i + 1])[0] for i in range(n)]
    assert loss == pytest.approx(np.sum(w * np.array(per_example)) / n, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("call, words", [
    (lambda m, x, y: m.fit(x, y, class_weight={0: 1.0}, sample_weight=np.ones(len(x)), verbose=0), "at the same time"),
    (lambda m, x, y: m.fit(x, y, class_weight={"cat": 1.0}, verbose=0), "class indices"),
    (lambda m, x, y: m.fit(x, y, class_weight={9: 1.0}, verbose=0), "classes are 0..4"),
    (lambda m, x, y: m.fit(x, y, sample_weight=np.ones(3), verbose=0), "one weight per example"),
    (lambda m, x, y: m.fit(x, y, sample_weight=np.full(len(x), np.nan), verbose=0), "NaN"),
    (lambda m, x, y: m.fit(x, y, validation_split=1.5, verbose=0), "validation_split"),
    (lambda m, x, y: m.fit(x, y, epochs=-1, verbose=0), "epochs"),
    (lambda m, x, y: m.fit(x, y, verbose=7), "verbose"),
    (lambda m, x, y: m.fit(x, y, callbacks=[print], verbose=0), "Callback"),
], ids=["both", "bad key", "unknown class", "weights shape", "weights nan", "split", "epochs", "verbose", "callbacks"])
def test_bad_training_arguments_are_named_and_change_nothing(call, words):
    model = small_model(optimizer=optimizers.SGD(0.1))
    x, y = examples(10)
    before = model.get_weights()
    with pytest.raises((ValueError, TypeError), match=words):
        call(model, x, y)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# Callbacks driven directly, side by side with Keras's
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def twins(tf):
    """A numcnn model and its Keras twin, both compiled with "accuracy" (Keras's metrics built by one evaluate,
    so that mode="auto" can look their direction up)."""
    _, keras = tf
    model = small_model(metric_names=["accuracy"], optimizer=optimizers.SGD(0.1))
    keras_model = keras_twin(tf, model, keras.optimizers.SGD(0.1), ["accuracy"])
    x, y = examples(8)
    keras_model.evaluate(x, y, verbose=0)
    return model, keras_model


def mark_weights(model, value):
    model.set_weights([np.full_like(w, value) for w in model.get_weights()])


def drive_epochs(pairs, values, monitor, on_epoch_begin=False):
    """Call ``on_epoch_end(epoch, {monitor: value})`` epoch by epoch on each (callback, model) pair, the weights
    marked with the epoch number; stops after the first epoch where a model's ``stop_training`` is set.
    Returns, per pair, the epochs at whose end training was stopped and the logs each epoch ended with."""
    for callback, model in pairs:
        model.stop_training = False
        callback.set_model(model)
        callback.on_train_begin({})
    stopped, logs_seen = [[] for _ in pairs], [[] for _ in pairs]
    for epoch, value in enumerate(values):
        for index, (callback, model) in enumerate(pairs):
            mark_weights(model, epoch)
            if on_epoch_begin:
                callback.on_epoch_begin(epoch, {})
            logs = {"loss": 1.0, monitor: value}
            callback.on_epoch_end(epoch, logs)
            logs_seen[index].append(logs)
            if model.stop_training:
                stopped[index].append(epoch)
        if any(model.stop_training for _, model in pairs):
            break
    for callback, _ in pairs:
        callback.on_train_end({})
    return stopped, logs_seen


# Values with exact ties and with differences float32 cannot see (Keras compares in float32)
SCRIPT_VALUES = st.sampled_from([0.3, 0.30000001, 0.2999999999, 0.29, 0.31, 0.2, 0.5, 0.25, 0.2999, 0.7, 0.71])
CALLBACK_HYPOTHESIS = settings(HYPOTHESIS, max_examples=40)  # no training here: cheap


def compare_early_stopping(keras, model, keras_model, values, arguments):
    ours, theirs = callbacks.EarlyStopping(**arguments), keras.callbacks.EarlyStopping(**arguments)
    stopped, _ = drive_epochs([(ours, model), (theirs, keras_model)], values, arguments.get("monitor", "val_loss"))
    assert stopped[0] == stopped[1], (arguments, values)
    assert (ours.stopped_epoch, ours.best_epoch, ours.wait) == (theirs.stopped_epoch, theirs.best_epoch, theirs.wait)
    assert float(model.get_weights()[0].flat[0]) == float(keras_model.get_weights()[0].flat[0])  # restored epoch
    return stopped[0]


@pytest.mark.tf
def test_early_stopping_compares_in_float32_as_keras(tf, twins):
    """0.2999999999 < 0.3 in float64, but both round to the same float32: Keras counts no improvement (and stops
    at once with patience 0), where a float64 comparison would see one."""
    _, keras = tf
    assert compare_early_stopping(keras, *twins, [0.3, 0.2999999999, 0.2], dict(patience=0)) == [1]
    assert compare_early_stopping(keras, *twins, [0.3, 0.2999, 0.2], dict(patience=0)) == []
    # 0.45 is not min_delta = 0.05 better than 0.5 (0.45 + 0.05 < 0.5 fails): one epoch without improvement
    assert compare_early_stopping(keras, *twins, [0.5, 0.45, 0.41, 0.4], dict(patience=1, min_delta=0.05,
                                                                                restore_best_weights=True)) == [1]


@pytest.mark.tf
@CALLBACK_HYPOTHESIS
@given(data=st.data())
def test_early_stopping_decides_as_keras_does(tf, twins, data):
    _, keras = tf
    model, keras_model = twins
    values = data.draw(st.lists(SCRIPT_VALUES, min_size=1, max_size=9))
    arguments = dict(monitor=data.draw(st.sampled_from(["val_loss", "val_accuracy", "loss"])),
                     min_delta=data.draw(st.sampled_from([0, 0.005, 0.05])), patience=data.draw(st.integers(0, 3)),
                     mode=data.draw(st.sampled_from(["auto", "min", "max"])),
                     baseline=data.draw(st.sampled_from([None, 0.3, 0.6])),
                     restore_best_weights=data.draw(st.booleans()), start_from_epoch=data.draw(st.integers(0, 2)))
    compare_early_stopping(keras, model, keras_model, values, arguments)


def compare_reduce_lr(keras, model, keras_model, values, arguments):
    model.optimizer.learning_rate = 0.1
    keras_model.optimizer.learning_rate = 0.1
    ours, theirs = callbacks.ReduceLROnPlateau(**arguments), keras.callbacks.ReduceLROnPlateau(**arguments)
    _, logs = drive_epochs([(ours, model), (theirs, keras_model)], values, "val_loss")
    rates = [entry["learning_rate"] for entry in logs[0]]
    assert rates == [entry["learning_rate"] for entry in logs[1]], (arguments, values)
    assert model.optimizer.learning_rate == float(keras_model.optimizer.learning_rate.numpy())
    return rates


@pytest.mark.tf
def test_reduce_lr_on_plateau_cools_down_as_keras(tf, twins):
    _, keras = tf
    rates = compare_reduce_lr(keras, *twins, [0.5] * 8, dict(factor=0.5, patience=1, cooldown=2))
    assert len(set(rates)) == 4  # reduced at epochs 1, 3, 5, 7 (each logs the rate it started with)
    rates = compare_reduce_lr(keras, *twins, [0.5] * 6, dict(factor=0.1, patience=0, min_lr=0.0005))
    assert rates[-1] == float(np.float32(0.0005))


@pytest.mark.tf
@CALLBACK_HYPOTHESIS
@given(data=st.data())
def test_reduce_lr_on_plateau_follows_keras(tf, twins, data):
    _, keras = tf
    values = data.draw(st.lists(SCRIPT_VALUES, min_size=1, max_size=10))
    arguments = dict(monitor="val_loss", factor=data.draw(st.sampled_from([0.1, 0.5, 0.9])),
                     patience=data.draw(st.integers(0, 3)), mode=data.draw(st.sampled_from(["auto", "min", "max"])),
                     min_delta=data.draw(st.sampled_from([0, 1e-4, 0.02])), cooldown=data.draw(st.integers(0, 2)),
                     min_lr=data.draw(st.sampled_from([0.0, 0.004, 0.03])))
    compare_reduce_lr(keras, *twins, values, arguments)


@pytest.mark.tf
def test_learning_rate_scheduler_follows_keras(tf, twins):
    _, keras = tf
    model, keras_model = twins
    for schedule in (lambda epoch, lr: lr if epoch < 2 else lr * 0.7, lambda epoch: 0.1 / (1 + epoch)):
        model.optimizer.learning_rate = keras_model.optimizer.learning_rate = 0.05
        ours, theirs = callbacks.LearningRateScheduler(schedule), keras.callbacks.LearningRateScheduler(schedule)
        _, logs = drive_epochs([(ours, model), (theirs, keras_model)], [0.5] * 5, "val_loss", on_epoch_begin=True)
        assert [entry["learning_rate"] for entry in logs[0]] == [entry["learning_rate"] for entry in logs[1]]
    with pytest.raises(ValueError, match="should be a float"):
        bad = callbacks.LearningRateScheduler(lambda epoch: "fast")
        bad.set_model(model)
        bad.on_epoch_begin(0)


@pytest.mark.tf
@pytest.mark.parametrize("arguments", [
    dict(),
    dict(save_best_only=True),
    dict(save_best_only=True, mode="max", monitor="val_accuracy"),
    dict(save_best_only=True, initial_value_threshold=0.29),
], ids=["every epoch", "best", "best max", "threshold"])
def test_model_checkpoint_saves_the_epochs_keras_saves(tf, twins, tmp_path, arguments):
    """The same scripted logs through both: the same file names ({epoch} and {val_loss} formatting), and each
    numcnn .keras file holds the weights of its epoch."""
    _, keras = tf
    model, keras_model = twins
    pattern = "m-{epoch:02d}-{val_loss:.3f}.keras"
    monitor = arguments.pop("monitor", "val_loss")
    ours = callbacks.ModelCheckpoint(str(tmp_path / "ours" / pattern), monitor=monitor, **arguments)
    theirs = keras.callbacks.ModelCheckpoint(str(tmp_path / "keras" / pattern), monitor=monitor, **arguments)
    values = [0.3, 0.30000001, 0.25, 0.4, 0.2]
    for callback, m in ((ours, model), (theirs, keras_model)):
        callback.set_model(m)
        callback.on_train_begin({})
        for epoch, value in enumerate(values):
            mark_weights(m, epoch)
            callback.on_epoch_begin(epoch, {})
            callback.on_epoch_end(epoch, {"loss": 1.0, "val_loss": value, "val_accuracy": value})
    saved = sorted(os.listdir(tmp_path / "ours"))
    assert saved == sorted(os.listdir(tmp_path / "keras"))
    for name in saved:
        epoch = int(name[2:4]) - 1
        assert all(np.all(w == epoch) for w in numcnn.load_model(tmp_path / "ours" / name).get_weights())


def test_model_checkpoint_in_fit_writes_whole_files_every_n_batches(tmp_path):
    x, y = examples(40)
    model = small_model(optimizer=optimizers.SGD(0.1))
    checkpoint = callbacks.ModelCheckpoint(str(tmp_path / "e{epoch}-b{batch}.npz"), save_freq=3)
    model.fit(x, y, batch_size=8, epochs=2, callbacks=[checkpoint], verbose=0)  # 5 batches an epoch
    assert sorted(os.listdir(tmp_path)) == ["e1-b3.npz", "e2-b1.npz", "e2-b4.npz"]  # no temporary files left
    last = numcnn.load_model(tmp_path / "e2-b4.npz")
    assert last.get_config() == model.get_config()
    weights_only = callbacks.ModelCheckpoint(str(tmp_path / "w.weights.h5"), save_weights_only=True)
    model.fit(x, y, epochs=1, callbacks=[weights_only], verbose=0)
    filled = numcnn.load_model(tmp_path / "w.weights.h5", model=small_model(seed=5))
    for a, b in zip(filled.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=".weights.h5"):
        callbacks.ModelCheckpoint(str(tmp_path / "w.npz"), save_weights_only=True)
    with pytest.raises(ValueError, match=".keras"):
        callbacks.ModelCheckpoint(str(tmp_path / "model.pickle"))


@pytest.mark.tf
def test_csv_logger_writes_the_bytes_keras_writes(tf, twins, tmp_path):
    _, keras = tf
    model, keras_model = twins
    epochs = [{"loss": 0.5, "accuracy": 0.25}, {"loss": 0.125, "accuracy": 0.75}]
    for append in (False, True):
        for logger, m in ((callbacks.CSVLogger(tmp_path / "ours.csv", append=append), model),
                          (keras.callbacks.CSVLogger(str(tmp_path / "keras.csv"), append=append), keras_model)):
            logger.set_model(m)
            logger.on_train_begin({})
            for epoch, logs in enumerate(epochs):
                logger.on_epoch_end(epoch, dict(logs))
            logger.on_train_end({})
        assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "keras.csv").read_bytes()
    assert (tmp_path / "ours.csv").read_text().count("epoch") == 1  # appended rows, one header


@pytest.mark.tf
def test_terminate_on_nan_stops_as_keras_does_and_keeps_good_weights(tf, twins):
    _, keras = tf
    model, keras_model = twins
    for ours, theirs in ((callbacks.TerminateOnNaN(), keras.callbacks.TerminateOnNaN()),):
        stops = []
        for callback, m in ((ours, model), (theirs, keras_model)):
            m.stop_training = False
            callback.set_model(m)
            flags = []
            for batch, loss in enumerate([1.0, 2.0, float("inf"), 3.0]):
                callback.on_train_batch_end(batch, {"loss": loss})
                flags.append(m.stop_training)
            stops.append(flags)
        assert stops[0] == stops[1] == [False, False, True, True]
    diverging = small_model(optimizer=optimizers.SGD(1e30))
    x, y = examples(64)
    history = diverging.fit(x, y, batch_size=8, epochs=3, callbacks=[callbacks.TerminateOnNaN()], verbose=0)
    assert len(history.history["loss"]) == 1 and math.isnan(history.history["loss"][0])
    assert all(np.isfinite(w).all() for w in diverging.get_weights())  # the bad step was not applied
    with pytest.raises(RuntimeError, match="NaN or Inf loss"):
        small_model(optimizer=optimizers.SGD(1e30)).fit(x, y, batch_size=8, verbose=0,
                                                        callbacks=[callbacks.TerminateOnNaN(raise_error=True)])
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step \d+"):  # without the callback: an error
        small_model(optimizer=optimizers.SGD(1e30)).fit(x, y, batch_size=8, verbose=0)


# ------------------------------------------------------------------------------------------------
# Callbacks inside real fits, against Keras's fit
# ------------------------------------------------------------------------------------------------
def recorder_class(base):
    """A callback (subclass of ``base``) that records every hook call, and stops training at (epoch 1, batch 1)."""

    class Recorder(base):
        def __init__(self):
            super().__init__()
            self.calls, self.epoch = [], None

        def _record(self, hook, index=None, logs=None):
            self.calls.append((hook, index, tuple(sorted(logs or {}))))

    hooks = {
        "on_train_begin": None, "on_train_end": None, "on_test_begin": None, "on_test_end": None,
        "on_epoch_begin": "epoch", "on_epoch_end": "epoch", "on_train_batch_begin": "batch",
        "on_train_batch_end": "batch", "on_test_batch_begin": "batch", "on_test_batch_end": "batch",
    }
    for hook, argument in hooks.items():
        def method(self, *args, _hook=hook, _argument=argument, **kwargs):
            index, rest = (args[0], args[1:]) if _argument else (None, args)  # Keras passes logs by position
            self._record(_hook, index, kwargs.get("logs", rest[0] if rest else None))
            if _hook == "on_epoch_begin":
                self.epoch = index
            if _hook == "on_train_batch_end" and (self.epoch, index) == (1, 1):
                self.model.stop_training = True
        setattr(Recorder, hook, method)
    return Recorder


@pytest.mark.tf
def test_callback_protocol_is_keras_order_and_stop_training_ends_fit_as_keras(tf):
    _, keras = tf
    x, y = examples(40)
    model = small_model()
    keras_model = keras_twin(tf, model, keras.optimizers.SGD(0.0), ["accuracy"])
    ours, theirs = recorder_class(callbacks.Callback)(), recorder_class(keras.callbacks.Callback)()
    validation = (x[30:], y[30:])
    our_history = model.fit(x[:30], y[:30], batch_size=8, epochs=3, validation_data=validation, callbacks=[ours],
                            verbose=0)
    their_history = keras_model.fit(x[:30], y[:30], batch_size=8, epochs=3, validation_data=validation,
                                    callbacks=[theirs], verbose=0)
    assert ours.calls == theirs.calls
    assert ours.params == theirs.params == {"verbose": 0, "epochs": 3, "steps": 4}
    assert our_history.epoch == their_history.epoch == [0, 1]


@pytest.mark.tf
def test_early_stopping_inside_fit_stops_and_restores_as_keras(tf):
    """A scripted val_loss (set by a callback listed first: the logs dict is shared) drives EarlyStopping
    inside real fits: the same number of epochs, and the weights of the same best epoch restored."""
    _, keras = tf
    script = [0.9, 0.5, 0.6, 0.55, 0.52, 0.4, 0.3]
    x, y = examples(16)

    def run(model, module):
        snapshots = []

        class Scripted(module.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs["val_loss"] = script[epoch]
                snapshots.append([w.copy() for w in self.model.get_weights()])

        stopper = module.callbacks.EarlyStopping(patience=2, restore_best_weights=True)
        history = model.fit(x, y, batch_size=8, epochs=len(script), callbacks=[Scripted(), stopper], verbose=0)
        return history, snapshots, stopper

    model = small_model(optimizer=optimizers.SGD(0.05))
    keras_model = keras_twin(tf, model, keras.optimizers.SGD(0.05), ["accuracy"])
    ours, our_snapshots, our_stopper = run(model, numcnn)
    theirs, their_snapshots, their_stopper = run(keras_model, keras)
    assert len(ours.history["loss"]) == len(theirs.history["loss"]) == 4  # best at epoch 1, then 2 without
    assert ours.history["val_loss"] == theirs.history["val_loss"] == script[:4]
    assert our_stopper.best_epoch == their_stopper.best_epoch == 1
    for a, b in zip(model.get_weights(), our_snapshots[1]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(keras_model.get_weights(), their_snapshots[1]):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# Keras's *_on_batch API and pop
# ------------------------------------------------------------------------------------------------
@pytest.mark.tf
def test_on_batch_methods_return_what_keras_returns(tf):
    _, keras = tf
    x, y = examples(12)
    for names in ([], ["accuracy", "sparse_top_k_categorical_accuracy"]):
        model = small_model(metric_names=names, optimizer=optimizers.SGD(0.1))
        keras_model = keras_twin(tf, model, keras.optimizers.SGD(0.1), names)
        ours, theirs = model.train_on_batch(x, y), keras_model.train_on_batch(x, y)
        assert type(ours) is type(theirs) and np.allclose(ours, theirs, rtol=1e-6)  # float alone, else a list
        for a, b in zip(model.get_weights(), keras_model.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        assert_logs_equal(model.test_on_batch(x, y, return_dict=True),
                          keras_model.test_on_batch(x, y, return_dict=True))
        assert np.allclose(model.test_on_batch(x, y), keras_model.test_on_batch(x, y), rtol=1e-6)
        assert_logs_equal(model.train_on_batch(x, y, class_weight={1: 3.0}, return_dict=True),
                          keras_model.train_on_batch(x, y, class_weight={1: 3.0}, return_dict=True))
        np.testing.assert_allclose(model.predict_on_batch(x), keras_model.predict_on_batch(x), rtol=1e-5, atol=1e-7)


def test_pop_removes_the_last_layer_as_keras():
    model = small_model()
    last = model.pop()
    assert isinstance(last, Dense) and last.units == 5 and model.output_shape == (8,)
    model.pop()
    with pytest.raises(TypeError, match="no layers"):
        model.pop()


# ------------------------------------------------------------------------------------------------
# Resume: the new loop (metrics, class weights, callbacks) still resumes bit for bit
# ------------------------------------------------------------------------------------------------
class Crash(Exception):
    pass


def test_crashed_fit_with_metrics_and_class_weights_resumes_bit_identically(tmp_path):
    x, y = examples(40, classes=7)
    names = ["accuracy", "sparse_top_k_categorical_accuracy"]
    arguments = dict(batch_size=8, epochs=3, seed=4, class_weight={2: 3.0, 5: 0.5}, validation_split=0.2, verbose=0)
    straight = small_model(7, names, optimizer=optimizers.Nadam(0.01))
    expected = straight.fit(x, y, **arguments)

    def crash_at(epoch, batch):
        def check(b, logs):
            if (crasher.epoch, b) == (epoch, batch):
                raise Crash()
        crasher = callbacks.LambdaCallback(on_epoch_begin=lambda e, logs: setattr(crasher, "epoch", e),
                                           on_train_batch_end=check)
        return crasher

    interrupted = small_model(7, names, optimizer=optimizers.Nadam(0.01))
    with pytest.raises(Crash):  # dies in epoch 1 after batch 2; the last checkpoint is after batch 1 (every 2)
        interrupted.fit(x, y, **arguments, checkpoint_dir=tmp_path, checkpoint_every=2, callbacks=[crash_at(1, 2)])
    resumed = small_model(7, names, optimizer=optimizers.Nadam(0.01), seed=9)  # other weights: all from the file
    history = resumed.fit(x, y, **arguments, checkpoint_dir=tmp_path, resume=True)
    assert history.history == expected.history and history.epoch == expected.epoch
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
