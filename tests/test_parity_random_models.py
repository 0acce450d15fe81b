"""Random Keras models mixing the wider layer set with the seed model's layers, imported into numcnn and run on
both sides: inference, the loss and every gradient in training mode, five Adam steps (BatchNormalization's moving
statistics included) and the exact weight round trip numcnn -> Keras -> numcnn.

Dropout's masks come from different generators in the two frameworks (they cannot match bit for bit), so the
Keras twin used for *training* replaces each Dropout by a layer that multiplies by numcnn's own mask of that step,
scaled by ``1 / (1 - rate)``: everything else in the step is computed by Keras itself. Dropout's own formula
(scaling, identity at inference, seeded masks) is tested in tests/test_layers_normalization.py.

Tolerance: 1e-4 relative (``numcnn.verify.compare``: max |numcnn - TF| / max |TF| per array) in float32; sums
run in different orders on the two sides, see numcnn/verify.py for the error budget. A gradient that is a sum
with heavy cancellation can carry more float32 rounding than that on TF's side itself. The truth then decides:
the same Keras model run in float64. Where TF's float32 gradient is further than the tolerance from its own
float64 gradient, numcnn's float32 gradient is compared with the float64 one instead (seen: random model 23, a
Conv2DTranspose bias gradient 50x smaller than its kernel's, TF float32 1.9e-4 from TF float64, numcnn 1.1e-5).
"""

import numpy as np
import pytest

from numcnn import verify
from numcnn.interop.keras import from_keras, to_keras
from numcnn.optimizers import Adam

pytestmark = pytest.mark.tf
MODELS = 32
ACTIVATIONS = ["relu", "sigmoid", "tanh", "elu", "gelu", "leaky_relu", "linear"]


SHIFT_EQUIVARIANT = {"MaxPooling2D", "AveragePooling2D", "UpSampling2D", "Flatten", "Reshape", "GlobalAveragePooling2D",
                     "GlobalMaxPooling2D"}


def without_cancelled_shift(layers):
    """Turn off the biases (and BN betas) that a BatchNormalization about to be appended would cancel.

    Batch statistics subtract the batch mean, so a constant shift of BN's input has an exactly zero gradient:
    a bias reaching BN through layers that carry a shift through (pooling, upsampling, reshaping, linear
    activations and linear affine layers), and — data-dependently — a bias under a piecewise-linear activation
    that is linear over the whole batch (ReLU units positive for all 8 examples, common for Dense layers).
    Both frameworks then compute a gradient of pure rounding noise (~1e-8), which Adam normalises into steps of
    up to ``lr`` in random directions: no two implementations can agree on those weights. Keras users write
    ``use_bias=False`` before BatchNormalization for this reason; the random models do the same."""
    index = len(layers) - 1
    while index > 0:
        layer, kind = layers[index], type(layers[index]).__name__
        config = layer.get_config()
        linear = config.get("activation") == "linear"
        if kind in ("Conv2D", "Dense", "Conv2DTranspose"):
            layers[index] = type(layer).from_config({**config, "use_bias": False})
            if not linear:
                return
        elif kind == "BatchNormalization":
            layers[index] = type(layer).from_config({**config, "center": False})
            return
        elif not (kind in SHIFT_EQUIVARIANT or (kind == "Activation" and linear)):
            return
        index -= 1


def random_keras_model(keras, rng: np.random.Generator):
    """A small random Sequential image classifier; returns ``(model, loss_name)``. Every layer is drawn with
    arguments Keras accepts, and the spatial size is tracked so that every window fits."""
    L = keras.layers
    height, width, channels = int(rng.integers(6, 13)), int(rng.integers(6, 13)), int(rng.integers(1, 4))
    layers = [keras.Input((height, width, channels))]
    size = min(height, width)

    def choice(options):
        return options[int(rng.integers(len(options)))]

    for _ in range(int(rng.integers(2, 6))):
        kind = choice(["conv", "conv", "bn", "act", "maxpool", "avgpool", "dropout", "pad", "upsample", "transpose"])
        if kind == "conv" and size >= 3:
            k, s = int(rng.integers(1, 4)), int(rng.integers(1, 3))
            padding = choice(["valid", "same"])
            layers.append(L.Conv2D(int(rng.integers(2, 6)), k, strides=s, padding=padding,
                                   activation=choice(ACTIVATIONS), use_bias=bool(rng.integers(2))))
            size = -(-size // s) if padding == "same" else (size - k) // s + 1
        elif kind == "bn":
            without_cancelled_shift(layers)
            layers.append(L.BatchNormalization(momentum=float(rng.uniform(0.5, 0.99)),
                                               epsilon=float(choice([1e-3, 1e-2, 1e-5])),
                                               center=bool(rng.integers(2)), scale=bool(rng.integers(2))))
        elif kind == "act":
            layers.append(choice([lambda: L.Activation(choice(ACTIVATIONS)), lambda: L.LeakyReLU(),
                                  lambda: L.LeakyReLU(negative_slope=0.1), lambda: L.ReLU()])())
        elif kind in ("maxpool", "avgpool") and size >= 2:
            pool = int(rng.integers(2, 4)) if size >= 3 else 2
            strides, padding = int(rng.integers(1, pool + 1)), choice(["valid", "same"])
            layer = L.MaxPooling2D if kind == "maxpool" else L.AveragePooling2D
            layers.append(layer(pool, strides=strides, padding=padding))
            size = -(-size // strides) if padding == "same" else (size - pool) // strides + 1
        elif kind == "dropout":
            layers.append(L.Dropout(float(rng.uniform(0.1, 0.5))))
        elif kind == "pad" and size <= 12:
            layers.append(L.ZeroPadding2D(choice([1, (1, 2), ((0, 1), (2, 1))])))
            size += 1
        elif kind == "upsample" and size <= 8:
            layers.append(L.UpSampling2D(choice([2, (2, 1)])))
        elif kind == "transpose" and size <= 8:
            k, s = int(rng.integers(1, 4)), int(rng.integers(1, 3))
            padding = choice(["valid", "same"])
            layers.append(L.Conv2DTranspose(int(rng.integers(2, 5)), k, strides=s, padding=padding,
                                            activation=choice(ACTIVATIONS)))
            size = size * s if padding == "same" else (size - 1) * s + k
    layers.append(choice([L.Flatten, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D])())
    if rng.integers(2):
        layers.append(L.Dense(int(rng.integers(3, 9)), activation=choice(ACTIVATIONS)))
        if rng.integers(2):
            without_cancelled_shift(layers)
            layers.append(L.BatchNormalization())
    if rng.integers(4) == 0:  # a binary classifier: sigmoid + binary cross-entropy
        layers.append(L.Dense(1, activation="sigmoid"))
        return keras.Sequential(layers), "binary_crossentropy"
    layers.append(L.Dense(4, activation="softmax"))
    return keras.Sequential(layers), "sparse_categorical_crossentropy"


def randomise_statistics(keras_model, rng):
    """Non-trivial gamma, beta and moving statistics, so inference-mode BN is more than the identity."""
    for layer in keras_model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) if "variance" in v.path
                               or "gamma" in v.path else rng.normal(0, 0.3, w.shape).astype(np.float32)
                               for v, w in zip(layer.weights, layer.get_weights())])


def make_case(index, keras):
    rng = np.random.default_rng(1000 + index)
    keras.utils.set_random_seed(index)
    keras_model, loss = random_keras_model(keras, rng)
    randomise_statistics(keras_model, rng)
    shape = keras_model.input_shape[1:]
    x = rng.normal(size=(8, *shape)).astype(np.float32)
    y = rng.integers(0, 2 if loss == "binary_crossentropy" else 4, size=8)
    y = y.reshape(-1, 1).astype(np.float32) if loss == "binary_crossentropy" else y
    return keras_model, loss, x, y, rng


def training_twin(keras, keras_model, dtype="float32"):
    """A Keras copy of ``keras_model`` whose Dropout layers multiply by a mask variable set from numcnn; in
    ``dtype`` (float64: the truth that decides where TF's float32 rounding exceeds the tolerance)."""
    import tensorflow as tf

    class FixedMask(keras.layers.Layer):
        def __init__(self, rate, shape):
            super().__init__(dtype=dtype)
            self.rate = rate
            self.mask = tf.Variable(tf.ones((8, *shape), dtype=dtype), trainable=False)

        def call(self, x, training=False):
            return x * self.mask / (1 - self.rate) if training else x

    layers = [keras.Input(keras_model.input_shape[1:], dtype=dtype)]
    for layer in keras_model.layers:
        if type(layer).__name__ == "Dropout":
            layers.append(FixedMask(layer.rate, layer.output.shape[1:]))
        else:
            layers.append(type(layer).from_config({**layer.get_config(), "dtype": dtype}))
    twin = keras.Sequential(layers)
    twin.set_weights([w.astype(dtype) for w in keras_model.get_weights()])
    return twin


def set_masks(model, twin):
    """Copy numcnn's last dropout masks (kept units, booleans) into the twin's FixedMask layers."""
    ours = [layer for layer in model.layers if type(layer).__name__ == "Dropout"]
    theirs = [layer for layer in twin.layers if type(layer).__name__ == "FixedMask"]
    for layer, fixed in zip(ours, theirs):
        keep = layer._cache[0]  # the kept units of the layer's last training forward (see Dropout.forward)
        fixed.mask.assign(np.broadcast_to(keep, fixed.mask.shape).astype(fixed.mask.dtype.as_numpy_dtype))


def keras_step_function(keras, twin, loss_name, optimizer=None):
    import tensorflow as tf

    loss_fn = keras.losses.get(loss_name)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(y, twin(x, training=True)))
        grads = tape.gradient(loss, twin.trainable_weights)
        if optimizer is not None:
            optimizer.apply_gradients(zip(grads, twin.trainable_weights))
        return loss, grads

    return step


def gradient_row(case, quantity, ours, theirs, truth):
    """numcnn's float32 gradient against TF's, or against TF's float64 one where TF's float32 gradient is itself
    further than the tolerance from it (see the module docstring)."""
    row = verify.compare(case, quantity, ours, theirs, "gradient")
    tf_rounding = verify.compare(case, quantity, theirs, truth, "gradient")
    if row.ok or tf_rounding.ok:
        return row
    return verify.compare(case, f"{quantity} vs TF float64 (TF float32 {tf_rounding.max_rel:.1e} from it)", ours,
                          truth, "gradient")


def rows_for(index, keras):
    keras_model, loss, x, y, rng = make_case(index, keras)
    model = from_keras(keras_model, seed=index)  # the seed drives numcnn's dropout masks
    case = f"random model {index} ({len(model.layers)} layers, {loss})"
    rows = [verify.compare(case, "predict (inference)", model.predict(x), keras_model.predict(x, verbose=0),
                           "forward")]
    # training mode: loss and every trainable gradient, in Keras's trainable_weights order
    model.compile(Adam(), loss)
    twin = training_twin(keras, keras_model)
    our_loss, our_grads = model.loss_and_gradients(x, y)
    set_masks(model, twin)
    their_loss, their_grads = keras_step_function(keras, twin, loss)(x, y)
    rows.append(verify.compare(case, "loss (training)", our_loss, float(their_loss), "forward"))
    names = [w.path for w in twin.trainable_weights]
    assert len(our_grads) == len(their_grads), (len(our_grads), names)
    twin64 = training_twin(keras, keras_model, "float64")
    set_masks(model, twin64)
    _, truths = keras_step_function(keras, twin64, loss)(x.astype(np.float64), y)
    rows += [gradient_row(case, f"d{name}", a, b.numpy(), truth.numpy())
             for name, a, b, truth in zip(names, our_grads, their_grads, truths)]
    # five steps of Keras's default Adam (lr 0.001) from the same weights; BN's moving statistics are among the
    # compared weights. Adam divides each gradient element by its own running size, so an element whose gradient
    # is at the rounding floor of a float32 sum (~1e-7 of the largest) moves by up to lr in a direction set by
    # rounding: the two frameworks' weights can differ by ~lr * 1e-2 there (seen: 2.9e-5 with lr 0.01 on a
    # Dense kernel after BatchNormalization over 8 examples, 2.4e-4 of the largest weight). That scales with lr.
    model = from_keras(keras_model, seed=index)
    model.compile(Adam(), loss)
    twin = training_twin(keras, keras_model)
    step = keras_step_function(keras, twin, loss, keras.optimizers.Adam())
    for _ in range(5):
        xb = rng.normal(size=x.shape).astype(np.float32)
        model.train_step(xb, y)
        set_masks(model, twin)
        step(xb, y)
    rows += [verify.compare(case, f"{w.path} after 5 Adam steps", a, w.numpy(), "optimizer")
             for w, a in zip(twin.weights, model.get_weights())]
    return model, rows


@pytest.fixture(scope="module")
def cases(tf):
    _, keras = tf
    return [rows_for(index, keras) for index in range(MODELS)]


def test_random_models_mix_every_new_layer(cases, tf):
    """The random draw covers the whole wider layer set (so the comparisons below test each of them)."""
    kinds = {type(layer).__name__ for model, _ in cases for layer in model.layers}
    activations = {getattr(layer, "activation", None) for model, _ in cases for layer in model.layers}
    assert {"BatchNormalization", "Dropout", "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
            "Conv2DTranspose", "UpSampling2D", "ZeroPadding2D", "LeakyReLU", "MaxPooling2D", "Conv2D"} <= kinds
    assert {"sigmoid", "tanh", "elu", "gelu", "leaky_relu"} <= activations


def test_random_models_agree_with_keras(cases):
    failures = [row for _, rows in cases for row in rows if not row.ok]
    assert not failures, "\n" + verify.format_table(failures)


def test_random_models_round_trip_exactly(cases, tf):
    for model, _ in cases:
        back = from_keras(to_keras(model))
        assert [type(layer) for layer in back.layers] == [type(layer) for layer in model.layers]
        for a, b in zip(model.get_weights(), back.get_weights()):
            np.testing.assert_array_equal(a, b)
