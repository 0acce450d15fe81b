"""Model files (numcnn .npz, Keras .keras / .weights.h5 / legacy .h5), the command line's checks and messages,
lazy submodules, ``to_categorical``, the Numba cache keyed on the kernel sources, CI honesty and packaging.

Keras facts are measured here, against Keras itself (via the ``tf`` fixture: TensorFlow 2.21 / Keras 3.15,
oneDNN off): the layout of a ``.keras`` archive and of its HDF5 weights, the configs Keras writes, the order of
an optimizer's variables, ``keras.utils.to_categorical``'s values and dtype. Nothing expected is copied from
numcnn's own output.
"""

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import numcnn
from numcnn import losses, optimizers
from numcnn.errors import LabelError, ModelFileError
from numcnn.interop import keras as keras_files
from numcnn.io import load_model, model_file_kind
from numcnn.layers import (ELU, Activation, AveragePooling2D, BatchNormalization, Conv2D, Conv2DTranspose, Dense,
                           Dropout, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, Input, LeakyReLU,
                           MaxPooling2D, ReLU, Reshape, Softmax, UpSampling2D, ZeroPadding2D)
from numcnn.model import Sequential
from numcnn.zoo import seed_mnist_model

ROOT = Path(__file__).parent.parent
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------------------------
# Models every table entry of numcnn/interop/keras.py appears in (add an example for a new entry)
# ------------------------------------------------------------------------------------------------
def every_layer_model(dtype="float32"):
    return Sequential([
        Input((9, 9, 2)),
        Conv2D(3, 3, strides=2, padding="same", use_bias=False, kernel_initializer="he_normal"), ReLU(),
        MaxPooling2D(3, strides=1, padding="same"),
        Conv2D(4, (2, 3), activation="relu", kernel_initializer="he_uniform", bias_initializer="ones"),
        Activation("relu"), Flatten(), Dense(5, kernel_initializer="glorot_normal"), Softmax(),
    ], name="every_layer", seed=3, dtype=dtype)


def wider_layers_model(dtype="float32"):
    """The layers beyond the seed model, with non-default arguments (so a dropped key would show)."""
    return Sequential([
        Input((8, 8, 2)),
        ZeroPadding2D(((1, 0), (0, 2))), Conv2D(4, 3, activation="elu"), BatchNormalization(momentum=0.9, epsilon=1e-2),
        LeakyReLU(0.1), AveragePooling2D(2, strides=1, padding="same"), Dropout(0.3, seed=5),
        Conv2DTranspose(3, 3, strides=2, padding="same", activation="tanh"), UpSampling2D((1, 2)), ELU(0.5),
        BatchNormalization(center=False), GlobalMaxPooling2D(keepdims=True), Reshape((3,)), Dense(6, activation="gelu"),
        Activation("sigmoid"), Dense(5, activation="softmax"),
    ], name="wider_layers", seed=4, dtype=dtype)


def global_average_model(dtype="float32"):
    return Sequential([Input((5, 5, 3)), Conv2D(4, 2, activation="leaky_relu"), GlobalAveragePooling2D(),
                       Dense(5, activation="softmax")], name="global_average", seed=5, dtype=dtype)


EXAMPLE_MODELS = {"seed model": lambda dtype: seed_mnist_model(seed=1, dtype=dtype), "every layer": every_layer_model,
                  "wider layers": wider_layers_model, "global average": global_average_model}


def trained(model, optimizer="adam", steps=2):
    """Compiled and trained a few steps, so that the optimizer has state worth saving."""
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if steps:
        rng = np.random.default_rng(0)
        x = rng.random((8 * steps, *model.input_shape)).astype(model.dtype)
        model.fit(x, rng.integers(0, model.output_shape[-1], len(x)), epochs=1, batch_size=8, verbose=0)
    return model


def inputs(model, n=4, seed=7):
    return np.random.default_rng(seed).random((n, *model.input_shape)).astype(model.dtype)


def without_object_ids(value):
    """A config as JSON gives it (lists, not tuples), without Keras's in-memory ``shared_object_id``."""
    value = json.loads(json.dumps(value))

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k != "shared_object_id"}
        return [strip(x) for x in v] if isinstance(v, list) else v
    return strip(value)


def h5_layout(data: bytes) -> dict:
    """Every group and dataset of an HDF5 file: path -> (attributes, shape, dtype)."""
    layout = {}
    with h5py.File(io.BytesIO(data), "r") as h5:
        def visit(name, obj):
            attrs = {k: str(v) for k, v in obj.attrs.items()}
            layout[name] = (attrs, getattr(obj, "shape", None), str(getattr(obj, "dtype", "")))
        h5.visititems(visit)
        layout["/"] = ({k: str(v) for k, v in h5.attrs.items()}, None, "")
    return layout


def optimizer_variable_name(variable, model_name: str) -> str:
    """``adam/conv2d_kernel_momentum`` or, for variables Keras made under the model's name scope,
    ``adam/<model>_conv2d_kernel_momentum``: the part after the optimizer and the model."""
    name = variable.path.split("/", 1)[1]
    return name[len(model_name) + 1:] if name.startswith(model_name + "_") else name


def test_examples_cover_the_whole_layer_table():
    covered = {type(layer) for make in EXAMPLE_MODELS.values() for layer in make("float32").layers}
    missing = {m.numcnn_class.__name__ for m in keras_files.LAYER_MAPPINGS} - {c.__name__ for c in covered}
    assert not missing, f"add a layer of each class to EXAMPLE_MODELS: {sorted(missing)}"


# ------------------------------------------------------------------------------------------------
# numcnn -> Keras files
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("example", sorted(EXAMPLE_MODELS))
def test_numcnn_keras_file_is_loaded_by_keras_and_predicts_the_same(tf, tmp_path, example, dtype):
    _, keras = tf
    model = trained(EXAMPLE_MODELS[example](dtype))
    model.save(tmp_path / "model.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(tmp_path / "model.keras")
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    x = inputs(model)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x), rtol=1e-6, atol=1e-6)
    # The config written is what Keras itself serializes for the model it loaded (every key, every value).
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        ours = json.loads(archive.read("config.json"))
    assert without_object_ids(ours) == without_object_ids(keras.saving.serialize_keras_object(loaded))
    assert ours["compile_config"]["optimizer"] == without_object_ids(keras.saving.serialize_keras_object(loaded.optimizer))
    assert loaded.compiled and int(loaded.optimizer.iterations) == model.optimizer.iterations == 2
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_keras_archive_layout_matches_what_keras_writes(tf, tmp_path):
    """Same zip entries in the same order, stored uncompressed; the same HDF5 groups, datasets and attributes
    as Keras's own file for the same model (Keras re-saves the model it loaded from ours)."""
    _, keras = tf
    model = trained(every_layer_model())
    model.save(tmp_path / "ours.keras")
    keras.models.load_model(tmp_path / "ours.keras").save(tmp_path / "theirs.keras")
    with zipfile.ZipFile(tmp_path / "ours.keras") as ours, zipfile.ZipFile(tmp_path / "theirs.keras") as theirs:
        assert ours.namelist() == theirs.namelist()
        assert [i.compress_type for i in ours.infolist()] == [i.compress_type for i in theirs.infolist()]
        assert json.loads(ours.read("metadata.json")).keys() == json.loads(theirs.read("metadata.json")).keys()
        assert h5_layout(ours.read("model.weights.h5")) == h5_layout(theirs.read("model.weights.h5"))


OPTIMIZER_CASES = {
    "adam": lambda: optimizers.Adam(learning_rate=0.003),
    "adam amsgrad": lambda: optimizers.Adam(amsgrad=True),
    "adam schedule": lambda: optimizers.Adam(optimizers.schedules.ExponentialDecay(0.01, decay_steps=1, decay_rate=0.5)),
    "adamw": lambda: optimizers.AdamW(weight_decay=0.01),
    "sgd": lambda: optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    "rmsprop": lambda: optimizers.RMSprop(momentum=0.5, centered=True),
    "adagrad": lambda: optimizers.Adagrad(initial_accumulator_value=0.2),
}
# Keras's slot names (the end of a variable's name) -> numcnn's, per optimizer family
ADAM_SLOTS = {"momentum": "m", "velocity": "v", "velocity_hat": "v_hat"}
KERAS_SLOTS = {"adam": ADAM_SLOTS, "adamw": ADAM_SLOTS, "sgd": {"momentum": "momentum"},
               "adagrad": {"accumulator": "accumulator"},
               "rmsprop": {"velocity": "velocity", "momentum": "momentum", "average_gradient": "average_gradient"}}


@pytest.mark.parametrize("case", sorted(OPTIMIZER_CASES))
@pytest.mark.parametrize("steps", [2, 0])
def test_optimizer_state_lands_in_the_keras_variables_of_the_same_name(tf, tmp_path, case, steps):
    """Keras names each optimizer variable ``<optimizer>/<layer>_<weight>_<slot>``: each one must hold the
    numcnn slot of that weight (checked by name, independently of the order numcnn writes them in). With 0
    steps numcnn has no slots yet: the file holds what a first step would start from (Adagrad: not zeros)."""
    _, keras = tf
    optimizer = OPTIMIZER_CASES[case]()
    model = trained(seed_mnist_model(seed=2), optimizer=optimizer, steps=steps)
    model.save(tmp_path / "model.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(tmp_path / "model.keras")
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    assert type(loaded.optimizer).__name__ == keras_files.KERAS_OPTIMIZERS[optimizer.name][0]
    if not optimizer.slots:
        optimizer.build(model.trainable_params())
    slot_of = KERAS_SLOTS[optimizer.name]
    index = {f"{layer.name}_{key}": i for i, (layer, key) in
             enumerate((layer, key) for layer in model.layers for key in layer.params)}
    checked = 0
    for variable in loaded.optimizer.variables:
        name = optimizer_variable_name(variable, model.name)
        if name in ("iteration", "learning_rate"):
            expected = model.optimizer.iterations if name == "iteration" else np.float32(model.optimizer.learning_rate)
            assert variable.numpy() == expected
            continue
        slot = next(s for s in sorted(slot_of, key=len, reverse=True) if name.endswith("_" + s))
        np.testing.assert_array_equal(variable.numpy(), model.optimizer.slots[slot_of[slot]][index[name[:-len(slot) - 1]]])
        checked += 1
    assert checked == len(model.optimizer.slots) * len(index) and int(loaded.optimizer.iterations) == steps


@pytest.mark.parametrize("loss", [losses.SparseCategoricalCrossentropy(from_logits=True),
                                  losses.CategoricalCrossentropy(label_smoothing=0.1),
                                  losses.BinaryCrossentropy(from_logits=True), losses.MeanSquaredError()],
                         ids=lambda loss: loss.name)
def test_losses_round_trip_through_keras(tf, tmp_path, loss):
    """Keras rebuilds the loss from the file (its own config equals ours) and numcnn reads Keras's file back
    to a loss of the same settings."""
    _, keras = tf
    model = Sequential([Input((4,)), Dense(3)], seed=0)
    model.compile(optimizer="sgd", loss=loss)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        ours = json.loads(archive.read("config.json"))["compile_config"]["loss"]
    if isinstance(ours, dict):
        assert ours == without_object_ids(keras.saving.serialize_keras_object(loaded.loss))
    loaded.save(tmp_path / "k.keras")
    back = numcnn.load_model(tmp_path / "k.keras")
    assert type(back.loss) is type(loss) and back.loss.get_config() == loss.get_config()


def test_a_loss_option_keras_lacks_saves_without_compile_settings(tmp_path):
    model = Sequential([Input((4,)), Dense(3, activation="softmax")], seed=0)
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(label_smoothing=0.1))
    with pytest.warns(UserWarning, match="without its compile settings.*label_smoothing"):
        model.save(tmp_path / "m.keras")
    assert numcnn.load_model(tmp_path / "m.keras").loss is None


def test_weights_h5_is_read_by_keras(tf, tmp_path):
    _, keras = tf
    model = trained(seed_mnist_model(seed=4))
    model.save(tmp_path / "model.weights.h5")
    twin = keras_files.keras_seed_mnist_model()
    twin.load_weights(tmp_path / "model.weights.h5")
    for ours, theirs in zip(model.get_weights(), twin.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


# ------------------------------------------------------------------------------------------------
# Keras files -> numcnn
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_saved(tf, tmp_path_factory):
    """A Keras model with its own layer names, compiled and trained two steps, saved in all three formats."""
    _, keras = tf
    L = keras.layers
    model = keras.Sequential([keras.Input((10, 10, 1)), L.Conv2D(4, 3, activation="relu", name="features"),
                              L.MaxPooling2D(), L.Flatten(), L.Dense(6, activation="softmax", name="classifier")],
                             name="k_model")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    model.fit(rng.random((16, 10, 10, 1)).astype(np.float32), rng.integers(0, 6, 16), batch_size=8, epochs=1, verbose=0)
    folder = tmp_path_factory.mktemp("keras")
    model.save(folder / "model.keras")
    model.save_weights(folder / "model.weights.h5")
    model.save(folder / "legacy.h5")
    return model, folder


def test_keras_saved_keras_file_loads_compiled_into_numcnn(keras_saved):
    keras_model, folder = keras_saved
    model = numcnn.load_model(folder / "model.keras")
    x = np.random.default_rng(1).random((5, 10, 10, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), keras_model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    assert [layer.name for layer in model.layers] == [layer.name for layer in keras_model.layers]
    assert model.name == "k_model" and model.loss.name == "sparse_categorical_crossentropy"
    assert model.metrics == ["accuracy"] and model.optimizer.name == "adam"
    assert model.optimizer.learning_rate == pytest.approx(0.01) and model.optimizer.iterations == 2
    keras_state = {optimizer_variable_name(v, "k_model"): v.numpy() for v in keras_model.optimizer.variables}
    np.testing.assert_array_equal(model.optimizer.slots["m"][0], keras_state["features_kernel_momentum"])
    np.testing.assert_array_equal(model.optimizer.slots["v"][3], keras_state["classifier_bias_velocity"])


def test_keras_weights_and_legacy_h5_load_into_numcnn(keras_saved):
    keras_model, folder = keras_saved
    x = np.random.default_rng(2).random((5, 10, 10, 1)).astype(np.float32)
    expected = keras_model.predict(x, verbose=0)
    architecture = keras_files.from_keras(keras_model)
    for weight in architecture.trainable_params():
        weight[...] = 0  # everything must come from the file
    filled = numcnn.load_model(folder / "model.weights.h5", model=architecture)
    np.testing.assert_allclose(filled.predict(x), expected, rtol=1e-6, atol=1e-6)
    legacy = numcnn.load_model(folder / "legacy.h5")
    np.testing.assert_allclose(legacy.predict(x), expected, rtol=1e-6, atol=1e-6)
    assert legacy.loss is not None and legacy.optimizer.name == "adam"
    with pytest.raises(ModelFileError, match="weights but no architecture"):
        numcnn.load_model(folder / "model.weights.h5")


def test_a_compile_config_numcnn_lacks_loads_uncompiled_with_a_warning(tf, tmp_path):
    _, keras = tf
    keras_model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    keras_model.compile(optimizer=keras.optimizers.Lion(), loss="mse")
    keras_model.save(tmp_path / "lion.keras")
    with pytest.warns(UserWarning, match="loaded uncompiled.*Lion"):
        model = numcnn.load_model(tmp_path / "lion.keras")
    assert model.loss is None and model.get_weights()[0].shape == (3, 2)


def test_unsupported_keras_options_are_named(tf, tmp_path):
    _, keras = tf
    keras_model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 3, dilation_rate=2, name="dilated")])
    keras_model.save(tmp_path / "dilated.keras")
    with pytest.raises(keras_files.UnsupportedLayerError, match="'dilated' \\(Conv2D\\): dilation_rate"):
        numcnn.load_model(tmp_path / "dilated.keras")


# ------------------------------------------------------------------------------------------------
# Files without TensorFlow
# ------------------------------------------------------------------------------------------------
def test_save_picks_the_format_from_the_name_and_load_reads_each(tmp_path):
    model = trained(every_layer_model())
    for name, kind in (("m.npz", "numcnn"), ("m.keras", "keras"), ("m.weights.h5", "keras-weights")):
        model.save(tmp_path / name)
        assert model_file_kind(tmp_path / name) == kind
    for name in ("m.npz", "m.keras"):
        loaded = load_model(tmp_path / name)
        assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
        assert [a.get_config() for a in loaded.layers] == [b.get_config() for b in model.layers]
        for a, b in zip(loaded.get_weights(), model.get_weights()):
            np.testing.assert_array_equal(a, b)
        ours, saved = loaded.optimizer.get_config(), model.optimizer.get_config()
        # a .keras file holds the learning rate as Keras does, rounded to float32 (numcnn computes with that too)
        assert np.float32(ours.pop("learning_rate")) == np.float32(saved.pop("learning_rate")) and ours == saved
        assert loaded.optimizer.iterations == model.optimizer.iterations
        for a, b in zip(loaded.optimizer.slots["v"], model.optimizer.slots["v"]):
            np.testing.assert_array_equal(a, b)
    filled = load_model(tmp_path / "m.weights.h5", model=Sequential.from_config(model.get_config(), seed=9))
    for a, b in zip(filled.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    for name, words in (("m.h5", "legacy"), ("m.pt", "cannot tell the file format"), ("model", "cannot tell")):
        with pytest.raises(ValueError, match=words) as info:
            model.save(tmp_path / name)
        assert ".keras" in str(info.value) and ".npz" in str(info.value) and not (tmp_path / name).exists()


WRITE_WITHOUT_TF = """
import sys
sys.modules["tensorflow"] = sys.modules["keras"] = None    # importing either now fails
import numpy as np
from numcnn.zoo import seed_mnist_model
import numcnn
model = seed_mnist_model(seed=0)
model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
model.save(sys.argv[1])
back = numcnn.load_model(sys.argv[1])
assert all(np.array_equal(a, b) for a, b in zip(back.get_weights(), model.get_weights()))
print("ok")
"""


def test_keras_files_are_written_and_read_without_tensorflow(tmp_path):
    result = subprocess.run([sys.executable, "-c", WRITE_WITHOUT_TF, str(tmp_path / "m.keras")], capture_output=True,
                            text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_code_in_a_keras_file_is_never_run(tmp_path):
    """A Lambda layer carries Python code (marshalled bytecode, base64) in config.json: numcnn refuses the layer
    by its class name before anything could run it."""
    import base64
    import marshal

    seed_mnist_model(seed=0).save(tmp_path / "m.keras")
    marker = tmp_path / "ran"
    code = compile(f"open({str(marker)!r}, 'w').close()", "<lambda>", "exec")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(contents["config.json"])
    config["config"]["layers"].insert(1, {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
                                          "config": {"name": "evil", "function": {"class_name": "__lambda__", "config": {
                                              "code": base64.b64encode(marshal.dumps(code)).decode(),
                                              "defaults": None, "closure": None}}}})
    contents["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    with pytest.raises(keras_files.UnsupportedLayerError, match="'evil' \\(Lambda\\)"):
        load_model(tmp_path / "evil.keras")
    assert not marker.exists()


@pytest.fixture(scope="module")
def keras_file_bytes(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "m.keras"
    model = trained(every_layer_model())
    model.save(path)
    return path.read_bytes(), model.get_weights()


@SETTINGS
@given(data=st.data())
def test_damaged_keras_files_load_exactly_or_raise_model_file_error(keras_file_bytes, tmp_path, data):
    content, weights = keras_file_bytes
    damaged = bytearray(content)
    if data.draw(st.booleans()):
        damaged = damaged[:data.draw(st.integers(0, len(damaged) - 1))]
    else:
        for _ in range(data.draw(st.integers(1, 8))):
            damaged[data.draw(st.integers(0, len(damaged) - 1))] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "fuzzed.keras"
    path.write_bytes(bytes(damaged))
    try:
        loaded = load_model(path)
    except (ModelFileError, keras_files.UnsupportedLayerError):
        return
    for a, b in zip(loaded.get_weights(), weights, strict=True):  # it loaded: then it is exactly the saved model
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------
def cli(capsys, *args):
    """``numcnn ARGS`` in this process: ``(exit status, stdout, stderr)``."""
    from numcnn.cli import main

    try:
        status = main([str(a) for a in args])
    except SystemExit as exit:
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "model.npz"
    seed_mnist_model(seed=0).save(path)
    return path


def write_text_and_foreign_files(folder: Path) -> dict:
    (folder / "notes.txt").write_text("these are my notes, not a model\n")
    with h5py.File(folder / "data.h5", "w") as h5:
        h5["measurements"] = np.arange(5.0)
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(folder / "objects.npz", "w") as archive:
        archive.write(folder / "objects.npy", "header.npy")
    return {"notes.txt": "starts with text", "data.h5": "HDF5 file, but not a Keras model or weights file",
            "objects.npz": "pickled Python objects, which numcnn never loads"}


def test_bad_model_files_say_what_they_are_not(capsys, tmp_path):
    cases = write_text_and_foreign_files(tmp_path)
    for name, words in cases.items():
        status, _, err = cli(capsys, "evaluate", "--model", tmp_path / name)
        assert status == 2 and words in err and err.count("\n") == 1, err
        assert "allow_pickle" not in err and "Traceback" not in err


def test_every_model_format_works_as_model_option(capsys, tmp_path):
    from PIL import Image

    model = seed_mnist_model(seed=5)
    for name in ("m.npz", "m.keras", "m.weights.h5"):
        model.save(tmp_path / name)
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255
    Image.fromarray(digit).save(tmp_path / "digit.png")
    expected = model.predict(digit[None, :, :, None].astype(np.float32) / 255, verbose=0)[0]
    for name in ("m.npz", "m.keras", "m.weights.h5"):
        status, out, err = cli(capsys, "predict", "--model", tmp_path / name, tmp_path / "digit.png")
        assert status == 0, err
        np.testing.assert_allclose(json.loads(out)["probabilities"], expected, atol=1e-6)
        assert err == ""  # nothing was converted: a 28x28 greyscale light-on-dark digit


def test_train_with_an_existing_file_as_out_fails_before_training(capsys, tmp_path):
    (tmp_path / "taken").write_text("")
    status, _, err = cli(capsys, "train", "--out", tmp_path / "taken", "--epochs", "1")
    assert status == 2 and "--out" in err and "is a file" in err and "training on" not in err
    status, _, err = cli(capsys, "train", "--out", tmp_path / "taken" / "below", "--epochs", "1")
    assert status == 2 and "is a file" in err and "training on" not in err


def test_predict_says_what_it_converted_and_hints_invert(capsys, tmp_path, saved_model):
    from PIL import Image

    rgba = np.full((60, 100, 4), 255, np.uint8)  # white background, a dark stroke: dark on light
    rgba[15:45, 45:55, :3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "photo.png")
    status, out, err = cli(capsys, "predict", "--model", saved_model, tmp_path / "photo.png")
    assert status == 0 and json.loads(out)["image"].endswith("photo.png")
    assert "converted RGBA to greyscale" in err and "resized from 100x60 to 28x28" in err and "--invert" in err
    status, _, err = cli(capsys, "predict", "--model", saved_model, tmp_path / "photo.png", "--invert")
    assert status == 0 and "converted RGBA" in err and "--invert" not in err


@pytest.mark.parametrize("args, words", [
    (["train", "--dataset", "/nonexistent/mnist"], ["/nonexistent/mnist", "not found"]),
    (["train", "--dataset", "cifar"], ["unknown dataset 'cifar'"]),
    (["train", "--seed", "-5"], ["--seed", "non-negative"]),
    (["generate", "--model", "MODEL", "--target", "-1"], ["--target", "non-negative"]),
    (["generate", "--model", "MODEL", "--seeds", "5-2"], ["--seeds", "'5-2' is empty"]),
    (["generate", "--model", "MODEL", "--seeds", "a-b"], ["--seeds", "0-9 or 1,4,7"]),
    (["generate", "--model", "MODEL", "--target", "12"], ["--target 12", "10 classes (0-9)"]),
    (["explain", "--model", "MODEL", "--image", "MODEL", "--target", "12"], ["--target 12", "10 classes"]),
    (["verify", "--seed", "-1"], ["--seed", "non-negative"]),
])
def test_argument_errors_name_the_argument(capsys, saved_model, args, words):
    status, _, err = cli(capsys, *[saved_model if a == "MODEL" else a for a in args])
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_verify_without_tensorflow_gives_an_install_hint(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # `import tensorflow` now raises ModuleNotFoundError
    status, _, err = cli(capsys, "verify")
    assert status == 2 and "needs TensorFlow" in err and "pip install" in err and "tensorflow-cpu" in err


def test_every_option_has_help_and_version_and_debug_work(capsys):
    from numcnn.cli import CLIError, build_parser, main

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(commands) == {"train", "evaluate", "predict", "verify", "generate", "dream", "texture", "explain", "style",
                             "train-generator", "sample", "sweep"}
    for name, command in [("numcnn", parser), *commands.items()]:
        for action in command._actions:
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help text"
    status, out, _ = cli(capsys, "--version")
    assert status == 0 and out.strip() == f"numcnn {numcnn.__version__}"
    for args in (["--debug", "train", "--resume"], ["train", "--resume", "--debug"]):
        with pytest.raises(CLIError, match="--checkpoint-dir"):  # the traceback, not the one-line message
            main(args)


def test_readme_command_line_section_shows_every_command():
    from numcnn.cli import build_parser

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Command line"):]
    section = section[:section.index("\n## ", 4)]
    commands = next(a for a in build_parser()._actions if a.dest == "command").choices
    for command in commands:
        assert f"numcnn {command}" in section, f"README's command-line section has no example of {command}"
    for made_up in (" digit.png", " brick.png"):  # files nothing ships or writes
        assert made_up not in readme


def test_download_failure_is_reported_once_per_process(monkeypatch, tmp_path, capsys):
    from numcnn import datasets

    monkeypatch.setattr(datasets, "_NOTICES_SHOWN", set())  # a fresh process's state
    monkeypatch.setenv("NUMCNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NUMCNN_DATA", raising=False)
    for _ in range(3):
        (x_train, _), _ = datasets.load_mnist(base_url="http://127.0.0.1:9/")  # port 9: nothing listens
        assert len(x_train) == 4000
    err = capsys.readouterr().err
    assert err.count("download failed") == 1 and err.count("embedded 5,000-image sample") == 1


# ------------------------------------------------------------------------------------------------
# import numcnn: fast, lazy submodules; to_categorical
# ------------------------------------------------------------------------------------------------
LAZY_CHECK = """
import json, sys
import numcnn
before = {name: name in sys.modules for name in sys.argv[1:]}
heavy = [m for m in ("tensorflow", "keras", "matplotlib", "torch") if m in sys.modules]
found = {"datasets": numcnn.datasets.load_mnist, "preprocessing": numcnn.preprocessing.images_to_input,
         "generate": numcnn.generate.class_image, "explain": numcnn.explain.saliency,
         "interop": numcnn.interop.to_keras, "utils": numcnn.utils.to_categorical,
         "models": numcnn.models.load_model}
from numcnn.callbacks import EarlyStopping
import numcnn.training.callbacks
print(json.dumps({"before": before, "heavy": heavy,
                  "alias": numcnn.callbacks is numcnn.training.callbacks is sys.modules["numcnn.callbacks"],
                  "early_stopping": EarlyStopping.__module__, "spec": numcnn.callbacks.__spec__.name}))
"""


def test_import_is_lazy_and_light_and_the_submodules_are_there():
    lazy = ["numcnn.datasets", "numcnn.preprocessing", "numcnn.generate", "numcnn.explain", "numcnn.interop",
            "numcnn.utils", "numcnn.models"]
    result = subprocess.run([sys.executable, "-c", LAZY_CHECK, *lazy], capture_output=True, text=True, cwd=ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["heavy"] == [] and not any(report["before"].values()), report
    assert report["alias"] and report["early_stopping"] == "numcnn.training.callbacks"
    assert report["spec"] == "numcnn.training.callbacks"  # the alias does not rename the real module


@pytest.mark.parametrize("labels, num_classes", [
    ([0, 2, 1, 2], None), ([[1], [0], [3]], None), ([[0, 1], [2, 1]], 4), (np.array([3, 1], np.uint8), 5),
    ([1.0, 0.0], None), ([], 3), (np.zeros((2, 3, 1), int), 2),
])
def test_to_categorical_equals_keras(tf, labels, num_classes):
    _, keras = tf
    ours = numcnn.utils.to_categorical(labels, num_classes)
    theirs = keras.utils.to_categorical(labels, num_classes)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), extra=st.integers(0, 3), seed=st.integers(0, 99))
def test_to_categorical_equals_keras_on_random_labels(tf, shape, extra, seed):
    _, keras = tf
    labels = np.random.default_rng(seed).integers(0, 5, shape)
    num_classes = int(labels.max()) + 1 + extra if extra else None
    np.testing.assert_array_equal(numcnn.utils.to_categorical(labels, num_classes),
                                  keras.utils.to_categorical(labels, num_classes))


@pytest.mark.parametrize("labels, num_classes, words", [
    ([0, -1], None, "0..0"), ([0, 3], 3, "0..2"), ([0.5, 1.0], None, "whole-number"), ([], None, "num_classes"),
])
def test_to_categorical_refuses_what_keras_gets_silently_wrong(labels, num_classes, words):
    with pytest.raises(LabelError, match=words):
        numcnn.utils.to_categorical(labels, num_classes)


# ------------------------------------------------------------------------------------------------
# Numba cache: an edit to a module a cached kernel calls takes effect
# ------------------------------------------------------------------------------------------------
RUN_FUSED = """
import os, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import numcnn
from numba.core import event
assert numcnn.__file__.startswith(sys.argv[1]), numcnn.__file__


class CountCompiles(event.Listener):  # "numba:compile" fires only when a kernel is compiled, not loaded
    compiles = 0

    def on_start(self, _):
        CountCompiles.compiles += 1

    def on_end(self, _):
        pass


event.register("numba:compile", CountCompiles())
from numcnn.kernels import conv_pool_forward
x = np.random.default_rng(0).random((2, 6, 6, 1)).astype(np.float32)
w = np.random.default_rng(1).random((3, 3, 1, 2)).astype(np.float32)
# 3x3 'same' pooling of the 4x4 map: its last windows reach into the padding, where fused.py's kernel calls
# pool.py's pool_window_row
y, _ = conv_pool_forward(x, w, np.zeros(2, np.float32), pool_size=(3, 3), pool_strides=(2, 2),
                         pool_padding="same", method="direct")
print(float(y.min()), float(y.max()), CountCompiles.compiles)
"""


def test_editing_a_called_kernel_module_takes_effect_despite_the_numba_cache(tmp_path):
    """The fused first-layer kernel (kernels/fused.py) calls ``pool.pool_window_row``. Run it (compiled and
    cached), run it again in a new process (every kernel now comes from the disk cache: nothing compiles,
    which is what keeps a warm start short), replace ``pool_window_row`` in pool.py by one that ends with
    ``y_row[:] = 7``, run again: Numba's own cache check only looks at fused.py, so without numcnn's keyed
    cache the old result comes back."""
    package = tmp_path / "copy"
    shutil.copytree(ROOT / "numcnn", package / "numcnn", ignore=shutil.ignore_patterns("__pycache__"))
    # No NUMBA_CACHE_DIR: the cache goes where a learner's goes, __pycache__ beside the (copied) sources
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}

    def run():
        result = subprocess.run([sys.executable, "-c", RUN_FUSED, str(package)], capture_output=True, text=True,
                                env=env, cwd=tmp_path, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        *values, compiles = result.stdout.split()
        return [float(v) for v in values], int(compiles)

    before, compiles = run()
    assert before != [7.0, 7.0] and compiles > 0
    assert run() == (before, 0)  # from the cache: same result, nothing compiled
    pool = package / "numcnn" / "kernels" / "pool.py"
    from numcnn.kernels import pool as real_pool
    import inspect

    params = ", ".join(inspect.signature(real_pool.pool_window_row.py_func).parameters)
    source = pool.read_text().replace("def pool_window_row(", "def _original_pool_window_row(", 1)
    pool.write_text(source + textwrap.dedent(f"""

        @njit(cache=True)
        def pool_window_row({params}):
            _original_pool_window_row({params})
            y_row[:] = 7
        """))
    assert run()[0] == [7.0, 7.0]
    assert list((package / "numcnn" / "kernels" / "__pycache__").glob("fused.*.nbi"))  # it did use the cache


# ------------------------------------------------------------------------------------------------
# CI honesty and packaging
# ------------------------------------------------------------------------------------------------
NEEDS_DATA = """
import pytest
from pathlib import Path

@pytest.mark.skipif(not Path("/no/such/fashion-mnist").is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_with_skipif():
    pass

def test_with_fixture(fashion_mnist_dir):
    pass
"""


@pytest.mark.parametrize("ci", [True, False])
def test_missing_fashion_mnist_fails_in_ci_and_skips_elsewhere(tmp_path, ci):
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    conftest = conftest.replace('Path("/usr/share/datasets/fashion-mnist")', 'Path("/no/such/fashion-mnist")')
    assert "/no/such/fashion-mnist" in conftest
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "test_needs_data.py").write_text(NEEDS_DATA)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NUMCNN_REQUIRE_DATA", "NUMCNN_REQUIRE_TF")}
    if ci:
        env["CI"] = "true"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    summary = result.stdout.splitlines()[-1]
    if ci:
        # both fail in their setup phase, which pytest reports as errors: either way CI goes red
        assert result.returncode == 1 and "2 error" in summary and "skipped" not in summary, result.stdout
        assert "dataset-fashion-mnist is required" in result.stdout
    else:
        assert result.returncode == 0 and "2 skipped" in summary, result.stdout


@pytest.mark.parametrize("ci", [True, False])
def test_setup_fails_loudly_in_ci_when_it_cannot_install_the_data(tmp_path, ci):
    """scripts/setup, copied with the dataset's path pointing nowhere, and apt-get/sudo that fail; python3 is
    a stub that says the script went on to install numcnn."""
    script = (ROOT / "scripts" / "setup").read_text().replace("/usr/share/datasets/fashion-mnist", str(tmp_path / "none"))
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "setup").write_text(script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool, body in (("apt-get", "exit 100"), ("sudo", "exit 1"), ("id", "echo 1000"),
                       ("python3", "echo went-on >&2; exit 3")):
        (bin_dir / tool).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), **({"CI": "true"} if ci else {})}
    result = subprocess.run(["bash", str(tmp_path / "scripts" / "setup")], capture_output=True, text=True, env=env,
                            timeout=120)
    if ci:
        assert result.returncode == 1 and "which CI requires" in result.stderr and "went-on" not in result.stderr
    else:
        assert result.returncode == 3 and "could not install dataset-fashion-mnist" in result.stderr
        assert "went-on" in result.stderr


def test_pyproject_uses_an_spdx_license_string():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"  # a string: the table form is deprecated (setuptools warns)
    requirement = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert int(requirement.split(">=")[1].split(".")[0]) >= 77  # the first setuptools that reads SPDX strings
