"""Keras 3 <-> numcnn: the same layers, the same weight layouts, so weights move with no transposes.

* ``from_keras(keras_model)`` and ``to_keras(model)`` convert live models (``to_keras`` imports Keras).
* ``load_keras_file(path)`` reads a ``.keras`` archive (zip of ``config.json`` + ``model.weights.h5``) or a
  bare ``.weights.h5`` (given a numcnn model to fill) with ``zipfile``, ``json`` and ``h5py`` only: no
  TensorFlow needed, and nothing in the file is executed (layer classes come from a fixed table).

HDF5 layout of Keras 3 weights: ``layers/<name>/vars/<i>`` where ``<name>`` is the layer class in snake case
with a counter in model order (``conv2d``, ``conv2d_1``, ``dense``...), not the layer's own name.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ..layers import Activation, Conv2D, Dense, Flatten, Input, MaxPooling2D, ReLU, Softmax
from ..layers.base import snake_case
from ..model import Sequential


class UnsupportedLayerError(ValueError):
    """A Keras layer (or layer option) that numcnn does not implement."""


def _unsupported(entry, why):
    name = entry.get("config", {}).get("name", "?")
    return UnsupportedLayerError(f"Keras layer {name!r} ({entry.get('class_name')}): {why}")


def _activation(entry, config):
    activation = config.get("activation", "linear")
    if isinstance(activation, dict):  # serialized function object
        activation = activation.get("config", activation.get("class_name"))
    if activation not in ("linear", "relu", "softmax", None):
        raise _unsupported(entry, f"activation {activation!r} is not supported (relu, softmax, linear are)")
    return activation


def _require(entry, config, key, allowed):
    value = config.get(key, allowed[0])
    value = list(value) if isinstance(value, (list, tuple)) else value
    if value not in allowed:
        raise _unsupported(entry, f"{key}={value!r} is not supported")


def layer_from_keras_config(entry: dict):
    """One numcnn layer from a Keras ``{"class_name", "config"}`` entry (None for InputLayer)."""
    kind, config = entry.get("class_name"), entry.get("config", {})
    if kind == "InputLayer":
        return None
    if kind == "Conv2D":
        _require(entry, config, "data_format", ["channels_last", None])
        _require(entry, config, "dilation_rate", [[1, 1], 1])
        _require(entry, config, "groups", [1])
        return Conv2D(int(config["filters"]), tuple(config["kernel_size"]), strides=tuple(config.get("strides", (1, 1))),
                      padding=config.get("padding", "valid"), activation=_activation(entry, config),
                      use_bias=bool(config.get("use_bias", True)))
    if kind == "MaxPooling2D":
        _require(entry, config, "data_format", ["channels_last", None])
        strides = config.get("strides")
        return MaxPooling2D(tuple(config.get("pool_size", (2, 2))), strides=tuple(strides) if strides else None,
                            padding=config.get("padding", "valid"))
    if kind == "Flatten":
        _require(entry, config, "data_format", ["channels_last", None])
        return Flatten()
    if kind == "Dense":
        return Dense(int(config["units"]), activation=_activation(entry, config), use_bias=bool(config.get("use_bias", True)))
    if kind == "ReLU":
        for key, neutral in (("max_value", None), ("negative_slope", 0.0), ("threshold", 0.0)):
            if config.get(key, neutral) not in (neutral, 0) or (neutral is None and config.get(key) is not None):
                raise _unsupported(entry, f"{key}={config.get(key)!r} is not supported")
        return ReLU()
    if kind == "Softmax":
        _require(entry, config, "axis", [-1])
        return Softmax()
    if kind == "Activation":
        return Activation(_activation(entry, config))
    raise _unsupported(entry, "this layer type is not implemented in numcnn")


def model_from_keras_config(layer_entries: list[dict], input_shape, name="sequential") -> Sequential:
    model = Sequential(name=name)
    model.add(Input(tuple(int(d) for d in input_shape)))
    for entry in layer_entries:
        layer = layer_from_keras_config(entry)
        if layer is not None:
            model.add(layer)
    return model


def from_keras(keras_model) -> Sequential:
    """A numcnn copy of a Keras Sequential model: same architecture, same weights (bit for bit)."""
    entries = [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in keras_model.layers]
    model = model_from_keras_config(entries, keras_model.input_shape[1:], name=keras_model.name)
    model.set_weights(keras_model.get_weights())
    return model


def to_keras(model: Sequential):
    """A Keras 3 Sequential model with the same layers, weights and dtype (imports Keras)."""
    import keras

    layers = [keras.Input(model.input_shape, dtype=model.dtype.name)]
    for layer in model.layers:
        config = layer.get_config()
        if isinstance(layer, Conv2D):
            layers.append(keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides,
                                              padding=layer.padding, activation=layer.activation,
                                              use_bias=layer.use_bias, dtype=model.dtype.name))
        elif isinstance(layer, Dense):
            layers.append(keras.layers.Dense(layer.units, activation=layer.activation, use_bias=layer.use_bias, dtype=model.dtype.name))
        elif isinstance(layer, MaxPooling2D):
            layers.append(keras.layers.MaxPooling2D(layer.pool_size, strides=layer.strides, padding=layer.padding,
                                                    dtype=model.dtype.name))
        elif isinstance(layer, Flatten):
            layers.append(keras.layers.Flatten(dtype=model.dtype.name))
        elif isinstance(layer, ReLU):
            layers.append(keras.layers.ReLU(dtype=model.dtype.name))
        elif isinstance(layer, Softmax):
            layers.append(keras.layers.Softmax(dtype=model.dtype.name))
        elif isinstance(layer, Activation):
            layers.append(keras.layers.Activation(config["activation"], dtype=model.dtype.name))
        else:
            raise UnsupportedLayerError(f"numcnn layer {layer.name!r} ({type(layer).__name__}) has no Keras twin here")
    keras_model = keras.Sequential(layers, name=model.name)
    keras_model.set_weights(model.get_weights())
    return keras_model


def keras_seed_mnist_model():
    """The source document's model, written in Keras exactly as the document writes it (imports Keras)."""
    import keras

    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"), keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Conv2D(64, (3, 3), activation="relu"), keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Conv2D(64, (3, 3), activation="relu"), keras.layers.Flatten(),
        keras.layers.Dense(64, activation="relu"), keras.layers.Dense(10, activation="softmax")])


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def _h5_weights(h5_file, entries: list[dict]) -> list[np.ndarray]:
    """Weights in model order from a Keras 3 weights HDF5 (``layers/<snake_case>_<k>/vars/<i>``)."""
    if "layers" not in h5_file:
        if "model_weights" in h5_file:  # older tf.keras .h5
            return _legacy_h5_weights(h5_file["model_weights"])
        raise ValueError("no 'layers' group: not a Keras 3 weights file")
    counts: dict[str, int] = {}
    weights = []
    for entry in entries:
        if entry.get("class_name") == "InputLayer":
            continue
        base = snake_case(entry["class_name"])
        count = counts.get(base, 0)
        counts[base] = count + 1
        group_name = base if count == 0 else f"{base}_{count}"
        group = h5_file["layers"].get(group_name)
        if group is None or "vars" not in group:
            continue
        variables = group["vars"]
        weights += [np.asarray(variables[str(i)]) for i in range(len(variables))]
    return weights


def _legacy_h5_weights(group) -> list[np.ndarray]:
    weights = []
    for layer_name in group.attrs.get("layer_names", []):
        layer_name = layer_name.decode() if isinstance(layer_name, bytes) else layer_name
        layer_group = group[layer_name]
        for weight_name in layer_group.attrs.get("weight_names", []):
            weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
            weights.append(np.asarray(layer_group[weight_name]))
    return weights


def load_keras_file(path, model: Sequential | None = None) -> Sequential:
    """Load a Keras ``.keras`` file (architecture + weights), or a ``.weights.h5`` into ``model``."""
    import h5py

    path = Path(path)
    try:
        if path.suffix == ".keras":
            with zipfile.ZipFile(path) as archive:
                config = json.loads(archive.read("config.json"))
                weights_bytes = archive.read("model.weights.h5")
            if config.get("class_name") != "Sequential":
                raise UnsupportedLayerError(f"{path}: only Sequential models are supported, got {config.get('class_name')!r}")
            entries = config["config"]["layers"]
            first = entries[0].get("config", {}) if entries else {}
            shape = first.get("batch_shape") or first.get("batch_input_shape")
            if shape is None:
                raise ValueError("the model has no InputLayer with a batch_shape")
            model = model_from_keras_config(entries, shape[1:], name=config["config"].get("name", "sequential"))
            with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
                model.set_weights(_h5_weights(h5, entries))
            return model
        if model is None:
            raise ValueError("loading a bare .weights.h5 needs the numcnn model to fill (model=...)")
        entries = [{"class_name": type(layer).__name__} for layer in model.layers]
        with h5py.File(path, "r") as h5:
            model.set_weights(_h5_weights(h5, entries))
        return model
    except UnsupportedLayerError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read as a Keras model file ({type(error).__name__}: {error})") from None
