"""The Layer contract every numcnn layer follows.

A layer holds **all** its weights in ``params`` (a dict in Keras's ``get_weights()`` order: ``kernel`` then
``bias``; BatchNormalization's ``gamma, beta, moving_mean, moving_variance``), and after ``backward`` the
gradients of its trainable ones in ``grads``. ``forward`` keeps in ``self._cache`` what ``backward`` needs, so
one ``forward`` must precede each ``backward``.

Trainable or not, as in Keras: the keys in ``non_trainable_keys`` (a class attribute, e.g. the moving
statistics, which ``forward`` updates itself) are never given to the optimizer, and ``layer.trainable = False``
freezes every weight of the layer. ``trainable_weights`` (the arrays the optimizer updates, in order) and
``get_gradients()`` (their gradients, same order) follow both; ``get_weights``/``set_weights`` and
``count_params`` cover all weights.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import ShapeError
from ..kernels.activations import ACTIVATIONS, activation_name


def snake_case(name: str) -> str:
    """``Conv2D`` -> ``conv2d``, ``MaxPooling2D`` -> ``max_pooling2d`` (Keras's automatic layer names)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z][a-z])", "_", name).lower()


class Layer:
    """Base class: shapes exclude the batch axis, e.g. ``input_shape == (28, 28, 1)``."""

    non_trainable_keys: tuple[str, ...] = ()  # weights the optimizer never updates (see the module docstring)
    cache_attributes: tuple[str, ...] = ("_cache",)  # what forward keeps for backward (``release_cache``)

    def __init__(self, name: str | None = None, input_shape=None, trainable: bool = True):
        self.name = name
        self.trainable = trainable
        # A layer that draws random numbers (Dropout) keeps its own Generator here; checkpoints save its state.
        self.rng: np.random.Generator | None = None
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.input_shape: tuple[int, ...] | None = tuple(input_shape) if input_shape is not None else None
        self.output_shape: tuple[int, ...] | None = None
        self.dtype = np.dtype(np.float32)
        self._cache = None

    # --- building ---------------------------------------------------------------------------
    def build(self, input_shape, rng: np.random.Generator, dtype=np.float32) -> tuple[int, ...]:
        """Create the parameters for ``input_shape`` (batch axis excluded); return the output shape."""
        self.input_shape = tuple(int(d) for d in input_shape)
        self.dtype = np.dtype(dtype)
        self.create_params(rng)
        self.output_shape = self.compute_output_shape(self.input_shape)
        return self.output_shape

    def create_params(self, rng: np.random.Generator) -> None:
        """Layers with weights override this; weightless layers have nothing to create."""

    def compute_output_shape(self, input_shape):
        return input_shape

    # --- the math -----------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, x, training: bool = False):
        return self.forward(x, training=training)

    def release_cache(self) -> None:
        """Drop what the last forward kept for its backward. ``predict`` and ``evaluate``, which never go
        backward, call this after each batch: the next batch's arrays then take the memory just freed instead
        of new pages (see ``Sequential.release_caches``)."""
        for name in self.cache_attributes:
            setattr(self, name, None)

    # --- weights ------------------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        return [value.copy() for value in self.params.values()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ShapeError(f"layer {self.name!r} expects {len(self.params)} weight arrays, got {len(weights)}")
        for (key, current), new in zip(self.params.items(), weights):
            new = np.asarray(new)
            if new.shape != current.shape:
                raise ShapeError(
                    f"layer {self.name!r}: weight {key!r} has shape {current.shape}, got {new.shape}"
                )
            current[...] = new  # in place, so views (e.g. an optimizer's flat buffer) stay valid

    @property
    def trainable(self) -> bool:
        """Keras's attribute: False freezes all of this layer's weights (BatchNormalization then also runs in
        inference mode, as in Keras)."""
        return self._trainable

    @trainable.setter
    def trainable(self, value) -> None:
        self._trainable = bool(value)

    def trainable_keys(self) -> list[str]:
        """Keys of the weights the optimizer updates, in ``params`` order (none when frozen)."""
        if not self.trainable:
            return []
        return [key for key in self.params if key not in self.non_trainable_keys]

    @property
    def weights(self) -> list[np.ndarray]:
        """All weight arrays themselves (not copies), in ``get_weights()`` order."""
        return list(self.params.values())

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        return [self.params[key] for key in self.trainable_keys()]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        trainable = set(self.trainable_keys())
        return [value for key, value in self.params.items() if key not in trainable]

    def get_gradients(self) -> list[np.ndarray]:
        """Gradients of ``trainable_weights``, in the same order."""
        return [self.grads[key] for key in self.trainable_keys()]

    def count_params(self) -> int:
        return int(sum(value.size for value in self.params.values()))

    def get_config(self) -> dict:
        config = {"name": self.name}
        if not self.trainable:  # only when frozen, so the configs of ordinary layers stay as they were
            config["trainable"] = False
        return config

    @classmethod
    def from_config(cls, config: dict):
        """``cls(**config)``; ``trainable`` (Keras's key, present in every Keras layer config) is set afterwards,
        so layers whose ``__init__`` does not take it still round-trip."""
        config = dict(config)
        trainable = config.pop("trainable", True)
        layer = cls(**config)
        layer.trainable = trainable
        return layer

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class AffineLayer(Layer):
    """Shared machinery of Conv2D and Dense: an affine map ``z = x (*) w + b`` followed by an activation.

    Subclasses provide ``kernel_shape(input_shape)``, ``affine_forward(x, w, b)`` returning ``(z, cache)``
    and ``affine_backward(dz, cache)`` returning ``(dx, dw, db)``.
    """

    cache_attributes = ("_cache", "_activation_cache", "pre_activation")

    def __init__(self, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", name=None, input_shape=None):
        from .. import initializers

        super().__init__(name=name, input_shape=input_shape)
        self.activation = activation_name(activation)
        self._activation_forward, self._activation_backward = ACTIVATIONS[self.activation]
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = bias_initializer
        self._kernel_init = initializers.get(kernel_initializer)
        self._bias_init = initializers.get(bias_initializer)
        self.pre_activation = None  # z of the last forward: Sequential fuses softmax + cross-entropy on it

    def create_params(self, rng):
        shape = self.kernel_shape(self.input_shape)
        self.params = {"kernel": self._kernel_init(shape, rng, dtype=self.dtype)}
        if self.use_bias:
            self.params["bias"] = self._bias_init((shape[-1],), rng, dtype=self.dtype)

    def _bias(self):
        if self.use_bias:
            return self.params["bias"]
        return np.zeros(self.params["kernel"].shape[-1], dtype=self.dtype)

    def check_input(self, x) -> None:
        """Rank and the last axis (channels or features) must fit the kernel; spatial sizes may vary (a
        convolution runs on any image size, which DeepDream and texture synthesis use)."""
        kernel = self.params["kernel"]
        expected = (None,) * (kernel.ndim - 2) + (kernel.shape[-2],)
        if x.ndim != len(expected) + 1 or x.shape[-1] != kernel.shape[-2]:
            shown = ", ".join("?" if d is None else str(d) for d in expected)
            raise ShapeError(f"layer {self.name!r} ({type(self).__name__}) expects input (N, {shown}), got {x.shape}")

    def forward(self, x, training=False):
        self.check_input(x)
        z, self._cache = self.affine_forward(x, self.params["kernel"], self._bias())
        self.pre_activation = z
        y, self._activation_cache = self._activation_forward(z)
        return y

    def backward(self, dy, need_input_gradient=True):
        dz = self._activation_backward(dy, self._activation_cache)
        return self.backward_from_pre_activation(dz, need_input_gradient)

    def backward_from_pre_activation(self, dz, need_input_gradient=True):
        """Backward of the affine part only, given ``dL/dz``; fills ``self.grads``; returns ``dL/dx``
        (None when ``need_input_gradient`` is False: a first layer in training skips that work)."""
        dx, dw, db = self.affine_backward(dz, self._cache, need_input_gradient)
        self.set_gradients(dw, db)
        return dx

    def set_gradients(self, dw, db) -> None:
        self.grads = {"kernel": dw}
        if self.use_bias:
            self.grads["bias"] = db

    def get_config(self):
        return {
            **super().get_config(),
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
        }
