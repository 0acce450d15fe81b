"""Bad input ends in a clear numcnn error naming the problem; files survive crashes; training resumes exactly."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numcnn import Sequential, load_model, optimizers
from numcnn.errors import (InputDTypeError, LabelError, ModelFileError, NonFiniteError, NumcnnError, ShapeError,
                           TrainingDivergedError)
from numcnn.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D


def tiny_model(seed=0):
    model = Sequential([Input((8, 8, 1)), Conv2D(2, 3, activation="relu"), MaxPooling2D(2), Flatten(),
                        Dense(3, activation="softmax")], seed=seed)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


X = np.random.default_rng(0).random((6, 8, 8, 1)).astype(np.float32)
Y = np.array([0, 1, 2, 0, 1, 2])


def with_nan(x):
    x = x.copy()
    x[2, 3, 4, 0] = np.nan
    return x


def with_inf(x):
    x = x.copy()
    x[0, 0, 0, 0] = np.inf
    return x


# (category, call on a tiny model, expected error type, words the message must contain)
BAD_INPUTS = [
    ("wrong shape", lambda m: m.predict(np.zeros((2, 9, 8, 1), np.float32)), ShapeError, "(N, 8, 8, 1)"),
    ("wrong rank", lambda m: m.predict(np.zeros((2, 8, 8), np.float32)), ShapeError, "(2, 8, 8)"),
    ("one example, no batch axis", lambda m: m.predict(np.zeros((8, 8, 1), np.float32)), ShapeError, "x[None]"),
    ("empty batch", lambda m: m.predict(np.zeros((0, 8, 8, 1), np.float32)), ShapeError, "empty"),
    ("object dtype", lambda m: m.predict(np.empty((2, 8, 8, 1), object)), InputDTypeError, "object"),
    ("strings", lambda m: m.predict(np.full((2, 8, 8, 1), "a")), InputDTypeError, "<U1"),
    ("complex", lambda m: m.predict(np.zeros((2, 8, 8, 1), complex)), InputDTypeError, "complex"),
    ("uint8 images", lambda m: m.predict(np.zeros((2, 8, 8, 1), np.uint8)), InputDTypeError, "images_to_input"),
    ("int64 images", lambda m: m.fit(np.zeros((6, 8, 8, 1), np.int64), Y, verbose=0), InputDTypeError, "integer"),
    ("bool images", lambda m: m.predict(np.zeros((2, 8, 8, 1), bool)), InputDTypeError, "integer"),
    ("NaN in fit", lambda m: m.fit(with_nan(X), Y, verbose=0), NonFiniteError, "NaN"),
    ("inf in evaluate", lambda m: m.evaluate(with_inf(X), Y), NonFiniteError, "infinite"),
    ("NaN in predict", lambda m: m.predict(with_nan(X)), NonFiniteError, "NaN"),
    ("label too large", lambda m: m.fit(X, np.array([0, 1, 2, 3, 0, 1]), verbose=0), LabelError, "[0, 3)"),
    ("negative label", lambda m: m.evaluate(X, np.array([0, -1, 2, 0, 1, 2])), LabelError, "[0, 3)"),
    ("fractional label", lambda m: m.fit(X, Y + 0.5, verbose=0), LabelError, "whole numbers"),
    ("labels wrong shape", lambda m: m.fit(X, np.zeros((6, 2)), verbose=0), LabelError, "shape"),
    ("labels wrong count", lambda m: m.fit(X, Y[:5], verbose=0), LabelError, "6 examples"),
    ("string labels", lambda m: m.fit(X, np.array(list("abcabc")), verbose=0), LabelError, "numbers"),
    ("batch_size 0", lambda m: m.fit(X, Y, batch_size=0, verbose=0), ValueError, "batch_size"),
    ("batch_size -3", lambda m: m.predict(X, batch_size=-3), ValueError, "batch_size"),
    ("batch_size 2.5", lambda m: m.evaluate(X, Y, batch_size=2.5), ValueError, "batch_size"),
    ("set_weights wrong count", lambda m: m.set_weights(m.get_weights()[:-1]), ShapeError, "4 weight arrays"),
    ("set_weights wrong shape", lambda m: m.set_weights([w.T for w in m.get_weights()]), ShapeError, "conv2d"),
    ("layer fed the wrong channels", lambda m: m.layers[0].forward(np.zeros((1, 8, 8, 3), np.float32)), ShapeError,
     "'conv2d'"),
    ("dense fed the wrong features", lambda m: m.layers[-1].forward(np.zeros((1, 7), np.float32)), ShapeError,
     "'dense'"),
]


@pytest.mark.parametrize("call, error, words", [case[1:] for case in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_error(call, error, words):
    model = tiny_model()
    before = model.get_weights()
    with pytest.raises(error) as info:
        call(model)
    assert words in str(info.value)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing was half-done


def test_errors_are_numcnn_errors_and_builtin_kinds():
    assert issubclass(ShapeError, ValueError) and issubclass(InputDTypeError, TypeError)
    assert all(issubclass(e, NumcnnError) for e in (ShapeError, InputDTypeError, NonFiniteError, LabelError,
                                                     ModelFileError, TrainingDivergedError))


# ------------------------------------------------------------------------------------------------
# Model files
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def valid_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.npz"
    model = tiny_model()
    model.fit(X, Y, epochs=1, verbose=0)
    model.save(path)
    return path.read_bytes(), model.get_weights()


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_model_files_load_or_raise_model_file_error(valid_file, tmp_path, data):
    content, weights = valid_file
    damaged = bytearray(content)
    if data.draw(st.booleans()):
        damaged = damaged[:data.draw(st.integers(0, len(content) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            position = data.draw(st.integers(0, len(content) - 1))
            damaged[position] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "fuzzed.npz"
    path.write_bytes(bytes(damaged))
    try:
        loaded = load_model(path)
    except ModelFileError:
        return
    for a, b in zip(loaded.get_weights(), weights):  # it loaded: then it must be exactly the saved model
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("content, words", [
    (b"", "not a readable"),
    (b"PK\x03\x04garbage", "not a readable"),
    (b"\x80\x04\x95pickle", "not a readable"),
])
def test_hostile_or_foreign_files_are_refused(tmp_path, content, words):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match=words):
        load_model(path)


def test_wrong_version_and_foreign_npz_are_refused(tmp_path):
    import json

    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(ModelFileError, match="no numcnn header"):
        load_model(tmp_path / "foreign.npz")
    header = {"format": "numcnn-model", "version": 99}
    np.savez(tmp_path / "future.npz", header=np.frombuffer(json.dumps(header).encode(), np.uint8))
    with pytest.raises(ModelFileError, match="version 99"):
        load_model(tmp_path / "future.npz")


SAVER = """
import sys, numpy as np
from tests.test_trust import tiny_model
model = tiny_model()
path, i = sys.argv[1], 0
print("ready", flush=True)
while True:
    i += 1
    model.set_weights([np.full_like(w, i % 2) for w in model.get_weights()])
    model.save(path)
"""


def test_kill_during_save_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "model.npz"
    tiny_model().save(path)
    rng = np.random.default_rng(0)
    for _ in range(20):
        process = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE,
                                   cwd=Path(__file__).parent.parent)
        process.stdout.readline()  # imported and looping
        time.sleep(rng.uniform(0.0, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        loaded = load_model(path)  # never half-written
        values = {float(w.flat[0]) for w in loaded.get_weights()}
        assert len(values) == 1  # one whole save, not a mix of two
    assert not [p for p in tmp_path.iterdir() if p.name != "model.npz" and not p.name.startswith(".model.npz.")] 


# ------------------------------------------------------------------------------------------------
# Checkpoints and divergence
# ------------------------------------------------------------------------------------------------
def run_cli(*args):
    return subprocess.Popen([sys.executable, "-m", "numcnn.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_training_killed_mid_epoch_resumes_bit_identically(tmp_path):
    common = ["train", "--epochs", "2", "--quiet", "--seed", "3", "--checkpoint-every", "10"]
    straight = run_cli(*common, "--out", str(tmp_path / "straight"), "--checkpoint-dir", str(tmp_path / "ck1"))
    assert straight.wait(600) == 0, straight.stderr.read()

    checkpoint = tmp_path / "ck2" / "checkpoint.npz"
    interrupted = run_cli(*common, "--out", str(tmp_path / "resumed"), "--checkpoint-dir", str(tmp_path / "ck2"))
    deadline = time.time() + 300
    while time.time() < deadline and interrupted.poll() is None and not checkpoint.exists():
        time.sleep(0.01)
    time.sleep(0.3)
    interrupted.send_signal(signal.SIGKILL)  # mid-training: 250 steps, a checkpoint every 10
    interrupted.wait()
    from numcnn.io import read_arrays_file

    position = read_arrays_file(checkpoint)[0]["extra"]["training"]
    assert position["epoch"] < 2 and (position["epoch"], position["step"]) != (0, 0)
    resumed = run_cli(*common, "--out", str(tmp_path / "resumed"), "--checkpoint-dir", str(tmp_path / "ck2"), "--resume")
    assert resumed.wait(600) == 0, resumed.stderr.read()
    for a, b in zip(load_model(tmp_path / "straight" / "model.npz").get_weights(),
                    load_model(tmp_path / "resumed" / "model.npz").get_weights()):
        np.testing.assert_array_equal(a, b)


def test_resume_in_process_matches_uninterrupted(tmp_path):
    x = np.random.default_rng(1).random((50, 8, 8, 1)).astype(np.float32)
    y = np.random.default_rng(2).integers(0, 3, 50)
    straight = tiny_model()
    straight.fit(x, y, epochs=3, batch_size=8, seed=5, verbose=0)
    first = tiny_model()
    first.fit(x, y, epochs=2, batch_size=8, seed=5, verbose=0, checkpoint_dir=tmp_path, checkpoint_every=3)
    second = tiny_model(seed=42)  # different initial weights: everything must come from the checkpoint
    history = second.fit(x, y, epochs=3, batch_size=8, seed=5, verbose=0, checkpoint_dir=tmp_path, resume=True)
    assert len(history.history["loss"]) == 3
    for a, b in zip(straight.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_non_finite_loss_stops_training_and_keeps_the_last_good_weights():
    model = tiny_model()
    model.compile(optimizers.SGD(learning_rate=1e30), "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((64, 8, 8, 1)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 3, 64)
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, step \d+") as info:
        model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert all(np.isfinite(w).all() for w in model.get_weights()), str(info.value)


def test_cli_errors_are_one_line_with_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "numcnn.cli", "train", "--resume"], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--checkpoint-dir" in result.stderr
    result = subprocess.run([sys.executable, "-m", "numcnn.cli", "train", "--dataset", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "IDX" in result.stderr
