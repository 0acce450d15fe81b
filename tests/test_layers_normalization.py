"""BatchNormalization, Dropout and trainable/non-trainable weights.

The truths here are independent of the code under test: float64 central finite differences, the
formula-literal reference kernels, TensorFlow/Keras run on the same numbers (``tf`` fixture), NumPy's own
statistics, and runs of the same training without interruption.
"""

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from numcnn import Sequential, kernels, load_model
from numcnn.errors import ModelFileError, ShapeError
from numcnn.kernels import reference
from numcnn.layers import (LAYER_CLASSES, BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D,
                           ReLU)
from tests.gradcheck import check_gradient, relative_error

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
TOLERANCE = 1e-6  # float64 central differences


def max_relative(ours, theirs) -> float:
    """``max|ours - theirs| / max|theirs|``: numcnn verify's measure."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-30))


# ------------------------------------------------------------------------------------------------
# Batch normalization: cases
# ------------------------------------------------------------------------------------------------
@st.composite
def bn_cases(draw):
    """A built BatchNormalization (float64) after Dense (N, F) or Conv2D (N, H, W, C), random weights, and x."""
    if draw(st.booleans()):
        shape = (draw(st.integers(1, 6)), draw(st.integers(1, 4)))
    else:
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 3)))
    layer = BatchNormalization(momentum=draw(st.floats(0, 1)), epsilon=draw(st.floats(1e-5, 0.1)),
                               center=draw(st.booleans()), scale=draw(st.booleans()))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layer.build(shape[1:], rng, dtype=np.float64)
    channels = shape[-1]
    weights = {"gamma": rng.uniform(0.5, 2, channels) * rng.choice([-1, 1], channels),
               "beta": rng.normal(size=channels), "moving_mean": rng.normal(size=channels),
               "moving_variance": rng.uniform(0.2, 3, channels)}
    layer.set_weights([weights[key] for key in layer.params])
    x = rng.normal(size=shape) * rng.uniform(0.5, 3) + rng.normal()
    return layer, x, rng


# ------------------------------------------------------------------------------------------------
# Finite differences
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False])
@SETTINGS
@given(case=bn_cases())
def test_batchnorm_backward_matches_finite_differences(case, training):
    layer, x, rng = case
    upstream = rng.normal(size=x.shape)  # L = sum(y * upstream), so dL/dy = upstream

    def loss():
        return float(np.sum(layer.forward(x, training=training) * upstream))

    loss()
    dx = layer.backward(upstream)
    assert check_gradient(loss, x, dx) < TOLERANCE
    assert list(layer.grads) == layer.trainable_keys()  # gamma and/or beta, in Keras order
    for key, grad in layer.grads.items():
        loss()
        assert check_gradient(loss, layer.params[key], grad) < TOLERANCE, key


def test_leaving_out_the_batch_statistics_terms_is_caught():
    """The classic bug: in training, backpropagate as if mean and var were constants. Finite differences fail."""
    rng = np.random.default_rng(0)
    x, gamma, beta = rng.normal(size=(4, 3, 3, 2)) * 2 + 1, rng.normal(size=2), rng.normal(size=2)
    upstream = rng.normal(size=x.shape)

    def loss():
        mean, var = kernels.batchnorm_moments(x)
        return float(np.sum(kernels.batchnorm_forward(x, gamma, beta, mean, var, 1e-3, True)[0] * upstream))

    mean, var = kernels.batchnorm_moments(x)
    correct = kernels.batchnorm_backward(upstream, kernels.batchnorm_forward(x, gamma, beta, mean, var, 1e-3, True)[1])
    naive = kernels.batchnorm_backward(upstream, kernels.batchnorm_forward(x, gamma, beta, mean, var, 1e-3, False)[1])
    assert check_gradient(loss, x, correct[0]) < TOLERANCE
    assert check_gradient(loss, x, naive[0]) > 0.1


# ------------------------------------------------------------------------------------------------
# Fast kernels against the reference
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("batch_statistics", [True, False])
@SETTINGS
@given(case=bn_cases())
def test_batchnorm_fast_matches_reference(case, dtype, rtol, batch_statistics):
    layer, x, rng = case
    x = x.astype(dtype)
    channels = x.shape[-1]
    gamma, beta = rng.normal(size=channels).astype(dtype), rng.normal(size=channels).astype(dtype)
    stats_fast, stats_ref = kernels.batchnorm_moments(x), reference.batchnorm_moments(x)
    for got, want in zip(stats_fast, stats_ref):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.max(np.abs(want)))
    mean, var = stats_ref if batch_statistics else (rng.normal(size=channels).astype(dtype),
                                                    rng.uniform(0.2, 3, channels).astype(dtype))
    y_fast, cache_fast = kernels.batchnorm_forward(x, gamma, beta, mean, var, layer.epsilon, batch_statistics)
    y_ref, cache_ref = reference.batchnorm_forward(x, gamma, beta, mean, var, layer.epsilon, batch_statistics)
    assert y_fast.dtype == dtype and y_fast.shape == x.shape
    np.testing.assert_allclose(y_fast, y_ref, rtol=rtol, atol=rtol * np.max(np.abs(y_ref)))
    dy = rng.normal(size=x.shape).astype(dtype)
    for got, want in zip(kernels.batchnorm_backward(dy, cache_fast), reference.batchnorm_backward(dy, cache_ref)):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(np.max(np.abs(want)), 1) * np.sqrt(dy.size))


def test_float32_statistics_are_accumulated_in_float64():
    """A float32 batch with |mean| >> std: the moments equal the float64 truth rounded to float32 (within an ulp);
    float32 accumulation of E[x^2] - mean^2, the one-pass shortcut, is far off here."""
    rng = np.random.default_rng(0)
    x = (1000 + rng.normal(size=(64, 8, 8, 3))).astype(np.float32)
    truth64 = x.astype(np.float64).reshape(-1, 3)
    mean, var = kernels.batchnorm_moments(x)
    np.testing.assert_allclose(mean, truth64.mean(axis=0), rtol=1.2e-7)
    np.testing.assert_allclose(var, truth64.var(axis=0), rtol=1.2e-7)
    one_pass = np.mean(x * x, axis=(0, 1, 2), dtype=np.float32) - np.mean(x, axis=(0, 1, 2), dtype=np.float32) ** 2
    assert np.max(np.abs(one_pass - truth64.var(axis=0))) > 1e-3  # what the shortcut would have given


def test_batchnorm_float32_moments_agree_with_tensorflow(tf):
    """TF sums in float32 (measured here: ~2e-6 relative from the float64 truth on this batch); numcnn's float64
    accumulation is within float32 rounding of the truth, so the two agree to TF's own error."""
    tf_module, _ = tf
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(32, 10, 10, 4)) * 3 + 5).astype(np.float32)
    truth = (x.astype(np.float64).mean(axis=(0, 1, 2)), x.astype(np.float64).var(axis=(0, 1, 2)))
    ours = kernels.batchnorm_moments(x)
    theirs = [t.numpy() for t in tf_module.nn.moments(tf_module.constant(x), axes=[0, 1, 2])]
    for got, want, exact in zip(ours, theirs, truth):
        assert max_relative(got, want) < 1e-5
        assert max_relative(got, exact) <= 6e-8  # half a float32 ulp: rounded once
        assert max_relative(got, exact) <= max_relative(want, exact)


# ------------------------------------------------------------------------------------------------
# TensorFlow parity
# ------------------------------------------------------------------------------------------------
def keras_twin(keras, layer):
    """A Keras BatchNormalization with the same arguments and weights as ``layer``."""
    twin = keras.layers.BatchNormalization(axis=-1, momentum=layer.momentum, epsilon=layer.epsilon,
                                           center=layer.center, scale=layer.scale)
    twin.build((None, *layer.input_shape))
    twin.set_weights(layer.get_weights())
    return twin


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 5, 3)], ids=["after Dense", "after Conv2D"])
@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False), (False, False)])
def test_batchnorm_matches_tensorflow(tf, shape, center, scale):
    tf_module, keras = tf
    rng = np.random.default_rng(1)
    layer = BatchNormalization(momentum=0.9, center=center, scale=scale)
    layer.build(shape[1:], rng)
    channels = shape[-1]
    randomised = {"gamma": rng.uniform(0.5, 2, channels), "beta": rng.normal(size=channels),
                  "moving_mean": rng.normal(size=channels), "moving_variance": rng.uniform(0.5, 2, channels)}
    layer.set_weights([randomised[key].astype(np.float32) for key in layer.params])
    twin = keras_twin(keras, layer)
    # the same weights in the same order, and the same trainable ones
    assert [w.path.split("/")[-1] for w in twin.weights] == list(layer.params)
    assert [w.path.split("/")[-1] for w in twin.trainable_weights] == layer.trainable_keys()
    for training in (True, False, True, True):  # three training calls, the moving statistics follow
        x = (rng.normal(size=shape) * 2 + 1).astype(np.float32)
        upstream = rng.normal(size=shape).astype(np.float32)
        y = layer.forward(x, training=training)
        dx = layer.backward(upstream)
        x_var = tf_module.Variable(x)
        with tf_module.GradientTape() as tape:
            y_tf = twin(x_var, training=training)
            objective = tf_module.reduce_sum(y_tf * upstream)
        grads_tf = tape.gradient(objective, [x_var, *twin.trainable_weights])
        assert max_relative(y, y_tf.numpy()) < 1e-5
        assert max_relative(dx, grads_tf[0].numpy()) < 1e-5
        for ours, theirs in zip(layer.get_gradients(), grads_tf[1:]):
            assert max_relative(ours, theirs.numpy()) < 1e-5
        for ours, theirs in zip(layer.get_weights(), twin.get_weights()):  # moving statistics included
            assert max_relative(ours, theirs) < 1e-5


def test_moving_variance_is_the_biased_batch_variance(tf):
    """momentum 0: moving statistics = the last batch's, and the variance divides by M (NumPy's ddof=0)."""
    _, keras = tf
    x = np.random.default_rng(2).normal(size=(5, 3)).astype(np.float32) * 4
    layer = BatchNormalization(momentum=0.0)
    layer.build((3,), np.random.default_rng(0))
    layer.forward(x, training=True)
    twin = keras.layers.BatchNormalization(momentum=0.0)
    twin(x, training=True)
    np.testing.assert_allclose(layer.params["moving_variance"], x.astype(np.float64).var(axis=0, ddof=0), rtol=1e-6)
    np.testing.assert_allclose(layer.params["moving_variance"], twin.moving_variance.numpy(), rtol=1e-6)
    assert not np.allclose(layer.params["moving_variance"], x.var(axis=0, ddof=1), rtol=1e-3)


def test_frozen_batchnorm_runs_in_inference_mode_like_keras(tf):
    _, keras = tf
    rng = np.random.default_rng(4)
    x = (rng.normal(size=(8, 3)) * 3 + 2).astype(np.float32)
    layer = BatchNormalization()
    layer.build((3,), rng)
    layer.set_weights([rng.normal(size=3).astype(np.float32) for _ in range(3)] + [np.full(3, 2, np.float32)])
    twin = keras_twin(keras, layer)
    layer.trainable, twin.trainable = False, False
    before = layer.get_weights()
    y, y_tf = layer.forward(x, training=True), twin(x, training=True).numpy()
    assert max_relative(y, y_tf) < 1e-5
    np.testing.assert_array_equal(y, layer.forward(x, training=False))
    for a, b in zip(before, layer.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing updated
    assert layer.get_gradients() == [] and layer.trainable_weights == [] and len(layer.non_trainable_weights) == 4


# ------------------------------------------------------------------------------------------------
# Models: weights, trainable, summary, get_layer — against Keras
# ------------------------------------------------------------------------------------------------
NAMES = ["conv2d", "batch_normalization", "relu", "flatten", "dropout", "dense", "batch_normalization_1", "dense_1"]


def numcnn_mixed_model(seed=0, dtype="float32"):
    return Sequential([Input((6, 6, 2)), Conv2D(3, 3), BatchNormalization(), ReLU(), Flatten(), Dropout(0.5),
                       Dense(4), BatchNormalization(center=False), Dense(3, activation="softmax")], seed=seed,
                      dtype=dtype)


def keras_mixed_model(keras):
    L = keras.layers
    layers = [L.Conv2D(3, 3), L.BatchNormalization(), L.ReLU(), L.Flatten(), L.Dropout(0.5), L.Dense(4),
              L.BatchNormalization(center=False), L.Dense(3, activation="softmax")]
    for layer, name in zip(layers, NAMES):
        layer.name = name  # Keras numbers automatic names per session; fix them to numcnn's
    return keras.Sequential([keras.Input((6, 6, 2)), *layers])


def summary_counts(text):
    return {line.split(":")[0].strip(): int(line.split(":")[1].split("(")[0].replace(",", ""))
            for line in text.splitlines() if line.strip().startswith(("Total params", "Trainable params",
                                                                      "Non-trainable params"))}


@pytest.mark.parametrize("frozen", [[], ["conv2d"], ["batch_normalization", "dense_1"]])
def test_weights_trainable_and_summary_match_keras(tf, frozen):
    _, keras = tf
    model, twin = numcnn_mixed_model(), keras_mixed_model(keras)
    assert [layer.name for layer in model.layers] == NAMES == [layer.name for layer in twin.layers]
    for name in frozen:
        model.get_layer(name).trainable = False
        twin.get_layer(name).trainable = False
    twin.set_weights(model.get_weights())  # same order and shapes, or this raises

    def shapes(arrays):
        return [tuple(a.shape) for a in arrays]

    assert shapes(model.weights) == shapes(twin.weights)
    assert shapes(model.trainable_weights) == shapes(twin.trainable_weights)
    assert shapes(model.non_trainable_weights) == shapes(twin.non_trainable_weights)
    for ours, theirs in zip(model.non_trainable_weights, twin.non_trainable_weights):
        np.testing.assert_array_equal(ours, theirs.numpy())  # the same arrays, so the same order
    counts = summary_counts(model.summary(print_fn=None))
    trainable = sum(int(np.prod(w.shape)) for w in twin.trainable_weights)
    assert counts == {"Total params": twin.count_params(), "Trainable params": trainable,
                      "Non-trainable params": twin.count_params() - trainable}
    assert model.count_params() == twin.count_params()
    x = np.random.default_rng(0).random((4, 6, 6, 2)).astype(np.float32)
    assert max_relative(model.predict(x), twin.predict(x, verbose=0)) < 1e-5  # inference mode on both


def test_get_layer_follows_keras(tf):
    _, keras = tf
    model, twin = numcnn_mixed_model(), keras_mixed_model(keras)
    assert model.get_layer("dense") is model.layers[5] and model.get_layer(index=2) is model.layers[2]
    calls = [dict(name="nope"), dict(index=8), dict(name="dense", index=1), dict()]
    for kwargs in calls:
        with pytest.raises(ValueError) as ours:
            model.get_layer(**kwargs)
        with pytest.raises(ValueError) as theirs:
            twin.get_layer(**kwargs)
        assert str(ours.value) == str(theirs.value)


def test_config_round_trips_and_files_keep_moving_statistics_and_trainable(tmp_path):
    model = numcnn_mixed_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.get_layer("dense").trainable = False
    x, y = np.random.default_rng(0).random((10, 6, 6, 2)).astype(np.float32), np.arange(10) % 3
    model.fit(x, y, epochs=1, batch_size=5, verbose=0)
    for layer in (model.get_layer("batch_normalization"), model.get_layer("batch_normalization_1"),
                  model.get_layer("dropout"), model.get_layer("dense")):
        config = layer.get_config()
        clone = LAYER_CLASSES[type(layer).__name__].from_config(config)
        assert clone.get_config() == config and clone.trainable == layer.trainable
    model.save(tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    assert not loaded.get_layer("dense").trainable and loaded.get_config() == model.get_config()
    assert not np.array_equal(model.get_layer("batch_normalization").params["moving_mean"], 0)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x), loaded.predict(x))


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(ValueError, match="only axis=-1"):
        Sequential([Input((4, 4, 2)), BatchNormalization(axis=1)])
    Sequential([Input((4, 4, 2)), BatchNormalization(axis=3)])  # the last axis counted with the batch axis
    for kwargs, words in [(dict(axis=[1, 2]), "axis"), (dict(momentum=1.5), "momentum"), (dict(epsilon=0), "epsilon"),
                          (dict(gamma_initializer="nope"), "initializer")]:
        with pytest.raises(ValueError, match=words):
            BatchNormalization(**kwargs)
    model = Sequential([Input((4, 4, 2)), BatchNormalization()])
    with pytest.raises(ShapeError, match="expects input"):
        model.layers[0].forward(np.zeros((1, 4, 4, 3), np.float32))
    for rate in (1, 1.0, -0.1, 1.5, float("nan"), "0.5", True, None):
        with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
            Dropout(rate)
    with pytest.raises(ValueError, match="seed"):
        Dropout(0.5, seed=-1)
    with pytest.raises(ValueError, match="noise_shape"):
        Sequential([Input((4, 4, 2)), Dropout(0.5, noise_shape=(None, 1))])
    with pytest.raises(RuntimeError, match="no random generator"):
        Dropout(0.5).forward(np.ones((2, 2)), training=True)


# ------------------------------------------------------------------------------------------------
# Dropout
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_dropout_scaling_expectation_and_identity_at_inference(dtype, rate):
    layer = Dropout(rate, seed=7)
    x = np.random.default_rng(0).uniform(0.5, 2, size=(400, 50)).astype(dtype)
    y = layer.forward(x, training=True)
    assert y.dtype == dtype
    kept = y != 0
    # kept units are scaled by 1/(1 - rate), exactly as TF computes it (x times the scale rounded to dtype)
    np.testing.assert_array_equal(y[kept], x[kept] * dtype(1 / (1 - rate)))
    # the fraction kept is 1 - rate, and E[y] = x, within 5 standard deviations of the sampling error
    n = x.size
    assert abs(kept.mean() - (1 - rate)) <= 5 * np.sqrt(rate * (1 - rate) / n)
    ratio = y / x
    assert abs(ratio.mean() - 1) <= 5 * np.sqrt(rate / (1 - rate) / n) + 1e-12
    # backward uses the same mask and scale
    dy = np.random.default_rng(1).normal(size=x.shape).astype(dtype)
    np.testing.assert_array_equal(layer.backward(dy), np.where(kept, dy * dtype(1 / (1 - rate)), 0))
    # inference: the identity, both ways
    assert layer.forward(x, training=False) is x and layer.backward(dy) is dy


@pytest.mark.parametrize("rate", [0.25, 0.3, 0.5, 1 - 2.0 ** -40])
def test_dropout_keeps_a_unit_where_its_32_bit_uniform_draw_is_at_least_the_rate(rate):
    """The mask is ``u >= rate`` for ``u = bits / 2^32``, 32 bits per unit from the generator's raw stream (two
    units per 64-bit word, the low half first); checked in float64, where ``bits / 2^32`` is exact."""
    layer = Dropout(rate, seed=5)
    words = np.random.default_rng(5).bit_generator.random_raw(4 * 5 * 3)  # the same stream, drawn alone
    u = words.view(np.uint32)[:4 * 5 * 5].astype(np.float64) / 2.0 ** 32
    np.testing.assert_array_equal(layer.keep_mask((4, 5, 5)), (u >= rate).reshape(4, 5, 5))
    assert layer.keep_mask((3, 7)).shape == (3, 7)  # an odd count: half a word is left unused


def test_dropout_fast_matches_reference_and_finite_differences():
    rng = np.random.default_rng(0)
    x, dy = rng.normal(size=(3, 4, 5, 2)), rng.normal(size=(3, 4, 5, 2))
    keep = rng.random((3, 1, 5, 2)) >= 0.3  # a noise_shape mask, broadcast over axis 1
    y_fast, cache_fast = kernels.dropout_forward(x, keep, 0.3)
    y_ref, cache_ref = reference.dropout_forward(x, keep, 0.3)
    np.testing.assert_array_equal(y_fast, y_ref)
    np.testing.assert_array_equal(kernels.dropout_backward(dy, cache_fast), reference.dropout_backward(dy, cache_ref))
    layer = Dropout(0.3, noise_shape=(None, 1, None, None), seed=3)
    start = layer.rng.bit_generator.state

    def loss():
        layer.rng.bit_generator.state = start  # the same mask every evaluation
        return float(np.sum(layer.forward(x, training=True) * dy))

    loss()
    assert check_gradient(loss, x, layer.backward(dy)) < TOLERANCE
    y = layer.forward(x, training=True)
    assert np.all((y == 0) == (y[:, :1] == 0))  # whole columns of axis 1 dropped together


def test_dropout_masks_are_reproducible_and_leave_weight_initialisation_alone():
    x = np.ones((8, 48), np.float32)

    def masks(model, steps=3):
        dtype = model.dtype.type
        return [model.get_layer("dropout").forward(x.astype(dtype), training=True) for _ in range(steps)]

    first, second, other = numcnn_mixed_model(seed=0), numcnn_mixed_model(seed=0), numcnn_mixed_model(seed=1)
    for a, b in zip(masks(first), masks(second)):
        np.testing.assert_array_equal(a, b)  # same model seed, same masks, bit for bit
    assert not np.array_equal(masks(numcnn_mixed_model(seed=0))[0], masks(other)[0])
    # float64 models drop the same units (the draws do not depend on the dtype)
    np.testing.assert_array_equal(masks(numcnn_mixed_model(seed=0))[0] != 0,
                                  masks(numcnn_mixed_model(seed=0, dtype="float64"))[0] != 0)
    # adding Dropout (which spawns a child generator) leaves every weight of the model unchanged
    without = Sequential([Input((6, 6, 2)), Conv2D(3, 3), BatchNormalization(), ReLU(), Flatten(), Dense(4),
                          BatchNormalization(center=False), Dense(3, activation="softmax")], seed=0)
    for a, b in zip(first.get_weights(), without.get_weights()):
        np.testing.assert_array_equal(a, b)
    # ... and the model's own stream (fit's shuffling with seed=None) continues exactly as without it
    np.testing.assert_array_equal(first.rng.random(5), without.rng.random(5))
    # an explicit seed: default_rng(seed), the same masks in any model
    a, b = Dropout(0.5, seed=11), Dropout(0.5, seed=11)
    x = np.ones((8, 6, 6, 2), np.float32)
    np.testing.assert_array_equal(a.forward(x, training=True), b.forward(x, training=True))


# ------------------------------------------------------------------------------------------------
# Training and inference modes in the model
# ------------------------------------------------------------------------------------------------
def small_bn_dropout_model(seed=0):
    model = Sequential([Input((8, 8, 1)), Conv2D(4, 3), BatchNormalization(), ReLU(), MaxPooling2D(2), Flatten(),
                        Dropout(0.3), Dense(8, activation="relu"), BatchNormalization(momentum=0.9),
                        Dense(3, activation="softmax")], seed=seed)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def training_data():
    x = np.random.default_rng(1).random((50, 8, 8, 1)).astype(np.float32)
    y = np.random.default_rng(2).integers(0, 3, 50)
    return x, y


def random_state(model):
    """Moving statistics and dropout generator states: what only training may change."""
    return ([w.copy() for w in model.non_trainable_weights],
            [layer.rng.bit_generator.state for layer in model.layers if layer.rng is not None])


def assert_same_state(a, b):
    for u, v in zip(a[0], b[0]):
        np.testing.assert_array_equal(u, v)
    assert a[1] == b[1]


def test_inference_everywhere_outside_training():
    from numcnn import explain
    from numcnn.generate import class_image, deep_dream

    model = small_bn_dropout_model()
    x, y = training_data()
    model.fit(x, y, epochs=1, batch_size=10, verbose=0)
    before = random_state(model)
    first = model.predict(x)
    np.testing.assert_array_equal(first, model.predict(x))  # no dropout at inference: deterministic
    model.evaluate(x, y)
    model.forward_logits(x[:4])
    loss, dx = model.loss_and_input_gradient(x[:4], y[:4])
    assert np.isfinite(loss) and dx.shape == (4, 8, 8, 1)
    for method in ("gradient", "smoothgrad", "gradcam", "integrated_gradients"):
        explain.saliency(model, x[0], target=1, method=method, samples=2, steps=2)
    class_image(model, target=2, steps=2)
    deep_dream(model, x[0], layers=[1], octaves=1, steps=2)
    assert_same_state(before, random_state(model))
    model.train_step(x[:10], y[:10])  # and training does change them
    after = random_state(model)
    assert not np.array_equal(before[0][0], after[0][0]) and before[1] != after[1]


def test_loss_and_gradients_return_trainable_gradients_in_keras_order():
    model = small_bn_dropout_model()
    x, y = training_data()
    model.get_layer("dense").trainable = False
    loss, grads = model.loss_and_gradients(x[:10], y[:10])
    assert [g.shape for g in grads] == [p.shape for p in model.trainable_params()]
    expected = sum(len(layer.trainable_keys()) for layer in model.layers)
    assert len(grads) == expected == len(model.get_weights()) - 4 - 2  # 4 moving statistics, dense's 2


def test_trainable_false_freezes_a_layer_during_fit_and_the_optimizer_follows():
    model = small_bn_dropout_model()
    x, y = training_data()
    conv, bn = model.get_layer("conv2d"), model.get_layer("batch_normalization")
    conv.trainable, bn.trainable = False, False
    frozen_before = conv.get_weights() + bn.get_weights()
    others_before = model.get_layer("dense").get_weights()
    model.fit(x, y, epochs=2, batch_size=10, verbose=0)
    for a, b in zip(frozen_before, conv.get_weights() + bn.get_weights()):
        np.testing.assert_array_equal(a, b)  # not a bit changed: weights, gamma/beta and moving statistics
    assert not np.array_equal(others_before[0], model.get_layer("dense").params["kernel"])
    optimizer = model.optimizer
    assert len(optimizer.slots["m"]) == len(model.trainable_params())
    # unfreeze: the arrays trained all along keep their slots; the newly trained ones start from zero
    kept = {id(p): m for p, m in zip(optimizer._built_for, optimizer.slots["m"])}
    conv.trainable = True
    model.train_step(x[:10], y[:10])
    params = model.trainable_params()
    assert params[0] is conv.params["kernel"] and len(optimizer.slots["m"]) == len(params)
    for p, m in zip(params, optimizer.slots["m"]):
        if id(p) in kept:
            assert m is kept[id(p)]
    # first step from zero slots: m = (1 - beta_1) * g, Keras's formula, bit for bit
    np.testing.assert_array_equal(optimizer.slots["m"][0], conv.grads["kernel"] * np.float32(1 - 0.9))


# ------------------------------------------------------------------------------------------------
# Checkpoints: moving statistics and dropout generators resume bit-identically
# ------------------------------------------------------------------------------------------------
FIT = dict(epochs=3, batch_size=8, seed=5, verbose=0)


def test_resume_in_process_with_batchnorm_and_dropout(tmp_path, monkeypatch):
    x, y = training_data()
    straight = small_bn_dropout_model()
    straight.fit(x, y, **FIT)
    first = small_bn_dropout_model()
    first.fit(x, y, **{**FIT, "epochs": 2}, checkpoint_dir=tmp_path, checkpoint_every=3)
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "checkpoint.npz", tmp_path / "copy")  # the resumed run below overwrites the original
    second = small_bn_dropout_model(seed=42)  # everything (weights, statistics, masks) must come from the file
    second.fit(x, y, **FIT, checkpoint_dir=tmp_path, resume=True)
    for a, b in zip(straight.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert random_state(straight)[1] == random_state(second)[1]
    # The test can fail: without restoring the dropout generators, the resumed run is not the same run.
    from numcnn import checkpoint

    monkeypatch.setattr(checkpoint, "restore_layer_rng_states", lambda model, states: None)
    third = small_bn_dropout_model(seed=42)
    third.fit(x, y, **FIT, checkpoint_dir=tmp_path / "copy", resume=True)
    assert not all(np.array_equal(a, b) for a, b in zip(straight.get_weights(), third.get_weights()))


def test_checkpoint_without_generator_states_is_refused(tmp_path, monkeypatch):
    from numcnn import checkpoint

    x, y = training_data()
    monkeypatch.setattr(checkpoint, "layer_rng_states", lambda model: {})
    small_bn_dropout_model().fit(x, y, **{**FIT, "epochs": 1}, checkpoint_dir=tmp_path)
    monkeypatch.undo()
    with pytest.raises(ModelFileError, match="dropout"):
        small_bn_dropout_model().fit(x, y, **FIT, checkpoint_dir=tmp_path, resume=True)


KILLED_RUN = """
import os, signal, sys
from tests.test_layers_normalization import FIT, small_bn_dropout_model, training_data
model, (x, y), steps = small_bn_dropout_model(), training_data(), 0
loss_and_gradients = model.loss_and_gradients  # what the training loop calls once per step
def killed_mid_epoch(*args, **kwargs):
    global steps
    steps += 1
    if steps == 18:  # epoch 3, after its 3rd step (checkpointed), before the 4th
        os.kill(os.getpid(), signal.SIGKILL)
    return loss_and_gradients(*args, **kwargs)
model.loss_and_gradients = killed_mid_epoch
model.fit(x, y, **FIT, checkpoint_dir=sys.argv[1], checkpoint_every=3)
"""


def test_training_with_batchnorm_and_dropout_killed_mid_epoch_resumes_bit_identically(tmp_path):
    from numcnn.io import read_arrays_file

    process = subprocess.run([sys.executable, "-c", KILLED_RUN, str(tmp_path)], cwd=Path(__file__).parent.parent,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr
    position = read_arrays_file(tmp_path / "checkpoint.npz")[0]["extra"]["training"]
    assert (position["epoch"], position["step"]) == (2, 3)  # killed mid-epoch
    x, y = training_data()
    straight = small_bn_dropout_model()
    straight.fit(x, y, **FIT)
    resumed = small_bn_dropout_model(seed=42)
    resumed.fit(x, y, **FIT, checkpoint_dir=tmp_path, resume=True)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# Inference: Conv2D -> BatchNormalization -> ReLU run chunk by chunk (Conv2D.forward_normalized)
# ------------------------------------------------------------------------------------------------
def layer_by_layer(model, x):
    """The model's inference output with every layer run on its own through the kernels (no fused step)."""
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            x, _ = kernels.conv2d_forward(x, layer.params["kernel"], layer._bias(), layer.strides, layer.padding)
            x = kernels.relu_forward(x)[0] if layer.activation == "relu" else x
        else:
            x = layer.forward(x, training=False)
    return x


@pytest.mark.parametrize("padding, relu_layer, pool", [("same", True, None), ("valid", False, None),
                                                       ("same", True, (2, 2, "valid")),
                                                       ("valid", False, (3, 2, "same"))])
def test_conv_batchnorm_relu_inference_step_is_bit_identical_to_the_layers_one_by_one(padding, relu_layer, pool):
    block = [Conv2D(6, 3, padding=padding, use_bias=False), BatchNormalization()] + ([ReLU()] if relu_layer else [])
    block += [] if pool is None else [MaxPooling2D(pool[0], strides=pool[1], padding=pool[2])]
    model = Sequential([Input((9, 9, 3)), Conv2D(4, 3, activation="relu", padding="same"), *block,
                        Flatten(), Dense(3, activation="softmax")], seed=3)
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 9, 9, 3)).astype(np.float32), rng.integers(0, 3, 40)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=0)  # moving statistics away from 0 and 1
    assert (1, len(block)) in model.inference_steps()  # the fused step is taken, pooling included
    np.testing.assert_array_equal(model.predict(x, batch_size=40, verbose=0), layer_by_layer(model, x))
    # backward after the fused inference forward: each layer kept its own cache
    loss, dx = model.loss_and_input_gradient(x, y)
    model.fuse_layers = False
    loss_alone, dx_alone = model.loss_and_input_gradient(x, y)
    assert loss == loss_alone
    np.testing.assert_array_equal(dx, dx_alone)


def test_conv_relu_epilogue_is_relu_of_the_convolution_at_any_image_size():
    layer = Conv2D(5, 3, activation="relu", padding="same")
    Sequential([Input((8, 8, 2)), layer], seed=0)
    x = np.random.default_rng(1).normal(size=(11, 13, 6, 2)).astype(np.float32)  # not the built size: allowed
    z, _ = kernels.conv2d_forward(x, layer.params["kernel"], layer._bias(), layer.strides, layer.padding)
    np.testing.assert_array_equal(layer.forward(x), kernels.relu_forward(z)[0])
    np.testing.assert_array_equal(layer.pre_activation, z)


def test_inference_steps_at_the_end_of_a_model():
    ends_in_norm = Sequential([Input((6, 6, 2)), Conv2D(3, 3), BatchNormalization()], seed=0)
    ends_in_conv = Sequential([Input((6, 6, 2)), Conv2D(3, 3)], seed=0)
    assert ends_in_norm.inference_steps() == [(0, 1)] and ends_in_conv.inference_steps() == [(0, 0)]
    x = np.random.default_rng(0).normal(size=(4, 6, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(ends_in_norm.predict(x, verbose=0), layer_by_layer(ends_in_norm, x))


# ------------------------------------------------------------------------------------------------
# BatchNormalization -> ReLU as one step
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_statistics", [True, False])
def test_batchnorm_relu_kernel_is_the_two_kernels_one_after_the_other(batch_statistics):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(5, 6, 7, 8)).astype(np.float32)
    gamma, beta = rng.normal(size=8).astype(np.float32), rng.normal(size=8).astype(np.float32)
    gamma[0] = beta[0] = 0  # a channel normalized to exactly 0
    x[0, 0, 0, 1] = np.nan  # ReLU maps NaN to 0
    mean, var = (np.nanmean(x, axis=(0, 1, 2)), np.nanvar(x, axis=(0, 1, 2)))
    y, _ = kernels.batchnorm_forward(x, gamma, beta, mean, var, 1e-3, batch_statistics)
    fused, _ = kernels.batchnorm_forward(x, gamma, beta, mean, var, 1e-3, batch_statistics, relu=True)
    np.testing.assert_array_equal(fused.view(np.int32), kernels.relu_forward(y)[0].view(np.int32))
    assert np.all(fused[..., 0] == 0) and fused[0, 0, 0, 1] == 0


def bn_relu_model(seed=0, dense_block=True, frozen=False):
    layers = [Input((9, 9, 3)), Conv2D(6, 3, padding="same", use_bias=False), BatchNormalization(), ReLU(),
              MaxPooling2D(2), Flatten()]
    layers += [Dense(10), BatchNormalization(momentum=0.9), ReLU()] if dense_block else []
    model = Sequential(layers + [Dense(3, activation="softmax")], seed=seed)
    model.layers[1].trainable = not frozen
    model.compile("adam", "sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("dense_block, frozen", [(True, False), (False, True)])
def test_batchnorm_relu_step_trains_bit_identically_to_the_layers_one_by_one(dense_block, frozen):
    fused, alone = (bn_relu_model(dense_block=dense_block, frozen=frozen) for _ in range(2))
    alone.fuse_layers = False
    assert (1, 2) in fused.steps() and ((6, 7) in fused.steps()) == dense_block
    assert all(first == last for first, last in alone.steps())
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 9, 9, 3)).astype(np.float32), rng.integers(0, 3, 24)
    for model in (fused, alone):
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, seed=0)
    for got, want in zip(fused.get_weights(), alone.get_weights()):  # moving statistics included
        np.testing.assert_array_equal(got, want)
    # the input gradient after an inference forward (Conv2D + BN + ReLU + pool as one inference step)
    loss, dx = fused.loss_and_input_gradient(x, y)
    loss_alone, dx_alone = alone.loss_and_input_gradient(x, y)
    assert loss == loss_alone
    np.testing.assert_array_equal(dx, dx_alone)


def test_a_replaced_batchnorm_forward_runs_alone():
    """numcnn.distributed replaces a layer's forward per instance (synchronised statistics): it must run."""
    model = bn_relu_model()
    norm = model.layers[6]
    calls = []
    norm.forward = lambda x, training=False: calls.append(len(x)) or type(norm).forward(norm, x, training)
    assert (6, 6) in model.steps() and (1, 2) in model.steps()
    model.forward(np.zeros((2, 9, 9, 3), np.float32), training=True)
    assert calls == [2]
