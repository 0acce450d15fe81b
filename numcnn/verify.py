"""Run the same numbers through numcnn and TensorFlow/Keras 3 and report where and by how much they differ.

Every comparison yields rows ``(case, quantity, shape, max abs error, max rel error, tolerance, OK/FAIL)``.

**Relative error** of numcnn's array ``a`` against TensorFlow's ``b``: ``max|a - b| / max(max|b|, 1e-30)``,
i.e. the largest difference measured against the size of the quantity (elementwise relative errors blow up
on entries that are ~0 by cancellation and say nothing about the formula).

**Tolerances** (one place: ``TOLERANCES``). Both sides compute in float32 (unit roundoff u = 6e-8), but in
different summation orders: numcnn sums a convolution as one GEMM over (kh, kw, c_in), TensorFlow's Eigen
kernels block it differently. A sum of K terms differs between two orders by up to ~K·u relative to the sum of
magnitudes; for the seed model's largest sums (K = 576 in conv2d_2/dense, thousands for weight gradients
summed over the batch) that is ~1e-5..1e-4, so forward values and gradients get 1e-4 (observed: ~1e-6..1e-5).
Optimizer updates are elementwise (no long sums), but the update ``Δ = w_10 - w_0`` is read off float32
weights, so it carries ~ulp(w) = 6e-8·|w| of rounding per step; with |w| ~ 100·|Δ| over 10 steps that is
~1e-5 relative to Δ (observed: up to 1.2e-5 for Adam), hence 1e-4. A wrong formula is far off: Adam's other
epsilon form moves a weight with g = 1e-6 by 0.909·lr instead of 0.240·lr. A training trajectory compounds these differences step
by step, so 20 float32 training steps are compared by their losses (2e-3 relative per step, 1e-3 for the final
loss) and final weights (1e-2 relative to the largest weight).

**Long trajectories are compared in float64.** Float32 training of this model is chaotic beyond ~50 steps:
scaling numcnn's own initial weights by (1 + 1e-7) changes its loss after 200 Adam steps by 12% (measured), so
no float32 implementation can follow another's 200-step trajectory to 1e-3 — the differences are amplified
roundoff, not formulas. In float64 the same 1e-15 perturbation stays at 2e-15 after 200 steps, so both
frameworks run the 200 steps in float64 and must agree to 1e-10 (observed: 2.5e-13 at worst, and that
agreement needed Keras's exact float32 rounding of the learning rate and of beta_1, beta_2, momentum).

TensorFlow runs with ``TF_ENABLE_ONEDNN_OPTS=0``: oneDNN's custom kernels re-block float32 sums differently
from run to run of the library and machine, which would make TF's side of the comparison less reproducible;
with it off, TF uses its Eigen kernels and gives the same numbers every run. (With it on the errors stay
within the same tolerances; it is a reproducibility choice, not a correctness one.)
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

TOLERANCES = {
    "forward": 1e-4,
    "gradient": 1e-4,
    "loss": 1e-5,
    "optimizer": 1e-4,
    "round trip": 0.0,
    "training loss": 2e-3,
    "final loss": 1e-3,
    "final weights": 1e-2,
    "float64 training": 1e-10,
}


@dataclass
class Row:
    case: str
    quantity: str
    shape: tuple
    max_abs: float
    max_rel: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_rel)) and self.max_rel <= self.tolerance


def import_tensorflow():
    """Import TensorFlow and Keras with numcnn's settings (see the module docstring); returns ``(tf, keras)``."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import keras

    return tf, keras


def compare(case: str, quantity: str, ours, theirs, kind: str) -> Row:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape:
        return Row(case, quantity, ours.shape, np.inf, np.inf, TOLERANCES[kind])
    max_abs = float(np.max(np.abs(ours - theirs))) if ours.size else 0.0
    scale = float(np.max(np.abs(theirs))) if theirs.size else 0.0
    return Row(case, quantity, ours.shape, max_abs, max_abs / max(scale, 1e-30), TOLERANCES[kind])


# ----------------------------------------------------------------------------------------------
# Models and layers: forward, input gradient, weight gradients
# ----------------------------------------------------------------------------------------------
def keras_forward_and_gradients(keras_model, x, upstream, training=True):
    """TF side: ``y = model(x)``, and the gradients of ``sum(y * upstream)`` w.r.t. x and every trainable weight
    (Keras's ``trainable_weights`` order)."""
    tf, _ = import_tensorflow()
    x_var = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = keras_model(x_var, training=training)
        objective = tf.reduce_sum(y * upstream)
    grads = tape.gradient(objective, [x_var, *keras_model.trainable_weights])
    return y.numpy(), grads[0].numpy(), [g.numpy() for g in grads[1:]]


def numcnn_forward_and_gradients(model, x, upstream, training=True):
    y = model.forward(x, training=training)
    dx = model.backward(upstream)
    return y, dx, model.get_gradients()


def weight_names(model, trainable_only: bool = False) -> list[str]:
    return [f"d{layer.name}/{key}" for layer in model.layers
            for key in (layer.trainable_keys() if trainable_only else layer.params)]


def compare_model(case: str, model, x, seed: int = 0, keras_model=None, training: bool = True) -> list[Row]:
    """Forward output, input gradient and each trainable weight's gradient of ``model`` vs its Keras twin on
    ``x``; in training mode (batch statistics) or inference mode (moving statistics, no dropout). In training
    mode, layers with statistics also compare those after the step (BatchNormalization's moving mean/variance)."""
    from .interop.keras import to_keras

    keras_model = keras_model or to_keras(model)
    upstream = np.random.default_rng(seed).normal(size=(len(x), *model.output_shape)).astype(np.float32)
    ours = numcnn_forward_and_gradients(model, x, upstream, training)
    theirs = keras_forward_and_gradients(keras_model, x, upstream, training)
    rows = [compare(case, "forward", ours[0], theirs[0], "forward"),
            compare(case, "dx", ours[1], theirs[1], "gradient")]
    rows += [compare(case, name, a, b, "gradient")
             for name, a, b in zip(weight_names(model, trainable_only=True), ours[2], theirs[2])]
    statistics = [(name, a, b) for name, a, b in zip(weight_names(model), model.get_weights(), keras_model.get_weights())
                  if name.endswith(("moving_mean", "moving_variance"))]
    rows += [compare(case, f"{name[1:]} after the step", a, b, "forward") for name, a, b in statistics]
    return rows


def layer_cases(rng: np.random.Generator):
    """Seeded single-layer models: every layer type, TF's tricky geometry (odd sizes, 'same', strides 2-3,
    overlapping pools) and max-pool inputs with exact ties."""
    from .layers import Activation, Conv2D, Dense, Flatten, Input, MaxPooling2D, ReLU, Softmax
    from .model import Sequential

    def single(shape, layer, integers=False):
        model = Sequential([Input(shape), layer], seed=int(rng.integers(1 << 30)))
        for layer_ in model.layers:  # non-zero biases (and statistics) so every path is exercised
            for key, weight in layer_.params.items():
                positive = key in ("gamma", "moving_variance")
                weight[...] = rng.uniform(0.5, 1.5, weight.shape) if positive else rng.normal(0, 0.5, weight.shape)
        x = (rng.integers(0, 3, size=(2, *shape)) if integers else rng.normal(size=(2, *shape))).astype(np.float32)
        return model, x

    return [
        ("Conv2D 3x3 s1 valid", *single((9, 9, 3), Conv2D(4, 3))),
        ("Conv2D 3x3 s2 same, even input", *single((8, 8, 2), Conv2D(3, 3, strides=2, padding="same"))),
        ("Conv2D 4x4 s2 same, odd input", *single((7, 9, 2), Conv2D(3, 4, strides=2, padding="same"))),
        ("Conv2D 2x3 s3 same relu", *single((10, 11, 3), Conv2D(5, (2, 3), strides=3, padding="same", activation="relu"))),
        ("Conv2D 5x5 s(1,2) valid, no bias", *single((9, 10, 1), Conv2D(2, 5, strides=(1, 2), use_bias=False))),
        ("MaxPooling2D 2 valid, odd input", *single((7, 7, 3), MaxPooling2D(2))),
        ("MaxPooling2D 3 s1 (overlapping)", *single((8, 8, 2), MaxPooling2D(3, strides=1))),
        ("MaxPooling2D 3 s2 same, odd input", *single((9, 7, 2), MaxPooling2D(3, strides=2, padding="same"))),
        ("MaxPooling2D 2 s1 with exact ties", *single((6, 6, 2), MaxPooling2D(2, strides=1), integers=True)),
        ("MaxPooling2D 2 s2 with exact ties", *single((6, 6, 2), MaxPooling2D(2), integers=True)),
        ("Dense relu", *single((12,), Dense(5, activation="relu"))),
        ("Dense softmax", *single((12,), Dense(5, activation="softmax"))),
        ("Flatten", *single((3, 4, 2), Flatten())),
        ("ReLU", *single((4, 5), ReLU())),
        ("Softmax", *single((6,), Softmax())),
        ("Activation('relu')", *single((7,), Activation("relu"))),
    ] + wider_layer_cases(single)


def wider_layer_cases(single):
    """The layers beyond the seed model, with the geometry TF is particular about. (Dropout is compared in
    inference mode only, in ``inference_cases``: its masks come from different generators.)"""
    from .layers import (ELU, Activation, AveragePooling2D, BatchNormalization, Conv2DTranspose, GlobalAveragePooling2D,
                         GlobalMaxPooling2D, LeakyReLU, Reshape, UpSampling2D, ZeroPadding2D)

    return [
        ("AveragePooling2D 2 valid, odd input", *single((7, 7, 3), AveragePooling2D(2))),
        ("AveragePooling2D 3 s2 same (edge divisors)", *single((9, 7, 2), AveragePooling2D(3, strides=2, padding="same"))),
        ("AveragePooling2D 3 s1 (overlapping)", *single((6, 6, 2), AveragePooling2D(3, strides=1))),
        ("GlobalAveragePooling2D", *single((5, 6, 3), GlobalAveragePooling2D())),
        ("GlobalMaxPooling2D with exact ties", *single((4, 4, 3), GlobalMaxPooling2D(), integers=True)),
        ("BatchNormalization after conv (batch statistics)", *single((5, 5, 3), BatchNormalization(momentum=0.9))),
        ("BatchNormalization dense, eps 1e-2, no center", *single((6,), BatchNormalization(epsilon=1e-2, center=False))),
        ("BatchNormalization no scale", *single((3, 4, 2), BatchNormalization(scale=False))),
        ("Conv2DTranspose 3x3 s2 same", *single((4, 4, 3), Conv2DTranspose(5, 3, strides=2, padding="same"))),
        ("Conv2DTranspose 4x4 s2 valid sigmoid", *single((3, 5, 2), Conv2DTranspose(3, 4, strides=2, activation="sigmoid"))),
        ("Conv2DTranspose 2x2 s3 valid (k < s)", *single((3, 3, 2), Conv2DTranspose(2, 2, strides=3))),
        ("UpSampling2D 2 nearest", *single((3, 4, 2), UpSampling2D(2))),
        ("UpSampling2D (2, 3) bilinear", *single((3, 4, 2), UpSampling2D((2, 3), interpolation="bilinear"))),
        ("ZeroPadding2D ((1, 2), (0, 3))", *single((3, 4, 2), ZeroPadding2D(((1, 2), (0, 3))))),
        ("Reshape", *single((4, 6), Reshape((3, 2, 4)))),
        ("Activation('sigmoid')", *single((9,), Activation("sigmoid"))),
        ("Activation('tanh')", *single((9,), Activation("tanh"))),
        ("Activation('elu')", *single((9,), Activation("elu"))),
        ("Activation('gelu'), erf form", *single((9,), Activation("gelu"))),
        ("Activation('leaky_relu'), slope 0.2", *single((9,), Activation("leaky_relu"))),
        ("LeakyReLU layer, default slope 0.3", *single((9,), LeakyReLU())),
        ("ELU layer alpha 0.5", *single((9,), ELU(alpha=0.5))),
    ]


def mixed_model(seed: int = 0):
    """A small CIFAR-style model mixing the wider layer set with the seed model's layers."""
    from .layers import (AveragePooling2D, BatchNormalization, Conv2D, Conv2DTranspose, Dense, Dropout,
                         GlobalAveragePooling2D, Input, LeakyReLU, MaxPooling2D, ZeroPadding2D)
    from .model import Sequential

    return Sequential([
        Input((12, 12, 3)),
        Conv2D(6, 3, padding="same"), BatchNormalization(momentum=0.9), LeakyReLU(),
        MaxPooling2D(2), Dropout(0.25),
        Conv2DTranspose(4, 3, strides=2, padding="same", activation="tanh"),
        ZeroPadding2D(1), Conv2D(8, 3, strides=2, activation="gelu"), AveragePooling2D(2, padding="same"),
        BatchNormalization(), GlobalAveragePooling2D(), Dense(5, activation="softmax"),
    ], seed=seed)


def inference_cases(rng: np.random.Generator):
    """Models compared in inference mode (moving statistics, dropout off): what predict and generation use."""
    from .layers import Dropout, Input
    from .model import Sequential

    model = mixed_model(int(rng.integers(1 << 30)))
    for layer in model.layers:
        if "moving_variance" in layer.params:
            layer.params["moving_mean"][...] = rng.normal(0, 0.5, layer.params["moving_mean"].shape)
            layer.params["moving_variance"][...] = rng.uniform(0.5, 1.5, layer.params["moving_variance"].shape)
    return [
        ("Dropout 0.4 (inference: identity)", Sequential([Input((5, 4)), Dropout(0.4)], seed=0),
         rng.normal(size=(2, 5, 4)).astype(np.float32)),
        ("mixed model (BN, Dropout, Conv2DTranspose, ...), inference", model,
         rng.normal(size=(4, 12, 12, 3)).astype(np.float32)),
    ]


# ----------------------------------------------------------------------------------------------
# Losses and optimizers
# ----------------------------------------------------------------------------------------------
def compare_loss(case: str, numcnn_loss, keras_loss, y_true, y_pred) -> list[Row]:
    tf, _ = import_tensorflow()
    pred = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = keras_loss(y_true, pred)
    gradient = tape.gradient(value, pred).numpy()
    ours, our_gradient = numcnn_loss.loss_and_gradient(y_true, y_pred)
    return [compare(case, "loss", ours, value.numpy(), "loss"),
            compare(case, "dL/dy_pred", our_gradient, gradient, "gradient")]


def loss_cases(rng: np.random.Generator):
    from . import losses

    _, keras = import_tensorflow()
    labels = rng.integers(0, 5, size=8)
    onehot = np.eye(5, dtype=np.float32)[labels]
    logits = rng.normal(scale=2, size=(8, 5)).astype(np.float32)
    extreme = (rng.normal(size=(8, 5)) * 60).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(5), size=8).astype(np.float32)
    probabilities[0] = [1 - 4e-9, 1e-9, 1e-9, 1e-9, 1e-9]  # entries below the 1e-7 clip
    binary = rng.integers(0, 2, size=(8, 3)).astype(np.float32)
    binary_probabilities = rng.uniform(size=(8, 3)).astype(np.float32)
    binary_probabilities[0] = [1e-9, 1 - 1e-9, 0.5]  # beyond the clip at both ends
    return [
        ("SparseCE from logits", losses.SparseCategoricalCrossentropy(from_logits=True),
         keras.losses.SparseCategoricalCrossentropy(from_logits=True), labels, logits),
        ("SparseCE from extreme logits", losses.SparseCategoricalCrossentropy(from_logits=True),
         keras.losses.SparseCategoricalCrossentropy(from_logits=True), labels, extreme),
        ("SparseCE from probabilities (clipped)", losses.SparseCategoricalCrossentropy(),
         keras.losses.SparseCategoricalCrossentropy(), labels, probabilities),
        ("CategoricalCE from logits", losses.CategoricalCrossentropy(from_logits=True),
         keras.losses.CategoricalCrossentropy(from_logits=True), onehot, extreme),
        ("CategoricalCE from probabilities", losses.CategoricalCrossentropy(),
         keras.losses.CategoricalCrossentropy(), onehot, probabilities),
        ("MeanSquaredError", losses.MeanSquaredError(), keras.losses.MeanSquaredError(),
         rng.normal(size=(8, 5)).astype(np.float32), logits),
        ("CategoricalCE label_smoothing 0.1", losses.CategoricalCrossentropy(label_smoothing=0.1),
         keras.losses.CategoricalCrossentropy(label_smoothing=0.1), onehot, probabilities),
        ("BinaryCE from probabilities (clipped)", losses.BinaryCrossentropy(), keras.losses.BinaryCrossentropy(),
         binary, binary_probabilities),
        ("BinaryCE from logits", losses.BinaryCrossentropy(from_logits=True),
         keras.losses.BinaryCrossentropy(from_logits=True), binary, extreme[:, :3]),
        ("BinaryCE label_smoothing 0.2", losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2),
         keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2), binary, logits[:, :3]),
    ]


def optimizer_cases():
    from . import optimizers

    _, keras = import_tensorflow()
    k = keras.optimizers
    return [
        ("SGD", optimizers.SGD(0.1), k.SGD(0.1)),
        ("SGD momentum", optimizers.SGD(0.1, momentum=0.9), k.SGD(0.1, momentum=0.9)),
        ("SGD nesterov", optimizers.SGD(0.1, momentum=0.9, nesterov=True), k.SGD(0.1, momentum=0.9, nesterov=True)),
        ("Adam", optimizers.Adam(0.01), k.Adam(0.01)),
        ("RMSprop", optimizers.RMSprop(0.01), k.RMSprop(0.01)),
        ("RMSprop centered momentum", optimizers.RMSprop(0.01, momentum=0.5, centered=True),
         k.RMSprop(0.01, momentum=0.5, centered=True)),
    ]


def compare_optimizer(case, ours, theirs, rng, steps=10) -> list[Row]:
    tf, keras = import_tensorflow()
    w0 = rng.normal(size=(6, 4)).astype(np.float32)
    grads = [rng.normal(size=w0.shape).astype(np.float32) * 10.0 ** rng.integers(-7, 1) for _ in range(steps)]
    w_ours, w_theirs = w0.copy(), keras.Variable(w0)
    worst = None
    for step, g in enumerate(grads, 1):
        ours.apply([w_ours], [g])
        theirs.apply_gradients([(tf.constant(g), w_theirs)])
        # compare the update itself (w - w0): the thing the formula produces
        row = compare(case, f"update after {steps} steps", w_ours - w0, w_theirs.numpy() - w0, "optimizer")
        worst = row if worst is None or row.max_rel > worst.max_rel else worst
    return [worst]


# ----------------------------------------------------------------------------------------------
# Training trajectories
# ----------------------------------------------------------------------------------------------
def keras_train_steps(keras_model, batches, learning_rate=0.001, dtype="float32"):
    """Keras training steps as ``model.fit`` runs them: a ``tf.function`` of GradientTape + Adam.

    The ``tf.function`` matters: in graph mode Keras's loss sees that the probabilities come from a softmax
    and uses its logits (as numcnn does); in a plain eager loop it cannot, and falls back to clipped
    probabilities, whose gradient vanishes for examples predicted with p > 1 - 1e-7."""
    tf, keras = import_tensorflow()
    optimizer = keras.optimizers.Adam(learning_rate)
    # a Keras loss computes in keras.config.floatx() (float32) unless told otherwise
    loss_fn = keras.losses.SparseCategoricalCrossentropy(dtype=dtype)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, keras_model(x, training=True))
        grads = tape.gradient(loss, keras_model.trainable_weights)
        optimizer.apply_gradients(zip(grads, keras_model.trainable_weights))
        return loss

    return np.array([float(train_step(x, y)) for x, y in batches])


def compare_training(case, model, keras_model, batches, learning_rate=0.001, kinds=None) -> list[Row]:
    """The same batches through Adam in both frameworks: per-step losses, final loss, final weights."""
    from .optimizers import Adam

    kinds = kinds or {"steps": "training loss", "final": "final loss", "weights": "final weights"}
    model.compile(Adam(learning_rate), "sparse_categorical_crossentropy")
    ours = np.array([model.train_step(x, y) for x, y in batches])
    theirs = keras_train_steps(keras_model, batches, learning_rate, dtype=model.dtype.name)
    rows = [compare(case, f"loss per step ({len(batches)} steps)", ours, theirs, kinds["steps"]),
            compare(case, "final loss", ours[-1], theirs[-1], kinds["final"])]
    for name, a, b in zip(weight_names(model), model.get_weights(), keras_model.get_weights()):
        rows.append(compare(case, f"final {name[1:]}", a, b, kinds["weights"]))
    return rows


def mnist_batches(steps: int, seed: int, dtype="float32"):
    """``steps`` shuffled batches of 32 real digits from the embedded MNIST sample."""
    from .datasets import load_embedded_mnist
    from .preprocessing import images_to_input

    (x, y), _ = load_embedded_mnist()
    x, y = images_to_input(x, dtype=np.dtype(dtype).type), y.astype(np.int64)
    rng = np.random.default_rng(seed)
    epochs = -(-steps * 32 // len(x))  # enough shuffled passes over the sample for `steps` batches of 32
    order = np.concatenate([rng.permutation(len(x)) for _ in range(epochs)])
    return [(x[order[i * 32:(i + 1) * 32]], y[order[i * 32:(i + 1) * 32]]) for i in range(steps)]


def float64_training_rows(steps: int = 200, seed: int = 0) -> list[Row]:
    """The seed model trained ``steps`` Adam steps in float64 in both frameworks, from the same weights."""
    from .interop.keras import to_keras
    from .zoo import seed_mnist_model

    model = seed_mnist_model(seed=seed, dtype="float64")
    keras_model = to_keras(model)
    kind = "float64 training"
    return compare_training("seed MNIST model, float64", model, keras_model, mnist_batches(steps, seed, "float64"),
                            kinds={"steps": kind, "final": kind, "weights": kind})


def seed_model_rows(steps: int = 20, seed: int = 0) -> list[Row]:
    """The source document's MNIST model: Keras-initialised weights imported into numcnn, then predictions,
    gradients on a batch, and ``steps`` Adam steps on the same batches of real MNIST digits."""
    from .datasets import load_embedded_mnist
    from .interop.keras import from_keras, keras_seed_mnist_model
    from .preprocessing import images_to_input

    _, keras = import_tensorflow()
    keras.utils.set_random_seed(seed)
    keras_model = keras_seed_mnist_model()
    model = from_keras(keras_model)
    (x, y), _ = load_embedded_mnist()
    x, y = images_to_input(x), y.astype(np.int64)
    case = "seed MNIST model"
    rows = [compare(case, "predict (100 digits)", model.predict(x[:100], verbose=0),
                    keras_model.predict(x[:100], verbose=0), "forward")]
    rows += compare_model(case, model, x[:16], seed=seed, keras_model=keras_model)[1:]
    rows += compare_training(case, model, keras_model, mnist_batches(steps, seed))
    return rows


def round_trip_rows(seed: int = 0) -> list[Row]:
    from .interop.keras import from_keras, to_keras
    from .zoo import seed_mnist_model

    model = seed_mnist_model(seed=seed)
    back = from_keras(to_keras(model))
    return [compare("numcnn -> Keras -> numcnn", f"{name[1:]} (bitwise)", a, b, "round trip")
            for name, a, b in zip(weight_names(model), model.get_weights(), back.get_weights())]


def run_all(seed: int = 0, training_steps: int = 20, float64_steps: int = 200) -> list[Row]:
    """Every layer type, loss and optimizer on seeded cases, plus the seed model end to end."""
    rng = np.random.default_rng(seed)
    rows = []
    for case, model, x in layer_cases(rng):
        rows += compare_model(case, model, x, seed=seed)
    for case, model, x in inference_cases(rng):
        rows += compare_model(case, model, x, seed=seed, training=False)
    for case, ours, theirs, y_true, y_pred in loss_cases(rng):
        rows += compare_loss(case, ours, theirs, y_true, y_pred)
    for case, ours, theirs in optimizer_cases():
        rows += compare_optimizer(case, ours, theirs, rng)
    rows += round_trip_rows(seed)
    rows += seed_model_rows(steps=training_steps, seed=seed)
    if float64_steps:
        rows += float64_training_rows(steps=float64_steps, seed=seed)
    return rows


def format_table(rows: list[Row]) -> str:
    header = ("case", "quantity", "shape", "max abs err", "max rel err", "tolerance", "")
    lines = [(r.case, r.quantity, "x".join(map(str, r.shape)) or "scalar", f"{r.max_abs:.2e}", f"{r.max_rel:.2e}",
              f"{r.tolerance:.0e}" if r.tolerance else "0 (exact)", "OK" if r.ok else "FAIL") for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    def fmt(line):
        return " | ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip()
    return "\n".join([fmt(header), "-+-".join("-" * w for w in widths), *map(fmt, lines)])


# ----------------------------------------------------------------------------------------------
# Command line: numcnn verify [--model FILE]
# ----------------------------------------------------------------------------------------------
def model_rows(path, seed: int = 0) -> list[Row]:
    """End-to-end check of a given Keras (.keras) or numcnn (.npz) model on seeded random inputs."""
    from .interop.keras import load_keras_file
    from .io import load_model

    model = load_keras_file(path) if str(path).endswith(".keras") else load_model(path, compile=False)
    x = np.random.default_rng(seed).random((8, *model.input_shape)).astype(np.float32)
    return compare_model(f"model {path}", model, x, seed=seed)


def command_verify(args) -> int:
    tf, keras = import_tensorflow()
    print(f"numcnn vs TensorFlow {tf.__version__} / Keras {keras.__version__} "
          f"(TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}, float32, seed {args.seed})",
          file=sys.stderr)
    rows = model_rows(args.model, args.seed) if args.model else run_all(args.seed, args.steps, args.float64_steps)
    print(format_table(rows))
    failures = sum(not row.ok for row in rows)
    print(f"\n{len(rows) - failures}/{len(rows)} OK" + (f", {failures} FAIL" if failures else ""))
    return 1 if failures else 0


def register_cli(subparsers) -> None:
    from .cli import existing_file, positive_int

    parser = subparsers.add_parser("verify", help="compare numcnn with TensorFlow, layer by layer")
    parser.add_argument("--model", type=existing_file, help="a .keras or numcnn .npz model to check end to end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=positive_int, default=20, help="float32 training steps of the seed model")
    parser.add_argument("--float64-steps", type=int, default=200, help="float64 training steps (0: skip)")
    parser.set_defaults(handler=command_verify)
