"""BinaryCrossentropy, label smoothing of the categorical cross-entropies, and the fused sigmoid path:
float64 finite differences, exact limits, and Keras 3 on TF live (``tf`` fixture; losses in float32,
gradients from ``tf.GradientTape``)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import numcnn
from numcnn import losses
from numcnn.layers import Activation, Dense, Input
from tests.gradcheck import check_gradient

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
EPSILON = 1e-7  # keras.config.epsilon(): the clip bound of every probability-based cross-entropy


@st.composite
def binary_cases(draw):
    """Predictions of several shapes ((N,), (N, k), (N, h, w, c)), soft targets in [0, 1]."""
    shape = draw(st.sampled_from([(5,), (4, 1), (3, 6), (2, 3, 2, 2)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng, shape, rng.uniform(0, 1, size=shape), draw(st.sampled_from([0.0, 0.1, 0.35]))


@pytest.mark.parametrize("from_logits", [False, True], ids=["probabilities", "logits"])
@SETTINGS
@given(case=binary_cases())
def test_binary_crossentropy_gradient_matches_finite_differences(from_logits, case):
    rng, shape, targets, smoothing = case
    if from_logits:
        y_pred = rng.normal(scale=4, size=shape)
    else:
        y_pred = rng.uniform(0.02, 0.98, size=shape)  # away from the clip bounds
    loss = losses.BinaryCrossentropy(from_logits=from_logits, label_smoothing=smoothing)
    value, grad = loss.loss_and_gradient(targets, y_pred)
    assert grad.shape == y_pred.shape and grad.dtype == y_pred.dtype
    assert check_gradient(lambda: loss(targets, y_pred), y_pred, grad) < 1e-6


@SETTINGS
@given(case=binary_cases())
def test_binary_crossentropy_from_logits_equals_the_probability_formula(case):
    """Where nothing is clipped, the stable logits formula is the probability formula of sigmoid(z)."""
    rng, shape, targets, smoothing = case
    z = rng.normal(scale=3, size=shape)
    from_logits = losses.BinaryCrossentropy(from_logits=True, label_smoothing=smoothing)
    from_probabilities = losses.BinaryCrossentropy(label_smoothing=smoothing)
    p = 1 / (1 + np.exp(-z))
    assert from_logits(targets, z) == pytest.approx(from_probabilities(targets, p), rel=1e-12)
    t = targets * (1 - smoothing) + smoothing / 2
    direct = np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)))  # the textbook formula, all elements
    assert from_logits(targets, z) == pytest.approx(direct, rel=1e-12)


def test_binary_crossentropy_clips_probabilities_and_passes_no_gradient_where_it_clips():
    y_true = np.array([[1.0, 0.0, 1.0, 0.0]])
    p = np.array([[0.0, 1.0, 1e-12, 0.5]], np.float32)
    value, grad = losses.BinaryCrossentropy().loss_and_gradient(y_true, p)
    # in float32 the bounds are eps = 1e-7 and 1 - eps = 1 - 1.19e-7 (the float32 next to 1 - 1e-7): the
    # entries 0 and 1e-12 (target 1) lose -log(eps) = 16.118 each, the entry 1 (target 0) -log(1.19e-7) = 15.942
    eps = np.float32(EPSILON)
    expected = (-2 * np.log(eps) - np.log(np.float64(1) - (np.float32(1) - eps)) - np.log(0.5)) / 4
    assert value == pytest.approx(expected, rel=1e-6)
    np.testing.assert_array_equal(grad[0, :3], 0)
    assert grad[0, 3] == pytest.approx((1 / 0.5) / 4)


def test_binary_crossentropy_from_extreme_logits_is_finite():
    z = np.array([[-1000.0, -30.0, 0.0, 30.0, 1000.0]])
    y = np.array([[1.0, 1.0, 1.0, 0.0, 0.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, grad = losses.BinaryCrossentropy(from_logits=True).loss_and_gradient(y, z)
    # per element: |z| when the sign is wrong (plus log(1 + exp(-|z|))), log 2 at 0
    expected = (1000 + (30 + np.log1p(np.exp(-30))) * 2 + np.log(2) + 1000) / 5
    assert value == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(grad, [[-0.2, -0.2 / (1 + np.exp(-30)), -0.1, 0.2 / (1 + np.exp(-30)), 0.2]], rtol=1e-12)


@pytest.mark.parametrize("loss_class, kind", [(losses.SparseCategoricalCrossentropy, "sparse"),
                                              (losses.CategoricalCrossentropy, "onehot")])
@pytest.mark.parametrize("from_logits", [False, True], ids=["probabilities", "logits"])
@SETTINGS
@given(data=st.data())
def test_label_smoothed_crossentropy_gradients_match_finite_differences(loss_class, kind, from_logits, data):
    n, classes = data.draw(st.integers(1, 5)), data.draw(st.integers(2, 6))
    smoothing = data.draw(st.sampled_from([0.05, 0.2, 1.0]))
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    y_pred = rng.normal(scale=3, size=(n, classes)) if from_logits else rng.uniform(0.05, 0.9, size=(n, classes))
    labels = rng.integers(0, classes, size=n)
    y_true = labels if kind == "sparse" else np.eye(classes)[labels]
    loss = loss_class(from_logits=from_logits, label_smoothing=smoothing)
    _, grad = loss.loss_and_gradient(y_true, y_pred)
    assert check_gradient(lambda: loss(y_true, y_pred), y_pred, grad) < 1e-6


@pytest.mark.parametrize("from_logits", [False, True])
def test_sparse_label_smoothing_is_categorical_on_one_hot(from_logits):
    rng = np.random.default_rng(3)
    y_pred = rng.normal(size=(6, 4)) if from_logits else rng.dirichlet(np.ones(4), size=6)
    labels = rng.integers(0, 4, size=6)
    sparse = losses.SparseCategoricalCrossentropy(from_logits=from_logits, label_smoothing=0.2)
    categorical = losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=0.2)
    onehot = np.eye(4)[labels]
    for got, want in zip(sparse.loss_and_gradient(labels, y_pred), categorical.loss_and_gradient(onehot, y_pred)):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # the smoothed target: 0.2 / 4 = 0.05 off the label, 0.8 + 0.05 on it; written out from logits
    t = np.full((6, 4), 0.05)
    t[np.arange(6), labels] = 0.85
    if from_logits:
        direct = np.mean(np.sum(t * (np.logaddexp.reduce(y_pred, axis=1, keepdims=True) - y_pred), axis=1))
        assert sparse(labels, y_pred) == pytest.approx(direct, rel=1e-12)


def test_label_smoothing_zero_changes_nothing_and_bad_values_are_refused():
    rng = np.random.default_rng(4)
    p, labels = rng.dirichlet(np.ones(3), size=5), rng.integers(0, 3, size=5)
    plain, zero = losses.SparseCategoricalCrossentropy(), losses.SparseCategoricalCrossentropy(label_smoothing=0.0)
    for got, want in zip(zero.loss_and_gradient(labels, p), plain.loss_and_gradient(labels, p)):
        np.testing.assert_array_equal(got, want)
    for bad in (-0.1, 1.5, "0.1", True):
        with pytest.raises(ValueError, match="label_smoothing"):
            losses.BinaryCrossentropy(label_smoothing=bad)
        with pytest.raises(ValueError, match="label_smoothing"):
            losses.CategoricalCrossentropy(label_smoothing=bad)
    with pytest.raises(ValueError, match="do not fit"):
        losses.BinaryCrossentropy()(np.zeros(3), np.full((2, 2), 0.5))


def test_losses_get_config_and_registry():
    bce = losses.get("binary_crossentropy")
    assert isinstance(bce, losses.BinaryCrossentropy) and bce.fused_activation == "sigmoid"
    assert losses.BinaryCrossentropy(from_logits=True).fused_activation is None
    for loss in (losses.BinaryCrossentropy(True, 0.1), losses.CategoricalCrossentropy(label_smoothing=0.2),
                 losses.SparseCategoricalCrossentropy(from_logits=True, label_smoothing=0.3)):
        again = losses.LOSSES[loss.name](**loss.get_config())
        assert type(again) is type(loss) and again.get_config() == loss.get_config()
    assert losses.CategoricalCrossentropy().fuses_with_softmax and not losses.BinaryCrossentropy().fuses_with_softmax


# ------------------------------------------------------------------------------------------------
# The fused sigmoid path of Sequential
# ------------------------------------------------------------------------------------------------
def sigmoid_model(kind, dtype="float32"):
    """One input, logit 30 * x: a Dense(1, sigmoid), or a Dense(1) followed by Activation("sigmoid")."""
    layers = [Input((1,)), Dense(1, activation="sigmoid")] if kind == "dense" else [
        Input((1,)), Dense(1), Activation("sigmoid")]
    model = numcnn.Sequential(layers, seed=0, dtype=dtype)
    model.layers[0].set_weights([np.array([[30.0]]), np.zeros(1)])
    model.compile("sgd", "binary_crossentropy")
    return model


@pytest.mark.parametrize("kind", ["dense", "layer"])
def test_sigmoid_output_with_binary_crossentropy_is_computed_from_the_logits(kind):
    """Logit 30, target 0: from the logits the loss is 30 + log(1 + e^-30) = 30.0 and dL/dx = 30 sigmoid(30);
    the clipped probabilities would give -log(1e-7) = 16.118 and no gradient at all (Keras: 30.0, below)."""
    model = sigmoid_model(kind, "float64")
    x, y = np.ones((1, 1)), np.zeros((1, 1))
    assert model.evaluate(x, y) == pytest.approx(30 + np.log1p(np.exp(-30)), rel=1e-12)
    loss, dx = model.loss_and_input_gradient(x, y)
    assert loss == pytest.approx(30.0, rel=1e-12)
    assert dx[0, 0] == pytest.approx(30 / (1 + np.exp(-30)), rel=1e-12)


@pytest.mark.parametrize("kind", ["dense", "layer"])
def test_fused_sigmoid_path_gradients_match_finite_differences(kind):
    rng = np.random.default_rng(6)
    head = [Dense(2, activation="sigmoid")] if kind == "dense" else [Dense(2), Activation("sigmoid")]
    model = numcnn.Sequential([Input((4,)), Dense(3, activation="tanh"), *head], seed=1, dtype="float64")
    model.compile("sgd", losses.BinaryCrossentropy(label_smoothing=0.1))
    x, y = rng.normal(size=(5, 4)), rng.integers(0, 2, size=(5, 2)).astype(np.float64)
    _, grads = model.loss_and_gradients(x, y)
    for weight, grad in zip(model.trainable_params(), grads):
        assert check_gradient(lambda: model.evaluate(x, y), weight, grad) < 1e-6


def test_mismatched_activation_and_loss_are_not_fused():
    """A softmax output under BinaryCrossentropy and a sigmoid output under CategoricalCrossentropy are scored
    on the probabilities the model outputs (Keras uses the cached logits of either: see numcnn.losses)."""
    z = np.array([[30.0, 0.0, -30.0]])
    y = np.array([[0.0, 0.0, 1.0]])
    for activation, loss in (("softmax", losses.BinaryCrossentropy()), ("sigmoid", losses.CategoricalCrossentropy())):
        model = numcnn.Sequential([Input((3,)), Activation(activation)], dtype="float64")
        model.compile("sgd", loss)
        assert model.evaluate(z, y) == pytest.approx(loss(y, model.predict(z)), rel=1e-12)


def test_binary_crossentropy_trains_a_model():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(128, 2)).astype(np.float32)
    y = (x[:, :1] + x[:, 1:] > 0).astype(np.float32)  # (N, 1): the output's shape
    model = numcnn.Sequential([Input((2,)), Dense(1, activation="sigmoid")], seed=0)
    model.compile(numcnn.optimizers.Adam(learning_rate=0.05), "binary_crossentropy")
    before = model.evaluate(x, y)
    model.fit(x, y, epochs=20, batch_size=32, seed=0, verbose=0)
    assert model.evaluate(x, y) < 0.5 * before


# ------------------------------------------------------------------------------------------------
# TensorFlow / Keras, live
# ------------------------------------------------------------------------------------------------
def keras_loss_and_gradient(tf, keras_loss, y_true, y_pred):
    y_var = tf.Variable(y_pred)
    with tf.GradientTape() as tape:
        value = keras_loss(y_true, y_var)
    return float(value), tape.gradient(value, y_var).numpy()


def assert_loss_matches(ours, theirs, rtol=1e-5):
    (value, grad), (value_tf, grad_tf) = ours, theirs
    assert value == pytest.approx(value_tf, rel=rtol)
    np.testing.assert_allclose(grad, grad_tf, rtol=rtol, atol=rtol * np.abs(grad_tf).max())


BINARY_CASES = [
    # (from_logits, label_smoothing, predictions)
    (False, 0.0, "probabilities"),
    (False, 0.0, "clipped"),          # exact 0 and 1, and values beyond the clip bounds
    (False, 0.2, "probabilities"),
    (True, 0.0, "logits"),
    (True, 0.0, "extreme logits"),
    (True, 0.3, "logits"),
]


def binary_inputs(kind, rng):
    y_true = rng.integers(0, 2, size=(6, 3)).astype(np.float32)
    if kind == "probabilities":
        y_pred = rng.uniform(0.01, 0.99, size=(6, 3))
    elif kind == "clipped":
        y_pred = rng.choice([0.0, 1.0, 1e-9, 1 - 1e-9, 0.3], size=(6, 3))
    elif kind == "logits":
        y_pred = rng.normal(scale=3, size=(6, 3))
    else:
        y_pred = rng.choice([-200.0, -40.0, 40.0, 200.0, 0.0], size=(6, 3))
    return y_true, y_pred.astype(np.float32)


@pytest.mark.tf
@pytest.mark.parametrize("from_logits, smoothing, kind", BINARY_CASES)
def test_binary_crossentropy_matches_keras(tf, from_logits, smoothing, kind):
    tf_, keras = tf
    y_true, y_pred = binary_inputs(kind, np.random.default_rng(9))
    loss = losses.BinaryCrossentropy(from_logits=from_logits, label_smoothing=smoothing)
    ours = loss.loss_and_gradient(y_true, y_pred)
    keras_loss = keras.losses.BinaryCrossentropy(from_logits=from_logits, label_smoothing=smoothing)
    assert_loss_matches(ours, keras_loss_and_gradient(tf_, keras_loss, y_true, y_pred))


@pytest.mark.tf
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("smoothing", [0.1, 0.5])
def test_label_smoothing_matches_keras(tf, from_logits, smoothing):
    """CategoricalCrossentropy(label_smoothing) as Keras; the sparse one against Keras's categorical loss on
    one-hot labels — Keras 3's SparseCategoricalCrossentropy has no label_smoothing (checked here too)."""
    tf_, keras = tf
    rng = np.random.default_rng(10)
    labels = rng.integers(0, 5, size=8)
    onehot = np.eye(5, dtype=np.float32)[labels]
    y_pred = (rng.normal(scale=3, size=(8, 5)) if from_logits else rng.dirichlet(np.ones(5), size=8)).astype(np.float32)
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=smoothing)
    theirs = keras_loss_and_gradient(tf_, keras_loss, onehot, y_pred)
    categorical = losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=smoothing)
    sparse = losses.SparseCategoricalCrossentropy(from_logits=from_logits, label_smoothing=smoothing)
    assert_loss_matches(categorical.loss_and_gradient(onehot, y_pred), theirs)
    assert_loss_matches(sparse.loss_and_gradient(labels, y_pred), theirs)
    with pytest.raises(TypeError, match="label_smoothing"):
        keras.losses.SparseCategoricalCrossentropy(label_smoothing=smoothing)


def keras_model_like(keras, model, kind):
    activation = "sigmoid" if kind == "dense" else None
    layers = [keras.Input(model.input_shape), keras.layers.Dense(model.layers[0].units, activation=activation)]
    if kind == "layer":
        layers.append(keras.layers.Activation("sigmoid"))
    keras_model = keras.Sequential(layers)
    keras_model.set_weights(model.get_weights())
    return keras_model


@pytest.mark.tf
@pytest.mark.parametrize("kind", ["dense", "layer"])
def test_fused_sigmoid_loss_and_gradient_match_keras(tf, kind):
    """Keras recovers a sigmoid's logits for binary cross-entropy: logit 30, target 0 gives 30.0 (not the
    clipped 16.118) in evaluate and under GradientTape; numcnn too, with the same input gradient."""
    tf_, keras = tf
    model = sigmoid_model(kind)
    keras_model = keras_model_like(keras, model, kind)
    keras_model.compile(loss="binary_crossentropy")
    x, y = np.ones((1, 1), np.float32), np.zeros((1, 1), np.float32)
    assert keras_model.evaluate(x, y, verbose=0) == pytest.approx(30.0, rel=1e-6)
    assert model.evaluate(x, y) == pytest.approx(30.0, rel=1e-6)
    x_var = tf_.Variable(x)
    with tf_.GradientTape() as tape:
        loss_tf = keras.losses.BinaryCrossentropy()(y, keras_model(x_var, training=True))
    loss, dx = model.loss_and_input_gradient(x, y)
    assert loss == pytest.approx(float(loss_tf), rel=1e-6)
    np.testing.assert_allclose(dx, tape.gradient(loss_tf, x_var).numpy(), rtol=1e-5)


@pytest.mark.tf
def test_fused_sigmoid_model_gradients_match_keras(tf):
    """A small model ending in Dense(sigmoid), label smoothing on: loss and every weight gradient."""
    tf_, keras = tf
    rng = np.random.default_rng(14)
    model = numcnn.Sequential([Input((5,)), Dense(4, activation="relu"), Dense(3, activation="sigmoid")], seed=2)
    model.compile("sgd", losses.BinaryCrossentropy(label_smoothing=0.1))
    keras_model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="relu"),
                                    keras.layers.Dense(3, activation="sigmoid")])
    keras_model.set_weights(model.get_weights())
    x = rng.normal(scale=3, size=(8, 5)).astype(np.float32)
    y = rng.integers(0, 2, size=(8, 3)).astype(np.float32)
    with tf_.GradientTape() as tape:
        loss_tf = keras.losses.BinaryCrossentropy(label_smoothing=0.1)(y, keras_model(x, training=True))
    grads_tf = tape.gradient(loss_tf, keras_model.trainable_weights)
    loss, grads = model.loss_and_gradients(x, y)
    assert loss == pytest.approx(float(loss_tf), rel=1e-5)
    for ours, theirs in zip(grads, grads_tf):
        theirs = theirs.numpy()
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * np.abs(theirs).max())


@pytest.mark.tf
def test_keras_uses_cached_logits_even_for_mismatched_pairs(tf):
    """What numcnn deliberately does not copy (numcnn.losses docstring): Keras scores a softmax output under
    BinaryCrossentropy as sigmoids of the softmax's logits, and a sigmoid output under
    CategoricalCrossentropy as a softmax of the sigmoid's logits."""
    tf_, keras = tf
    z = np.array([[30.0, 0.0, -30.0]], np.float32)
    y = np.array([[0.0, 0.0, 1.0]], np.float32)
    for activation, keras_loss, logits_loss in (
            ("softmax", keras.losses.BinaryCrossentropy(), keras.losses.BinaryCrossentropy(from_logits=True)),
            ("sigmoid", keras.losses.CategoricalCrossentropy(),
             keras.losses.CategoricalCrossentropy(from_logits=True))):
        keras_model = keras.Sequential([keras.Input((3,)), keras.layers.Activation(activation)])
        keras_model.compile(loss=keras_loss)
        from_cached_logits = float(logits_loss(y, z))
        from_probabilities = float(keras_loss(y, keras_model.predict(z, verbose=0)))  # a plain array: no logits
        assert keras_model.evaluate(z, y, verbose=0) == pytest.approx(from_cached_logits, rel=1e-6)
        assert abs(from_cached_logits - from_probabilities) > 1
        model = numcnn.Sequential([Input((3,)), Activation(activation)])
        model.compile("sgd", losses.get(keras_loss.name))
        assert model.evaluate(z, y) == pytest.approx(from_probabilities, rel=1e-5)


@pytest.mark.tf
def test_fused_softmax_path_with_label_smoothing_matches_keras(tf):
    """Keras recovers a softmax's logits and smooths the targets: logits [30, 0, -30], label 2, smoothing 0.1
    gives 57.0 (the clipped probabilities would give 15.58); numcnn's fused path likewise."""
    _, keras = tf
    z = np.array([[30.0, 0.0, -30.0]], np.float32)
    y = np.array([[0.0, 0.0, 1.0]], np.float32)
    keras_model = keras.Sequential([keras.Input((3,)), keras.layers.Activation("softmax")])
    keras_model.compile(loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1))
    model = numcnn.Sequential([Input((3,)), Activation("softmax")])
    model.compile("sgd", losses.CategoricalCrossentropy(label_smoothing=0.1))
    assert model.evaluate(z, y) == pytest.approx(keras_model.evaluate(z, y, verbose=0), rel=1e-6)
    assert model.evaluate(z, y) == pytest.approx(57.0, rel=1e-6)
