"""Keras 3 <-> numcnn: the same layers, the same weight layouts, so weights move with no transposes.

* ``from_keras(keras_model)`` and ``to_keras(model)`` convert live models (``to_keras`` imports Keras).
* ``save_keras_file(model, "m.keras")`` writes a real Keras 3 file and ``save_keras_weights(model,
  "m.weights.h5")`` Keras's weights file, with ``zipfile``, ``json`` and ``h5py`` only (no TensorFlow).
* ``load_keras_file(path)`` reads a ``.keras`` archive, a legacy full-model tf.keras ``.h5``, or a bare
  ``.weights.h5`` (given a numcnn model to fill), with the same three modules. Nothing in a file is ever
  executed: layer classes come from the table below, and only plain HDF5 datasets inside the file are read.

The ``.keras`` layout, measured by saving models with Keras 3.15 (``keras.saving.save_model``) and reading the
archive back with ``zipfile``: a zip (entries stored, not compressed) of ``metadata.json``
(``{"keras_version", "date_saved"}``), ``config.json`` (``keras.saving.serialize_keras_object(model)``:
``{"module", "class_name": "Sequential", "config": {"name", "trainable", "dtype", "layers": [...],
"build_input_shape"}, "registered_name", "build_config", "compile_config"}``) and ``model.weights.h5``.
The HDF5 file holds ``layers/<group>/vars/<i>`` (the layer's weights in ``get_weights()`` order; ``vars``
carries the attribute ``name`` = the layer's name), ``optimizer/vars/<i>`` (iteration, learning rate, then
the slots) and an empty root ``vars``. ``<group>`` is *not* the layer's name: it is the Keras class name in
Keras's snake case with a counter in model order (``conv2d``, ``conv2d_1``, ``re_lu``, ``dense``...).
A ``.weights.h5`` is that same HDF5 file on its own. tests/test_files_cli.py checks all of this against
Keras itself (the configs written here equal Keras's own serialization of the same model).

Adding a layer class: write one function each way and append one ``LayerMapping`` to ``LAYER_MAPPINGS``:
``to_keras`` returns the Keras config keys of that class (everything but ``name``, ``trainable`` and
``dtype``, which are shared), ``from_keras`` builds the numcnn layer from a Keras config, refusing with
``UnsupportedLayerError`` any option numcnn does not implement.
"""

from __future__ import annotations

import copy
import datetime
import inspect
import io
import json
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ModelFileError, NumcnnError
from ..layers import (ELU, Activation, AveragePooling2D, BatchNormalization, Conv2D, Conv2DTranspose, Dense, Dropout,
                      Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D, Input, LeakyReLU, MaxPooling2D, ReLU,
                      Reshape, Softmax, UpSampling2D, ZeroPadding2D)
from ..model import Sequential

KERAS_VERSION_WRITTEN = "3.15.1"  # the version whose files were measured (metadata.json says so)
KERAS_ENTRIES = ("metadata.json", "config.json", "model.weights.h5")  # in Keras's order
MAX_CONFIG_BYTES = 64 * 1024 * 1024
MAX_WEIGHTS_BYTES = 16 * 1024 ** 3


class UnsupportedLayerError(NumcnnError, ValueError):
    """A Keras layer (or layer option) that numcnn does not implement."""


# ----------------------------------------------------------------------------------------------
# Keras's spellings
# ----------------------------------------------------------------------------------------------
def keras_snake_case(name: str) -> str:
    """Keras's ``to_snake_case`` (keras/src/utils/naming.py), which names the HDF5 groups:
    ``Conv2D`` -> ``conv2d``, ``ReLU`` -> ``re_lu``, ``Conv2DTranspose`` -> ``conv2d_transpose``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _dtype_policy(dtype_name: str) -> dict:
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype_name}, "registered_name": None}


def _dtype_name(value) -> str | None:
    """The dtype of a Keras config's ``dtype``: a policy dict (Keras 3) or a plain string (tf.keras 2)."""
    if isinstance(value, dict):
        value = value.get("config", {}).get("name")
    return value


def _serialized(module: str, class_name: str, config: dict) -> dict:
    return {"module": module, "class_name": class_name, "config": config, "registered_name": None}


def _plain(value):
    """Tuples as lists, recursively: Keras configs read from JSON have lists where live ones have tuples."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# Initializers: numcnn name <-> Keras class. The variance-scaling ones carry these config keys in Keras 3.15.
_INITIALIZERS = {"glorot_uniform": "GlorotUniform", "glorot_normal": "GlorotNormal", "he_uniform": "HeUniform",
                 "he_normal": "HeNormal", "zeros": "Zeros", "ones": "Ones"}
_VARIANCE_SCALING_CONFIG = {"seed": None, "input_axes": None, "output_axes": None}


def initializer_to_keras(name) -> dict:
    if name not in _INITIALIZERS:
        raise UnsupportedLayerError(f"initializer {name!r} has no Keras equivalent here")
    class_name = _INITIALIZERS[name]
    config = {} if class_name in ("Zeros", "Ones") else dict(_VARIANCE_SCALING_CONFIG)
    return _serialized("keras.initializers", class_name, config)


def initializer_from_keras(entry, default: str) -> str:
    """numcnn's name for a Keras initializer. One numcnn cannot draw (e.g. RandomNormal) falls back to
    ``default``: a loaded model's weights come from the file, the initializer only matters for a re-build."""
    class_name = entry.get("class_name") if isinstance(entry, dict) else entry
    by_class = {keras_name: name for name, keras_name in _INITIALIZERS.items()}
    if class_name in by_class:
        return by_class[class_name]
    return class_name if class_name in _INITIALIZERS else default


def activation_from_keras(value) -> str:
    """A Keras activation (a string, or a serialized function in some configs) as numcnn's name."""
    from ..layers.activations import activation_name

    if isinstance(value, dict):
        value = value.get("config", value.get("class_name"))
    try:
        return activation_name(value)
    except ValueError as error:
        raise UnsupportedLayerError(f"activation {value!r} is not supported ({error})") from None


def require(config: dict, **supported) -> None:
    """Refuse a Keras option that is set to anything but the one value numcnn implements."""
    for key, value in supported.items():
        if key in config and _plain(config[key]) != _plain(value):
            raise UnsupportedLayerError(f"{key}={config[key]!r} is not supported (numcnn implements {value!r})")


def require_none(config: dict, *keys) -> None:
    """Regularizers, constraints and the like: numcnn implements none, so they must be absent."""
    for key in keys:
        if config.get(key) is not None:
            raise UnsupportedLayerError(f"{key}={config[key]!r} is not supported (numcnn has no {key})")


def _pair(value):
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else int(value)


# ----------------------------------------------------------------------------------------------
# The layer table: one function per class each way
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerMapping:
    numcnn_class: type
    keras_class: str
    to_keras: Callable[[object], dict]      # numcnn layer -> the class's own Keras config keys
    from_keras: Callable[[dict], object]    # Keras config -> numcnn layer (name, dtype handled by the caller)
    build_config: bool = False              # Keras writes "build_config" for classes with their own build()


_AFFINE_EXTRAS = ("kernel_regularizer", "bias_regularizer", "kernel_constraint", "bias_constraint")


def _conv2d_to_keras(layer) -> dict:
    return {"filters": layer.filters, "kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
            "padding": layer.padding, "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
            "activation": layer.activation, "use_bias": layer.use_bias,
            "kernel_initializer": initializer_to_keras(layer.kernel_initializer),
            "bias_initializer": initializer_to_keras(layer.bias_initializer),
            "kernel_regularizer": None, "bias_regularizer": None, "activity_regularizer": None,
            "kernel_constraint": None, "bias_constraint": None}


def _conv2d_from_keras(config: dict):
    require(config, data_format="channels_last", dilation_rate=[1, 1], groups=1)
    require_none(config, *_AFFINE_EXTRAS, "activity_regularizer")
    return Conv2D(int(config["filters"]), _pair(config["kernel_size"]), strides=_pair(config.get("strides", 1)),
                  padding=config.get("padding", "valid"), activation=activation_from_keras(config.get("activation")),
                  use_bias=bool(config.get("use_bias", True)),
                  kernel_initializer=initializer_from_keras(config.get("kernel_initializer"), "glorot_uniform"),
                  bias_initializer=initializer_from_keras(config.get("bias_initializer"), "zeros"))


def _dense_to_keras(layer) -> dict:
    return {"units": layer.units, "activation": layer.activation, "use_bias": layer.use_bias,
            "kernel_initializer": initializer_to_keras(layer.kernel_initializer),
            "bias_initializer": initializer_to_keras(layer.bias_initializer),
            "kernel_regularizer": None, "bias_regularizer": None, "kernel_constraint": None,
            "bias_constraint": None, "quantization_config": None}


def _dense_from_keras(config: dict):
    require_none(config, *_AFFINE_EXTRAS, "activity_regularizer", "lora_rank", "quantization_config")
    return Dense(int(config["units"]), activation=activation_from_keras(config.get("activation")),
                 use_bias=bool(config.get("use_bias", True)),
                 kernel_initializer=initializer_from_keras(config.get("kernel_initializer"), "glorot_uniform"),
                 bias_initializer=initializer_from_keras(config.get("bias_initializer"), "zeros"))


def _pooling2d_to_keras(layer) -> dict:
    return {"pool_size": list(layer.pool_size), "padding": layer.padding, "strides": list(layer.strides),
            "data_format": "channels_last"}


def _pooling2d_from_keras(cls):
    """MaxPooling2D and AveragePooling2D share their Keras config keys."""
    def from_keras(config: dict):
        require(config, data_format="channels_last")
        strides = config.get("strides")
        return cls(_pair(config.get("pool_size", 2)), strides=_pair(strides) if strides is not None else None,
                   padding=config.get("padding", "valid"))
    return from_keras


def _flatten_to_keras(layer) -> dict:
    return {"data_format": "channels_last"}


def _flatten_from_keras(config: dict):
    require(config, data_format="channels_last")
    return Flatten()


def _relu_to_keras(layer) -> dict:
    return {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}


def _relu_from_keras(config: dict):
    require(config, negative_slope=0.0, threshold=0.0)
    require_none(config, "max_value")
    return ReLU()


def _softmax_to_keras(layer) -> dict:
    return {"axis": -1}


def _softmax_from_keras(config: dict):
    require(config, axis=-1)
    return Softmax()


def _activation_to_keras(layer) -> dict:
    return {"activation": layer.activation}


def _activation_from_keras(config: dict):
    return Activation(activation_from_keras(config.get("activation")))


def _global_pooling2d_to_keras(layer) -> dict:
    return {"data_format": "channels_last", "keepdims": layer.keepdims}


def _global_pooling2d_from_keras(cls):
    def from_keras(config: dict):
        require(config, data_format="channels_last")
        return cls(keepdims=bool(config.get("keepdims", False)))
    return from_keras


def _conv2d_transpose_to_keras(layer) -> dict:
    config = _conv2d_to_keras(layer)
    del config["groups"]
    return {**config, "output_padding": None}


def _conv2d_transpose_from_keras(config: dict):
    require(config, data_format="channels_last", dilation_rate=[1, 1])
    require_none(config, *_AFFINE_EXTRAS, "activity_regularizer", "output_padding")
    return Conv2DTranspose(int(config["filters"]), _pair(config["kernel_size"]), strides=_pair(config.get("strides", 1)),
                           padding=config.get("padding", "valid"),
                           activation=activation_from_keras(config.get("activation")),
                           use_bias=bool(config.get("use_bias", True)),
                           kernel_initializer=initializer_from_keras(config.get("kernel_initializer"), "glorot_uniform"),
                           bias_initializer=initializer_from_keras(config.get("bias_initializer"), "zeros"))


_BATCH_NORMALIZATION_INITIALIZERS = {"beta_initializer": "zeros", "gamma_initializer": "ones",
                                     "moving_mean_initializer": "zeros", "moving_variance_initializer": "ones"}


def _batch_normalization_to_keras(layer) -> dict:
    return {"axis": -1, "momentum": layer.momentum, "epsilon": layer.epsilon, "center": layer.center,
            "scale": layer.scale,
            **{key: initializer_to_keras(getattr(layer, key)) for key in _BATCH_NORMALIZATION_INITIALIZERS},
            "beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None, "gamma_constraint": None,
            "synchronized": False, "renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99}


def _batch_normalization_from_keras(config: dict):
    require(config, axis=-1, synchronized=False, renorm=False)
    require_none(config, "beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint")
    return BatchNormalization(
        momentum=float(config.get("momentum", 0.99)), epsilon=float(config.get("epsilon", 1e-3)),
        center=bool(config.get("center", True)), scale=bool(config.get("scale", True)),
        **{key: initializer_from_keras(config.get(key), default)
           for key, default in _BATCH_NORMALIZATION_INITIALIZERS.items()})


def _dropout_to_keras(layer) -> dict:
    return {"rate": layer.rate, "seed": layer.seed,
            "noise_shape": None if layer.noise_shape is None else list(layer.noise_shape)}


def _dropout_from_keras(config: dict):
    noise_shape = config.get("noise_shape")
    return Dropout(float(config["rate"]), noise_shape=None if noise_shape is None else tuple(noise_shape),
                   seed=config.get("seed"))


def _up_sampling2d_to_keras(layer) -> dict:
    return {"size": list(layer.size), "data_format": "channels_last", "interpolation": layer.interpolation}


def _up_sampling2d_from_keras(config: dict):
    require(config, data_format="channels_last")
    return UpSampling2D(_pair(config.get("size", 2)), interpolation=config.get("interpolation", "nearest"))


def _zero_padding2d_to_keras(layer) -> dict:
    return {"padding": [list(pair) for pair in layer.padding], "data_format": "channels_last"}


def _zero_padding2d_from_keras(config: dict):
    require(config, data_format="channels_last")
    return ZeroPadding2D(_plain(config.get("padding", 1)))


def _reshape_to_keras(layer) -> dict:
    return {"target_shape": list(layer.target_shape)}


def _reshape_from_keras(config: dict):
    return Reshape(tuple(int(d) for d in config["target_shape"]))


def _leaky_relu_to_keras(layer) -> dict:
    return {"negative_slope": layer.negative_slope}


def _leaky_relu_from_keras(config: dict):
    return LeakyReLU(float(config.get("negative_slope", 0.3)))


def _elu_to_keras(layer) -> dict:
    return {"alpha": layer.alpha}


def _elu_from_keras(config: dict):
    return ELU(float(config.get("alpha", 1.0)))


LAYER_MAPPINGS: list[LayerMapping] = [
    LayerMapping(Conv2D, "Conv2D", _conv2d_to_keras, _conv2d_from_keras, build_config=True),
    LayerMapping(Dense, "Dense", _dense_to_keras, _dense_from_keras, build_config=True),
    LayerMapping(MaxPooling2D, "MaxPooling2D", _pooling2d_to_keras, _pooling2d_from_keras(MaxPooling2D)),
    LayerMapping(Flatten, "Flatten", _flatten_to_keras, _flatten_from_keras, build_config=True),
    LayerMapping(ReLU, "ReLU", _relu_to_keras, _relu_from_keras),
    LayerMapping(Softmax, "Softmax", _softmax_to_keras, _softmax_from_keras),
    LayerMapping(Activation, "Activation", _activation_to_keras, _activation_from_keras),
    LayerMapping(AveragePooling2D, "AveragePooling2D", _pooling2d_to_keras, _pooling2d_from_keras(AveragePooling2D)),
    LayerMapping(GlobalAveragePooling2D, "GlobalAveragePooling2D", _global_pooling2d_to_keras,
                 _global_pooling2d_from_keras(GlobalAveragePooling2D)),
    LayerMapping(GlobalMaxPooling2D, "GlobalMaxPooling2D", _global_pooling2d_to_keras,
                 _global_pooling2d_from_keras(GlobalMaxPooling2D)),
    LayerMapping(Conv2DTranspose, "Conv2DTranspose", _conv2d_transpose_to_keras, _conv2d_transpose_from_keras,
                 build_config=True),
    LayerMapping(BatchNormalization, "BatchNormalization", _batch_normalization_to_keras,
                 _batch_normalization_from_keras, build_config=True),
    LayerMapping(Dropout, "Dropout", _dropout_to_keras, _dropout_from_keras),
    LayerMapping(UpSampling2D, "UpSampling2D", _up_sampling2d_to_keras, _up_sampling2d_from_keras, build_config=True),
    LayerMapping(ZeroPadding2D, "ZeroPadding2D", _zero_padding2d_to_keras, _zero_padding2d_from_keras,
                 build_config=True),
    LayerMapping(Reshape, "Reshape", _reshape_to_keras, _reshape_from_keras),
    LayerMapping(LeakyReLU, "LeakyReLU", _leaky_relu_to_keras, _leaky_relu_from_keras),
    LayerMapping(ELU, "ELU", _elu_to_keras, _elu_from_keras),
]


def mapping_for_layer(layer) -> LayerMapping:
    """The table entry of a numcnn layer, by its exact class (ReLU is an Activation, but Keras's own class)."""
    for mapping in LAYER_MAPPINGS:
        if type(layer) is mapping.numcnn_class:
            return mapping
    raise UnsupportedLayerError(f"numcnn layer {layer.name!r} ({type(layer).__name__}) has no Keras mapping "
                                f"(numcnn/interop/keras.py, LAYER_MAPPINGS)")


def mapping_for_keras_class(class_name: str) -> LayerMapping | None:
    for mapping in LAYER_MAPPINGS:
        if mapping.keras_class == class_name:
            return mapping
    return None


# ----------------------------------------------------------------------------------------------
# numcnn -> Keras config
# ----------------------------------------------------------------------------------------------
def layer_to_keras_config(layer, dtype_name: str) -> dict:
    """One layer as Keras 3 serializes it: ``{"module", "class_name", "config", "registered_name"[, "build_config"]}``."""
    mapping = mapping_for_layer(layer)
    config = {"name": layer.name, "trainable": bool(getattr(layer, "trainable", True)),
              "dtype": _dtype_policy(dtype_name), **mapping.to_keras(layer)}
    entry = _serialized("keras.layers", mapping.keras_class, config)
    if mapping.build_config:
        entry["build_config"] = {"input_shape": [None, *layer.input_shape]}
    return entry


def _input_layer_config(shape, dtype_name: str) -> dict:
    return _serialized("keras.layers", "InputLayer", {"batch_shape": [None, *shape], "dtype": dtype_name,
                                                      "sparse": False, "ragged": False, "name": "input_layer",
                                                      "optional": False})


def model_to_keras_config(model: Sequential, include_compile: bool = True) -> dict:
    """``model`` as ``config.json`` of a ``.keras`` file (what ``keras.saving.serialize_keras_object`` gives)."""
    if not model.built:
        raise ValueError("the model has no input shape yet: start it with Input(shape) or call build(shape)")
    dtype_name = model.dtype.name
    shape = [None, *model.input_shape]
    layers = [_input_layer_config(model.input_shape, dtype_name)]
    layers += [layer_to_keras_config(layer, dtype_name) for layer in model.layers]
    # The Sequential itself keeps Keras's global policy (float32), also when its layers compute in float64.
    config = {"name": model.name, "trainable": True, "dtype": _dtype_policy("float32"), "layers": layers,
              "build_input_shape": shape}
    entry = {"module": "keras", "class_name": "Sequential", "config": config, "registered_name": None,
             "build_config": {"input_shape": shape}}
    if include_compile:
        entry["compile_config"] = compile_to_keras_config(model)
    return entry


# Optimizers: numcnn name -> (Keras class, Keras-only keys at the value numcnn implements, slot order).
# Keras keeps an optimizer's variables as [iteration, learning_rate (unless it is a schedule), *slots]
# (keras/src/optimizers/*.py, ``build``); each group of slot names is created by one ``add_optimizer_variables``
# call, which interleaves its names per parameter (Adam: m_0, v_0, m_1, v_1, ...); groups follow each other
# (RMSprop: every velocity, then every momentum, ...); numcnn slots that are not active are left out. Slot order
# None would mean: the state is not mapped, files carry only the config. Keras's Nadam keeps one more variable
# after its slots (``KERAS_TRAILING_VARIABLES``).
KERAS_OPTIMIZERS = {
    "sgd": ("SGD", {}, [("momentum",)]),
    "adam": ("Adam", {"amsgrad": False}, [("m", "v"), ("v_hat",)]),
    "adamw": ("AdamW", {"amsgrad": False}, [("m", "v"), ("v_hat",)]),
    "rmsprop": ("RMSprop", {}, [("velocity",), ("momentum",), ("average_gradient",)]),
    "adagrad": ("Adagrad", {}, [("accumulator",)]),
    "nadam": ("Nadam", {}, [("m", "v")]),
}
# Keys every Keras 3.15 optimizer config has, at the value meaning "off" (numcnn's defaults).
KERAS_OPTIMIZER_BASE = {"weight_decay": None, "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                        "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                        "loss_scale_factor": None, "gradient_accumulation_steps": None}
# Losses: numcnn name -> (Keras class, the class's config keys with Keras's defaults), as Keras 3.15 serializes
# them (besides "name" and "reduction", which must be "sum_over_batch_size": the mean over the batch).
KERAS_LOSSES = {
    "sparse_categorical_crossentropy": ("SparseCategoricalCrossentropy", {"from_logits": False, "ignore_class": None}),
    "categorical_crossentropy": ("CategoricalCrossentropy", {"from_logits": False, "label_smoothing": 0.0, "axis": -1}),
    "binary_crossentropy": ("BinaryCrossentropy", {"from_logits": False, "label_smoothing": 0.0, "axis": -1}),
    "mean_squared_error": ("MeanSquaredError", {}),
}
KERAS_LOSS_NEUTRAL = {"reduction": "sum_over_batch_size"}


def _optimizer_to_keras(optimizer) -> dict:
    if optimizer.name not in KERAS_OPTIMIZERS:
        raise UnsupportedLayerError(f"optimizer {optimizer.name!r} has no Keras mapping")
    class_name, keras_only, _ = KERAS_OPTIMIZERS[optimizer.name]
    config = {"name": optimizer.name, **KERAS_OPTIMIZER_BASE, **keras_only, **optimizer.get_config()}
    if not isinstance(config["learning_rate"], dict):  # a schedule is already in Keras's serialized form
        config["learning_rate"] = float(np.float32(config["learning_rate"]))  # Keras stores it as float32
    return _serialized("keras.optimizers", class_name, config)


def _loss_to_keras(loss):
    """A loss at its defaults by name (Keras keeps a loss given by name as that name), else as a dict. A
    numcnn option Keras's class lacks (SparseCategoricalCrossentropy's label_smoothing) must be off."""
    if loss.name not in KERAS_LOSSES:
        raise UnsupportedLayerError(f"loss {loss.name!r} has no Keras mapping")
    config, defaults = loss.get_config(), type(loss)().get_config()
    if config == defaults:
        return loss.name
    class_name, keras_keys = KERAS_LOSSES[loss.name]
    keras_config = {"name": loss.name, **KERAS_LOSS_NEUTRAL, **keras_keys}
    for key, value in config.items():
        if key in keras_keys:
            keras_config[key] = value
        elif value != defaults.get(key):
            raise UnsupportedLayerError(f"loss {loss.name}: {key}={value!r} has no Keras {class_name} equivalent")
    return _serialized("keras.losses", class_name, keras_config)


def compile_to_keras_config(model) -> dict:
    """Keras's ``compile_config`` for a compiled numcnn model ({} when not compiled, as Keras writes; also,
    with a warning, when its optimizer or loss has no Keras mapping: the file then loads uncompiled)."""
    if model.loss is None:
        return {}
    try:
        optimizer, loss = _optimizer_to_keras(model.optimizer), _loss_to_keras(model.loss)
    except UnsupportedLayerError as error:
        warnings.warn(f"model {model.name!r} is saved without its compile settings: {error}", stacklevel=4)
        return {}
    return {"optimizer": optimizer, "loss": loss, "loss_weights": None, "metrics": list(model.metrics) or None,
            "weighted_metrics": list(model.weighted_metrics) or None, "run_eagerly": False, "steps_per_execution": 1,
            "jit_compile": False}


# ----------------------------------------------------------------------------------------------
# Keras config -> numcnn
# ----------------------------------------------------------------------------------------------
def layer_from_keras_config(entry: dict, keep_name: bool = False):
    """One numcnn layer from a Keras ``{"class_name", "config"}`` entry (None for InputLayer)."""
    class_name, config = entry.get("class_name"), entry.get("config", {})
    if class_name == "InputLayer":
        return None
    name = config.get("name", "?")
    mapping = mapping_for_keras_class(class_name)
    try:
        if mapping is None:
            raise UnsupportedLayerError("this layer type is not implemented in numcnn")
        layer = mapping.from_keras(config)
    except UnsupportedLayerError as error:
        raise UnsupportedLayerError(f"Keras layer {name!r} ({class_name}): {error}") from None
    if keep_name and config.get("name"):
        layer.name = str(config["name"])
    if config.get("trainable") is False and hasattr(layer, "trainable"):
        layer.trainable = False
    return layer


def _input_shape_of(config: dict):
    """The example shape of a Sequential config: its InputLayer, ``build_input_shape`` or a first layer's
    ``batch_input_shape`` (tf.keras 2)."""
    entries = config.get("layers", [])
    first = entries[0].get("config", {}) if entries else {}
    shape = (first.get("batch_shape") or first.get("batch_input_shape") or config.get("build_input_shape")
             or (entries[0].get("build_config", {}).get("input_shape") if entries else None))
    if not shape:
        raise ModelFileError("the model has no input shape (no InputLayer with a batch_shape)")
    return tuple(int(d) for d in shape[1:])


def _model_dtype(entries: list[dict]) -> str:
    """The dtype the layers compute in (their dtype policy; an InputLayer's dtype is only what it is fed)."""
    layers = [e for e in entries if e.get("class_name") != "InputLayer"] or entries
    names = {_dtype_name(e.get("config", {}).get("dtype")) for e in layers} - {None}
    unsupported = names - {"float32", "float64"}
    if unsupported:
        raise UnsupportedLayerError(f"dtype policy {sorted(unsupported)} is not supported (float32, float64 are)")
    if len(names) > 1:
        raise UnsupportedLayerError(f"layers of mixed dtypes {sorted(names)}: numcnn models have one dtype")
    return names.pop() if names else "float32"


def model_from_keras_config(config: dict, keep_names: bool = True, seed: int | None = 0) -> Sequential:
    """A numcnn Sequential from a Keras model config: ``{"class_name": "Sequential", "config": {...}}`` or its
    inner ``{"name", "layers", ...}`` (``keras_model.get_config()``)."""
    if "class_name" in config:
        if config["class_name"] != "Sequential":
            raise UnsupportedLayerError(f"numcnn reads Sequential models; this is a {config['class_name']!r} model")
        config = config.get("config", {})
    entries = config.get("layers")
    if not isinstance(entries, list):
        raise ModelFileError("the model config has no list of layers")
    # seeded like Sequential.from_config: the weights come from the file, but the model's generator also drives
    # Dropout's masks and shuffling, and those must be reproducible too
    model = Sequential(name=config.get("name", "sequential"), dtype=_model_dtype(entries), seed=seed)
    model.add(Input(_input_shape_of(config)))
    for entry in entries:
        layer = layer_from_keras_config(entry, keep_name=keep_names)
        if layer is None:
            continue
        try:
            model.add(layer)  # builds it for the shape before it: e.g. Dense needs a flat input in numcnn
        except ValueError as error:
            raise UnsupportedLayerError(f"Keras layer {entry['config'].get('name', '?')!r} ({entry['class_name']}): "
                                        f"{error}") from None
    return model


def _accepted_arguments(cls) -> set[str]:
    """Keyword arguments of ``cls`` and the base classes its ``**kwargs`` reach."""
    accepted = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            accepted |= {name for name, p in inspect.signature(klass.__init__).parameters.items()
                         if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"}
    return accepted


def _numcnn_arguments(config: dict, cls, neutral: dict, what: str) -> dict:
    """The keys of a Keras config that ``cls`` takes; any other key must be at its neutral value."""
    accepted, kwargs = _accepted_arguments(cls), {}
    for key, value in config.items():
        if key == "name":
            continue
        if key in accepted:
            kwargs[key] = value
        elif key not in neutral or _plain(value) != _plain(neutral[key]):
            raise UnsupportedLayerError(f"{what}: {key}={value!r} is not supported")
    return kwargs


def optimizer_from_keras(entry: dict):
    """A numcnn optimizer from a Keras optimizer config (``{"class_name", "config"}``)."""
    from .. import optimizers

    class_name = entry.get("class_name") if isinstance(entry, dict) else entry
    by_class = {keras_class: name for name, (keras_class, _, _) in KERAS_OPTIMIZERS.items()}
    name = by_class.get(class_name) or (class_name.lower() if isinstance(class_name, str) else None)
    if name not in optimizers.OPTIMIZERS or name not in KERAS_OPTIMIZERS:
        raise UnsupportedLayerError(f"optimizer {class_name!r} is not supported")
    config = entry.get("config", {}) if isinstance(entry, dict) else {}
    neutral = {**KERAS_OPTIMIZER_BASE, **KERAS_OPTIMIZERS[name][1]}
    cls = optimizers.OPTIMIZERS[name]
    kwargs = _numcnn_arguments(config, cls, neutral, f"optimizer {class_name}")
    return cls.from_config(kwargs) if hasattr(cls, "from_config") else cls(**kwargs)  # (from_config: schedules)


def loss_from_keras(entry):
    """A numcnn loss from Keras's compile config: a name (``"sparse_categorical_crossentropy"``) or a dict."""
    from .. import losses

    if isinstance(entry, str):
        name, config = entry, {}
    elif isinstance(entry, dict):
        by_class = {keras_class: name for name, (keras_class, _) in KERAS_LOSSES.items()}
        class_name = entry.get("class_name", "")
        name, config = by_class.get(class_name, keras_snake_case(class_name)), dict(entry.get("config", {}))
    else:
        raise UnsupportedLayerError(f"loss {entry!r} is not supported")
    if name not in losses.LOSSES:
        raise UnsupportedLayerError(f"loss {name!r} is not supported")
    cls = losses.LOSSES[name]
    neutral = {**KERAS_LOSS_NEUTRAL, **KERAS_LOSSES.get(cls().name, (None, {}))[1]}
    return cls(**_numcnn_arguments(config, cls, neutral, f"loss {name}"))


def _metric_name(entry) -> str:
    if isinstance(entry, dict):
        return entry.get("config", {}).get("name") or keras_snake_case(entry.get("class_name", ""))
    return str(entry)


def compile_from_keras(model: Sequential, compile_config: dict, source) -> bool:
    """Compile ``model`` as the Keras file's compile config says, if numcnn supports its optimizer and loss
    (else warn and leave the model uncompiled); metrics numcnn lacks are dropped with a warning."""
    try:
        optimizer = optimizer_from_keras(compile_config.get("optimizer") or compile_config.get("optimizer_config"))
        loss = loss_from_keras(compile_config.get("loss"))
    except (UnsupportedLayerError, TypeError, ValueError, AttributeError) as error:
        warnings.warn(f"{source}: loaded uncompiled: {error}", stacklevel=3)
        return False
    metrics = _supported_metrics(compile_config.get("metrics"), source)
    weighted = _supported_metrics(compile_config.get("weighted_metrics"), source)
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, weighted_metrics=weighted)
    return True


def _supported_metrics(entries, source) -> list[str]:
    """The names of the metrics numcnn has among a Keras compile config's; the others dropped with a warning."""
    names = [_metric_name(m) for m in entries or []]
    kept = [name for name in names if _metric_supported(name)]
    if kept != names:
        warnings.warn(f"{source}: metrics {sorted(set(names) - set(kept))} are not supported by numcnn; dropped",
                      stacklevel=4)
    return kept


def _metric_supported(name: str) -> bool:
    probe = Sequential()
    try:
        probe.compile(metrics=[name])
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# HDF5 weights (Keras 3 layout)
# ----------------------------------------------------------------------------------------------
def weight_group_names(keras_classes: list[str]) -> list[str]:
    """``layers/<group>`` names Keras gives a model's layers: class snake case with a counter in model order
    (``_get_unique_name`` in keras/src/saving/saving_lib.py)."""
    counts: dict[str, int] = {}
    names = []
    for class_name in keras_classes:
        base = keras_snake_case(class_name)
        count = counts.get(base, -1) + 1
        counts[base] = count
        names.append(base if count == 0 else f"{base}_{count}")
    return names


def _keras_slot_order(optimizer, n_params: int) -> list[tuple[str, int]] | None:
    """``(slot name, parameter index)`` of each Keras slot variable, in Keras's order (None: not mapped)."""
    groups = KERAS_OPTIMIZERS.get(optimizer.name, (None, None, None))[2]
    if groups is None:
        return None
    active = set(optimizer.active_slots())
    return [(name, index) for group in groups for index in range(n_params) for name in group if name in active]


def _nadam_u_product(optimizer, params) -> np.ndarray:
    """Keras's Nadam variable ``u_product`` (``U_t = u_1 u_2 ... u_t``, created last, in the weights' dtype).
    numcnn keeps no such variable: ``U_t`` is a function of the step count, recomputed with Keras's operations
    (``Nadam._u_factor``), so it is written from ``iterations`` and, when read, ``iterations`` is enough."""
    dtype = params[0].dtype.type if params else np.float32
    u_product = dtype(1.0)
    for t in range(1, optimizer.iterations + 1):
        u_product = optimizer._u_factor(u_product, t, dtype)
    return np.array(u_product, dtype=dtype)


# Keras variables after the slots: numcnn name -> function(optimizer, params) giving their values.
KERAS_TRAILING_VARIABLES = {"nadam": [_nadam_u_product]}


def _has_learning_rate_variable(optimizer) -> bool:
    """Keras keeps a float learning rate in a variable; a schedule is not one."""
    return not isinstance(optimizer.get_config()["learning_rate"], dict)


def _optimizer_variables(model) -> list[np.ndarray] | None:
    """Keras's optimizer variables ``[iteration, learning_rate, *slots]`` for a compiled model, else None."""
    optimizer = model.optimizer
    if model.loss is None or optimizer is None or not compile_to_keras_config(model):
        return None
    params = model.trainable_params()
    order = _keras_slot_order(optimizer, len(params))
    if order is None:
        return None
    if not optimizer.slots:  # not trained yet: the slots as its first step would create them
        fresh = copy.deepcopy(optimizer)
        fresh.build(params)
        slots = fresh.slots
    else:
        slots = optimizer.slots
    variables = [np.array(optimizer.iterations, dtype=np.int64)]
    if _has_learning_rate_variable(optimizer):
        variables.append(np.array(optimizer.learning_rate, dtype=np.float32))
    trailing = [value(optimizer, params) for value in KERAS_TRAILING_VARIABLES.get(optimizer.name, [])]
    return variables + [slots[name][index] for name, index in order] + trailing


def _set_optimizer_variables(model, variables: list[np.ndarray], source) -> None:
    """The inverse of ``_optimizer_variables`` (after compile); a count that does not fit is skipped with a
    warning, as Keras does."""
    optimizer = model.optimizer
    params = model.trainable_params()
    order = _keras_slot_order(optimizer, len(params))
    if order is None:
        warnings.warn(f"{source}: the state of Keras's {optimizer.name} optimizer is not mapped to numcnn's: it "
                      f"starts afresh (iterations 0)", stacklevel=3)
        return
    head = 2 if _has_learning_rate_variable(optimizer) else 1
    n_trailing = len(KERAS_TRAILING_VARIABLES.get(optimizer.name, []))  # recomputed from iterations: not read
    if len(variables) != head + len(order) + n_trailing:
        warnings.warn(f"{source}: optimizer state skipped: the file has {len(variables)} optimizer variables, "
                      f"numcnn's {optimizer.name} needs {head + len(order) + n_trailing}", stacklevel=3)
        return
    optimizer.build(params)
    for (name, index), value in zip(order, variables[head:head + len(order)]):
        optimizer.slots[name][index][...] = value
    optimizer.iterations = int(variables[0])


def weights_h5_bytes(model, include_optimizer: bool = True) -> bytes:
    """The HDF5 file Keras 3 writes as ``model.weights.h5`` (and as a ``.weights.h5``), in memory."""
    import h5py

    buffer = io.BytesIO()
    classes = [mapping_for_layer(layer).keras_class for layer in model.layers]
    with h5py.File(buffer, "w") as h5:
        h5.create_group("vars").attrs["name"] = model.name
        for layer, group_name in zip(model.layers, weight_group_names(classes)):
            variables = h5.create_group(f"layers/{group_name}").create_group("vars")
            variables.attrs["name"] = layer.name
            for index, weight in enumerate(layer.get_weights()):
                variables[str(index)] = weight
        optimizer_variables = _optimizer_variables(model) if include_optimizer else None
        if optimizer_variables is not None:
            variables = h5.create_group("optimizer").create_group("vars")
            variables.attrs["name"] = model.optimizer.name
            for index, value in enumerate(optimizer_variables):
                variables[str(index)] = value
    return buffer.getvalue()


def _dataset(group, key: str) -> np.ndarray:
    """A plain HDF5 dataset stored in this file (no external or soft links, no virtual datasets)."""
    import h5py

    link = group.get(key, getlink=True)
    dataset = group.get(key)
    if not isinstance(link, h5py.HardLink) or not isinstance(dataset, h5py.Dataset) or dataset.is_virtual:
        raise ModelFileError(f"{group.name}/{key} is not a plain dataset of this file")
    if dataset.dtype.kind not in "fiub":
        raise ModelFileError(f"{group.name}/{key} holds {dataset.dtype}, not numbers")
    return np.asarray(dataset[()])


def _group_variables(h5, path: str) -> list[np.ndarray]:
    group = h5.get(path)
    if group is None or "vars" not in group:
        return []
    variables = group["vars"]
    return [_dataset(variables, str(i)) for i in range(len(variables))]


def load_h5_weights(h5, model: Sequential, keras_classes: list[str] | None = None, source="") -> None:
    """Fill ``model`` from a Keras 3 weights HDF5 (``layers/<group>/vars/<i>``), layer by layer."""
    if "layers" not in h5:
        raise ModelFileError(f"{source}: no 'layers' group: not a Keras 3 weights file")
    keras_classes = keras_classes or [mapping_for_layer(layer).keras_class for layer in model.layers]
    for layer, group_name in zip(model.layers, weight_group_names(keras_classes)):
        weights = _group_variables(h5, f"layers/{group_name}")
        if len(weights) != len(layer.params):
            raise ModelFileError(f"{source}: layer {layer.name!r} has {len(layer.params)} weight arrays, the file's "
                                 f"layers/{group_name} has {len(weights)}: the weights do not fit this model")
        try:
            layer.set_weights(weights)
        except ValueError as error:
            raise ModelFileError(f"{source}: the weights do not fit this model: {error}") from None


def _legacy_h5_weights(group) -> list[np.ndarray]:
    """Weights in model order from a tf.keras full-model ``.h5`` (``model_weights/<layer name>/...``)."""
    weights = []
    for layer_name in group.attrs.get("layer_names", []):
        layer_name = layer_name.decode() if isinstance(layer_name, bytes) else layer_name
        layer_group = group[layer_name]
        for weight_name in layer_group.attrs.get("weight_names", []):
            weight_name = weight_name.decode() if isinstance(weight_name, bytes) else weight_name
            weights.append(_dataset(layer_group, weight_name))
    return weights


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------
def keras_archive_bytes(model: Sequential) -> bytes:
    """The bytes of a ``.keras`` file for ``model`` (zip of metadata.json, config.json, model.weights.h5)."""
    metadata = {"keras_version": KERAS_VERSION_WRITTEN,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")}
    contents = {"metadata.json": json.dumps(metadata).encode(),
                "config.json": json.dumps(model_to_keras_config(model)).encode(),
                "model.weights.h5": weights_h5_bytes(model)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in KERAS_ENTRIES:
            archive.writestr(name, contents[name])
    return buffer.getvalue()


def save_keras_file(model: Sequential, path) -> None:
    """Write ``model`` as a Keras 3 ``.keras`` file (atomically) that ``keras.models.load_model`` loads."""
    from ..io import atomic_write_bytes

    atomic_write_bytes(path, keras_archive_bytes(model))


def save_keras_weights(model: Sequential, path) -> None:
    """Write ``model``'s weights as a Keras 3 ``.weights.h5`` (atomically; ``keras_model.load_weights`` reads it)."""
    from ..io import atomic_write_bytes

    atomic_write_bytes(path, weights_h5_bytes(model))


def _read_member(archive: zipfile.ZipFile, name: str, limit: int, path) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ModelFileError(f"{path}: a zip archive without {name}: not a Keras .keras file") from None
    if info.file_size > limit:
        raise ModelFileError(f"{path}: {name} is {info.file_size} bytes, implausibly large")
    return archive.read(name)


def read_keras_archive(path) -> tuple[dict, bytes]:
    """``(config, weights_h5_bytes)`` of a ``.keras`` file."""
    try:
        with zipfile.ZipFile(path) as archive:
            config_bytes = _read_member(archive, "config.json", MAX_CONFIG_BYTES, path)
            weights = _read_member(archive, "model.weights.h5", MAX_WEIGHTS_BYTES, path)
    except ModelFileError:
        raise
    except Exception as error:  # noqa: BLE001  zipfile raises many kinds on a damaged archive
        raise ModelFileError(f"{path}: not a readable Keras .keras file ({type(error).__name__}: {error})") from None
    try:
        config = json.loads(config_bytes)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: config.json is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: config.json is not a model config")
    return config, weights


def _open_h5(source):
    import h5py

    try:
        return h5py.File(source, "r")
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{getattr(source, 'name', source)}: not a readable HDF5 file ({error})") from None


def _load_archive(path, compile: bool) -> Sequential:
    config, weights = read_keras_archive(path)
    model = model_from_keras_config(config)
    keras_classes = [e.get("class_name") for e in config["config"]["layers"] if e.get("class_name") != "InputLayer"]
    with _open_h5(io.BytesIO(weights)) as h5:
        load_h5_weights(h5, model, keras_classes, source=path)
        compiled = compile and config.get("compile_config") and compile_from_keras(model, config["compile_config"], path)
        if compiled and "optimizer" in h5:
            _set_optimizer_variables(model, _group_variables(h5, "optimizer"), path)
    return model


def _load_legacy_h5(h5, path, compile: bool) -> Sequential:
    """A tf.keras full-model ``.h5`` (``model.save("m.h5")``): JSON config in the root attributes."""
    raw = h5.attrs["model_config"]
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: its model_config is not valid JSON ({error})") from None
    model = model_from_keras_config(config)
    if "model_weights" not in h5:
        raise ModelFileError(f"{path}: a legacy Keras .h5 without model_weights")
    try:
        model.set_weights(_legacy_h5_weights(h5["model_weights"]))
    except (ValueError, KeyError) as error:
        raise ModelFileError(f"{path}: the weights do not fit the model config: {error}") from None
    raw = h5.attrs.get("training_config")
    if compile and raw is not None:
        compile_from_keras(model, json.loads(raw.decode() if isinstance(raw, bytes) else raw), path)
    return model


def load_keras_file(path, model: Sequential | None = None, compile: bool = True) -> Sequential:
    """Load a Keras ``.keras`` file or legacy full-model ``.h5`` (architecture + weights, compiled when the
    file has a compile config numcnn supports), or a ``.weights.h5`` into the numcnn ``model`` given."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            return _load_archive(path, compile)
        with _open_h5(path) as h5:
            if "model_config" in h5.attrs:
                return _load_legacy_h5(h5, path, compile)
            if "layers" not in h5:
                raise ModelFileError(f"{path}: an HDF5 file, but not a Keras model or weights file (no 'layers' "
                                     f"group as Keras 3 writes, no 'model_config' as tf.keras writes)")
            if model is None:
                raise ModelFileError(f"{path}: a Keras weights file holds weights but no architecture: build the "
                                     f"model and pass it (load_keras_file(path, model=...)), or save a .keras file")
            load_h5_weights(h5, model, source=path)
            return model
    except (ModelFileError, UnsupportedLayerError):
        raise
    except Exception as error:  # noqa: BLE001  a damaged file can break h5py or the config in many ways
        raise ModelFileError(f"{path}: cannot read as a Keras model file ({type(error).__name__}: {error})") from None


# ----------------------------------------------------------------------------------------------
# Live models
# ----------------------------------------------------------------------------------------------
def from_keras(keras_model, keep_names: bool = False, seed: int | None = 0) -> Sequential:
    """A numcnn copy of a Keras Sequential model: same architecture, same weights (bit for bit). Layer names
    are numcnn's own automatic ones unless ``keep_names`` (Keras's automatic names count every layer made in
    the process, so they differ from run to run). ``seed`` seeds the model's generator (Dropout masks,
    shuffling in ``fit``)."""
    model = model_from_keras_config(keras_model.get_config(), keep_names=keep_names, seed=seed)
    model.set_weights(keras_model.get_weights())
    return model


def to_keras(model: Sequential):
    """A Keras 3 Sequential model with the same layers, names, weights and dtype (imports Keras): Keras builds
    it from the very config a ``.keras`` file holds, so the live and the file conversions are one."""
    import keras

    keras_model = keras.saving.deserialize_keras_object(model_to_keras_config(model, include_compile=False))
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
