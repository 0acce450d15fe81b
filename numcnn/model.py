"""``Sequential``: a chain of layers, trained by hand-written backpropagation (no autograd).

Forward runs the layers in order; backward runs them in reverse, each turning ``dL/d(output)`` into
``dL/d(input)`` and filling its own ``grads``::

    y = layer_L( ... layer_2(layer_1(x)))          dx = backward_1( ... backward_L(dL/dy))

When the last op is a softmax and the loss is a cross-entropy on probabilities, the loss and its
gradient are computed from the softmax's input ``z`` (the logits), as Keras does: it is exact where the
clipped-probability formula is not, and numerically stable (``dL/dz = (softmax(z) - onehot(y)) / N``).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from . import losses as losses_module
from . import optimizers as optimizers_module
from . import validation
from .errors import ShapeError, TrainingDivergedError
from .layers import LAYER_CLASSES, Activation, AffineLayer, Conv2D, Input, Layer
from .layers.base import snake_case


class History:
    """Per-epoch metrics of ``fit``, as in Keras: ``history.history["loss"]`` etc."""

    def __init__(self):
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def append(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))


class Sequential:
    """A linear stack of layers, e.g. the source document's MNIST model::

        model = Sequential([
            Input((28, 28, 1)),
            Conv2D(32, 3, activation="relu"), MaxPooling2D(2),
            Conv2D(64, 3, activation="relu"), MaxPooling2D(2),
            Conv2D(64, 3, activation="relu"),
            Flatten(), Dense(64, activation="relu"), Dense(10, activation="softmax"),
        ], seed=0)

    ``seed`` (or ``rng``, a ``numpy.random.Generator``) drives weight initialisation: the same seed gives
    the same weights, bit for bit. ``dtype`` is the dtype of weights and computation (float32 or float64).
    """

    fuse_layers = True  # run Conv2D + MaxPooling2D pairs as one kernel (see ``steps``); False: layer by layer

    def __init__(self, layers=None, name: str = "sequential", seed: int | None = None,
                 rng: np.random.Generator | None = None, dtype="float32"):
        self.name = name
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        self.layers: list[Layer] = []
        self.input_shape: tuple[int, ...] | None = None
        self.optimizer = None
        self.loss = None
        self.metrics: list[str] = []
        self._name_counts: dict[str, int] = {}
        for layer in layers or []:
            self.add(layer)

    # ------------------------------------------------------------------------------------------
    # Building
    # ------------------------------------------------------------------------------------------
    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a numcnn layer, got {type(layer).__name__}")
        if isinstance(layer, Input):
            if self.layers or self.input_shape is not None:
                raise ValueError("Input must be the first layer of a Sequential model")
            self.input_shape = layer.shape
            return
        layer.name = layer.name or self._automatic_name(layer)
        if not self.layers and self.input_shape is None and layer.input_shape is not None:
            self.input_shape = layer.input_shape
        self.layers.append(layer)
        if self.input_shape is not None:
            self._build_layer(layer, self._shape_before(len(self.layers) - 1))

    def _automatic_name(self, layer) -> str:
        base = snake_case(type(layer).__name__)
        count = self._name_counts.get(base, 0)
        self._name_counts[base] = count + 1
        return base if count == 0 else f"{base}_{count}"

    def _shape_before(self, index: int):
        return self.input_shape if index == 0 else self.layers[index - 1].output_shape

    def _build_layer(self, layer, input_shape):
        layer.build(input_shape, self.rng, dtype=self.dtype)

    def build(self, input_shape) -> None:
        """Build every layer for examples of ``input_shape`` (batch axis excluded)."""
        self.input_shape = tuple(int(d) for d in input_shape)
        for index, layer in enumerate(self.layers):
            self._build_layer(layer, self._shape_before(index))

    @property
    def built(self) -> bool:
        return self.input_shape is not None and all(layer.output_shape is not None for layer in self.layers)

    @property
    def output_shape(self):
        return self.layers[-1].output_shape if self.layers else self.input_shape

    def _require_built(self):
        if not self.built:
            raise RuntimeError("the model has no input shape yet: start it with Input(shape) or call build(shape)")

    # ------------------------------------------------------------------------------------------
    # The manual-backprop API
    # ------------------------------------------------------------------------------------------
    def _as_batch(self, x, require_finite: bool = False) -> np.ndarray:
        """Check a batch once at the model's boundary (see ``numcnn.validation``; integers are refused)."""
        self._require_built()
        return validation.check_batch(x, self.input_shape, f"model {self.name!r}", self.dtype, require_finite)

    def steps(self) -> list[tuple[int, int]]:
        """How the layers run, as ``(first, last)`` index pairs: a Conv2D followed by a MaxPooling2D runs as
        one fused kernel (``numcnn.kernels.fused``: the same math without storing the full-size activation)
        when ``fuse_layers`` is True; every other layer runs alone (``first == last``)."""
        steps, index = [], 0
        while index < len(self.layers):
            layer = self.layers[index]
            following = self.layers[index + 1] if index + 1 < len(self.layers) else None
            fused = self.fuse_layers and isinstance(layer, Conv2D) and layer.fuses_with(following)
            steps.append((index, index + 1) if fused else (index, index))
            index += 2 if fused else 1
        return steps

    def forward(self, x, training: bool = False) -> np.ndarray:
        """Run every layer in order; each keeps what its ``backward`` needs."""
        x = self._as_batch(x)
        for step in self.steps():
            self._last_layer_input = x  # the logits z when the last layer is a Softmax (fused loss)
            x = self.step_forward(step, x, training)
        self._last_output = x
        return x

    def step_forward(self, step: tuple[int, int], x, training: bool = False) -> np.ndarray:
        """Forward of one step of ``steps()``: one layer, or a fused Conv2D + MaxPooling2D pair."""
        first, last = step
        if last > first:
            return self.layers[first].forward_pooled(x, self.layers[last], training=training)
        return self.layers[first].forward(x, training=training)

    def step_backward(self, step: tuple[int, int], dy, need_input_gradient: bool = True):
        """Backward of one step (after its ``step_forward``); returns ``dL/d(step input)`` or None when not
        needed (a first Conv2D/Dense in training skips that work)."""
        first, last = step
        layer = self.layers[first]
        if last > first:
            return layer.backward_pooled(dy, need_input_gradient)
        if isinstance(layer, AffineLayer):
            return layer.backward(dy, need_input_gradient=need_input_gradient)
        return layer.backward(dy)

    __call__ = forward

    def backward(self, dy, start: int | None = None, need_input_gradient: bool = True) -> np.ndarray:
        """Backpropagate ``dy = dL/d(output)`` through the layers (from ``layers[start - 1]`` down when
        ``start`` is given); fills every layer's ``grads`` and returns ``dL/dx``, the input gradient.

        Training does not need ``dL/dx``: with ``need_input_gradient=False`` a first Conv2D/Dense layer skips
        computing it (the largest col2im of the model) and None is returned."""
        dy = np.asarray(dy, dtype=self.dtype)
        stop = len(self.layers) if start is None else start
        for first, last in reversed(self.steps()):
            if first >= stop:
                continue
            if last >= stop:
                raise ValueError(f"backward cannot start inside the fused layers {first}-{last}")
            dy = self.step_backward((first, last), dy, need_input_gradient or first > 0)
        return dy

    def _softmax_output(self):
        """How the model's output comes out of a softmax: ``"layer"`` when the last layer is a softmax
        activation layer, ``"activation"`` when it is a Dense/Conv2D with ``activation="softmax"``, else None."""
        last = self.layers[-1] if self.layers else None
        if isinstance(last, Activation) and last.activation == "softmax":
            return "layer"
        if isinstance(last, AffineLayer) and last.activation == "softmax":
            return "activation"
        return None

    def _loss_and_backward(self, y, output, need_input_gradient=True) -> tuple[float, np.ndarray]:
        """Loss of ``output`` against ``y``, then backward through the whole model; returns ``(loss, dx)``."""
        loss_fn = self._require_compiled()
        if loss_fn.fuses_with_softmax and self._softmax_output():
            loss, dz = loss_fn.loss_and_gradient_from_logits(y, self._logits(output))
            return loss, self.backward_from_logits(dz, need_input_gradient)
        loss, dy = loss_fn.loss_and_gradient(y, output)
        return loss, self.backward(dy, need_input_gradient=need_input_gradient)

    def loss_and_gradients(self, x, y) -> tuple[float, list[np.ndarray]]:
        """Forward (training mode), loss and backward; returns ``(loss, grads)`` with ``grads`` in
        ``get_weights()`` order. Parameters are **not** updated."""
        output = self.forward(x, training=True)
        loss, _ = self._loss_and_backward(y, output, need_input_gradient=False)
        return float(loss), self.get_gradients()

    # ------------------------------------------------------------------------------------------
    # Logits: what generation and explanation differentiate (not the softmax, which can rise by
    # pushing the other classes down)
    # ------------------------------------------------------------------------------------------
    def forward_logits(self, x) -> np.ndarray:
        """Forward pass returning the logits ``z`` (the input of a final softmax, or the output if none)."""
        return self._logits(self.forward(x))

    def _logits(self, output) -> np.ndarray:
        """The logits of the last forward pass whose output was ``output``."""
        kind = self._softmax_output()
        if kind == "layer":  # the input of the softmax layer
            return self._last_layer_input
        if kind == "activation":
            return self.layers[-1].pre_activation
        return output

    def backward_from_logits(self, dz, need_input_gradient: bool = True) -> np.ndarray:
        """``dL/dx`` given ``dz = dL/d(logits)`` after a forward pass; fills every layer's ``grads``."""
        dz = np.asarray(dz, dtype=self.dtype)
        kind = self._softmax_output()
        last = len(self.layers) - 1
        if kind == "layer":
            return self.backward(dz, start=last, need_input_gradient=need_input_gradient)
        if kind == "activation":
            if last == 0:
                return self.layers[0].backward_from_pre_activation(dz, need_input_gradient)
            dy = self.layers[last].backward_from_pre_activation(dz)
            return self.backward(dy, start=last, need_input_gradient=need_input_gradient)
        return self.backward(dz, need_input_gradient=need_input_gradient)

    def loss_and_input_gradient(self, x, y) -> tuple[float, np.ndarray]:
        """Loss of a batch and ``dL/dx`` (for adversarial examples); fills the weight gradients too."""
        output = self.forward(x, training=True)
        loss, dx = self._loss_and_backward(y, output)
        return float(loss), dx

    def get_gradients(self) -> list[np.ndarray]:
        return [g for layer in self.layers for g in layer.get_gradients()]

    def trainable_params(self) -> list[np.ndarray]:
        """The parameter arrays themselves (not copies), in ``get_weights()`` order."""
        return [p for layer in self.layers for p in layer.params.values()]

    def train_step(self, x, y) -> float:
        """One step of gradient descent on one batch: forward, loss, backward, optimizer update."""
        loss, grads = self.loss_and_gradients(x, y)
        # Check before updating: a NaN/inf step must not reach the weights (they stay the last good ones).
        if not np.isfinite(loss) or not all(np.isfinite(np.sum(g)) for g in grads):
            raise TrainingDivergedError(f"the loss or a gradient became non-finite (loss {loss}); the weights "
                                        f"are those from before this step — try a smaller learning rate")
        self.optimizer.apply(self.trainable_params(), grads)
        return loss

    # ------------------------------------------------------------------------------------------
    # Keras-style training API
    # ------------------------------------------------------------------------------------------
    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy", metrics=None) -> None:
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        metrics = list(metrics or [])
        unknown = [m for m in metrics if m not in ("accuracy", "acc")]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; numcnn supports ['accuracy']")
        self.metrics = ["accuracy" for _ in metrics]

    def _require_compiled(self):
        if self.loss is None:
            raise RuntimeError("call model.compile(optimizer, loss) before training or evaluating")
        return self.loss

    @staticmethod
    def _correct(y, output) -> int:
        """Number of correct predictions: sparse labels (N,) or one-hot (N, C), as Keras's "accuracy"."""
        predicted = np.argmax(output, axis=-1)
        y = np.asarray(y)
        labels = np.argmax(y, axis=-1) if y.ndim == output.ndim else y.reshape(predicted.shape)
        return int(np.sum(predicted == labels))

    def fit(self, x, y, epochs: int = 1, batch_size: int = 32, shuffle: bool = True, seed: int | None = None,
            validation_data=None, verbose: int = 1, checkpoint_dir=None, checkpoint_every: int | None = None,
            resume: bool = False) -> History:
        """Train for ``epochs`` passes over ``(x, y)`` in mini-batches (the last one may be smaller).

        The epoch's reported loss is, as in Keras, the mean of the batches' losses (each measured before
        that batch's update) weighted by batch size. Shuffling uses ``numpy.random.default_rng(seed)``
        (``seed=None``: the model's own generator), so a seed reproduces training bit for bit.

        ``checkpoint_dir``: save model, optimizer state, shuffling RNG state and position atomically after every
        epoch and every ``checkpoint_every`` steps; ``resume=True`` continues from the last checkpoint so that
        the final weights are bit-identical to an uninterrupted run.
        """
        from .checkpoint import Checkpointer, TrainingState

        self._require_compiled()
        x = self._as_batch(x, require_finite=True)
        y = validation.check_labels(y, len(x), self.output_shape, f"model {self.name!r} fit")
        batch_size = validation.check_positive_int(batch_size, "batch_size")
        if validation_data is not None:
            validation_data = (self._as_batch(validation_data[0], require_finite=True), validation_data[1])
        rng = np.random.default_rng(seed) if seed is not None else self.rng
        checkpointer = Checkpointer(checkpoint_dir, checkpoint_every) if checkpoint_dir is not None else None
        state = TrainingState()
        if resume:
            if checkpointer is None:
                raise ValueError("resume=True needs checkpoint_dir")
            state = checkpointer.restore(self, rng)
        history = state.history
        for epoch in range(state.epoch, epochs):
            if state.step == 0:
                state.rng_state = rng.bit_generator.state  # so a resumed run redraws this epoch's order
            else:
                rng.bit_generator.state = state.rng_state  # resuming mid-epoch: the same order again
            order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
            logs = self._run_epoch(x, y, order, batch_size, epoch, epochs, verbose, state, checkpointer)
            if validation_data is not None:
                val = self.evaluate(*validation_data, batch_size=batch_size, verbose=0, return_dict=True)
                logs.update({f"val_{key}": value for key, value in val.items()})
            history.append(epoch, logs)
            state.next_epoch(epoch + 1, rng.bit_generator.state)
            if checkpointer is not None:
                checkpointer.save(self, state)
            if verbose:
                print(f"Epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k}={v:.4f}" for k, v in logs.items()),
                      file=sys.stderr)
        return history

    def _run_epoch(self, x, y, order, batch_size, epoch, epochs, verbose, state, checkpointer) -> dict:
        from tqdm.auto import tqdm

        starts = range(state.step * batch_size, len(x), batch_size)
        bar = tqdm(starts, desc=f"Epoch {epoch + 1}/{epochs}", unit="batch", disable=not verbose,
                   leave=False, file=sys.stderr)
        for start in bar:
            batch = order[start:start + batch_size]
            xb, yb = x[batch], y[batch]
            try:
                loss = self.train_step(xb, yb)
            except TrainingDivergedError as error:
                raise TrainingDivergedError(f"epoch {epoch + 1}, step {state.step + 1}: {error}") from None
            state.add_batch(loss, len(batch), self._correct(yb, self._last_output) if self.metrics else 0)
            if checkpointer is not None and checkpointer.due(state.step):
                checkpointer.save(self, state)
            if verbose:  # (formatting the postfix costs 25 us a step even with the bar disabled)
                bar.set_postfix(loss=f"{state.loss_sum / state.seen:.4f}", refresh=False)
        logs = {"loss": state.loss_sum / state.seen}
        if self.metrics:
            logs["accuracy"] = state.correct / state.seen
        return logs

    def predict(self, x, batch_size: int = 32, verbose: int = 0) -> np.ndarray:
        """Model outputs for ``x``, computed ``batch_size`` examples at a time."""
        x = self._as_batch(x, require_finite=True)
        batch_size = validation.check_positive_int(batch_size, "batch_size")
        return np.concatenate([self.forward(x[start:start + batch_size]) for start in range(0, len(x), batch_size)])

    def evaluate(self, x, y, batch_size: int = 32, verbose: int = 0, return_dict: bool = False):
        """``[loss, accuracy]`` over ``(x, y)`` (``{"loss": .., "accuracy": ..}`` with ``return_dict``).
        The loss is the mean over examples, computed as Keras does (fused from the logits after a softmax)."""
        loss_fn = self._require_compiled()
        x = self._as_batch(x, require_finite=True)
        y = validation.check_labels(y, len(x), self.output_shape, f"model {self.name!r} evaluate")
        batch_size = validation.check_positive_int(batch_size, "batch_size")
        total_loss, total_correct = 0.0, 0
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            output = self.forward(xb)
            total_loss += float(self._loss_only(loss_fn, yb, output)) * len(xb)
            total_correct += self._correct(yb, output)
        results = {"loss": total_loss / max(len(x), 1)}
        if self.metrics:
            results["accuracy"] = total_correct / max(len(x), 1)
        return results if return_dict else list(results.values())

    def _loss_only(self, loss_fn, y, output):
        if loss_fn.fuses_with_softmax and self._softmax_output():
            return loss_fn.loss_and_gradient_from_logits(y, self._logits(output))[0]
        return loss_fn(y, output)

    # ------------------------------------------------------------------------------------------
    # Weights, config, summary, files
    # ------------------------------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        expected = sum(len(layer.params) for layer in self.layers)
        if len(weights) != expected:
            raise ShapeError(f"model {self.name!r} has {expected} weight arrays, got a list of {len(weights)}")
        position = 0
        for layer in self.layers:
            count = len(layer.params)
            layer.set_weights(weights[position:position + count])
            position += count

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype.name,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()} for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config: dict, seed: int | None = 0) -> "Sequential":
        model = cls(name=config.get("name", "sequential"), seed=seed, dtype=config.get("dtype", "float32"))
        if config.get("input_shape") is not None:
            model.add(Input(tuple(config["input_shape"])))
        for entry in config["layers"]:
            class_name = entry.get("class_name")
            if class_name not in LAYER_CLASSES or class_name == "Input":
                raise ValueError(f"unknown layer class {class_name!r} in model config")
            model.add(LAYER_CLASSES[class_name].from_config(dict(entry.get("config", {}))))
        return model

    def summary(self, print_fn=print) -> str:
        """A Keras-style table: layer name (type), output shape, parameter count; returns it too."""
        self._require_built()
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self.layers:
            rows.append((f"{layer.name} ({type(layer).__name__})", str((None, *layer.output_shape)),
                         f"{layer.count_params():,}"))
        widths = [max(len(row[i]) for row in rows) + 2 for i in range(3)]
        line = "-" * sum(widths)
        text = [f'Model: "{self.name}"', line]
        text.append("".join(cell.ljust(width) for cell, width in zip(rows[0], widths)))
        text.append("=" * sum(widths))
        for row in rows[1:]:
            text.append("".join(cell.ljust(width) for cell, width in zip(row, widths)))
        text.append("=" * sum(widths))
        total = self.count_params()
        text += [f"Total params: {total:,}", f"Trainable params: {total:,}", "Non-trainable params: 0"]
        output = "\n".join(text)
        if print_fn is not None:
            print_fn(output)
        return output

    def save(self, path) -> None:
        """Save architecture, weights and compile settings to one safe file (see ``numcnn.io``)."""
        from .io import save_model

        save_model(self, path)

    def __repr__(self):
        return f"Sequential(name={self.name!r}, layers={[layer.name for layer in self.layers]})"

    def to_json(self) -> str:
        return json.dumps(self.get_config())
