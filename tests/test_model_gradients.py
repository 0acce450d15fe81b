"""Finite-difference checks (float64) of whole models: every layer, loss and the fused softmax path.

The truth here is independent of the code under test: central differences of the model's own loss.
"""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from numcnn import Sequential, losses
from numcnn.layers import Activation, Conv2D, Dense, Flatten, Input, MaxPooling2D, ReLU, Softmax
from tests.gradcheck import check_gradient

TOLERANCE = 1e-6  # float64 central differences with eps=1e-6 are accurate to ~1e-9 relative here
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


@st.composite
def small_cnns(draw):
    """A random small CNN: conv (any kernel/stride/padding) -> pool (maybe overlapping) -> dense head."""
    size = draw(st.integers(5, 9))
    channels = draw(st.integers(1, 3))
    kernel = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["valid", "same"]))
    pool = draw(st.integers(1, 3))
    pool_stride = draw(st.integers(1, pool))
    pool_padding = draw(st.sampled_from(["valid", "same"]))
    conv_out = -(-size // stride) if padding == "same" else (size - kernel) // stride + 1
    assume(pool_padding == "same" or conv_out >= pool)
    head = draw(st.sampled_from(["dense_softmax", "softmax_layer", "logits"]))
    layers = [Input((size, size, channels)),
              Conv2D(draw(st.integers(1, 3)), kernel, strides=stride, padding=padding, activation="relu"),
              MaxPooling2D(pool, strides=pool_stride, padding=pool_padding), Flatten()]
    if head == "dense_softmax":
        layers.append(Dense(4, activation="softmax"))
    elif head == "softmax_layer":
        layers += [Dense(4), Softmax()]
    else:
        layers += [Dense(5), ReLU(), Dense(4)]
    seed = draw(st.integers(0, 1000))
    model = Sequential(layers, seed=seed, dtype="float64")
    model.compile("sgd", losses.SparseCategoricalCrossentropy(from_logits=head == "logits"))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, size, size, channels))
    y = rng.integers(0, 4, size=3)
    return model, x, y


def loss_of(model, x, y):
    return lambda: model.loss_and_gradients(x, y)[0]


@SETTINGS
@given(small_cnns())
def test_parameter_gradients_match_finite_differences(case):
    model, x, y = case
    _, grads = model.loss_and_gradients(x, y)
    for param, grad in zip(model.trainable_params(), grads):
        assert check_gradient(loss_of(model, x, y), param, grad.copy()) < TOLERANCE


@SETTINGS
@given(small_cnns())
def test_input_gradient_matches_finite_differences(case):
    model, x, y = case
    model.loss_and_gradients(x, y)
    output = model.forward(x)
    # dL/dx through the public backward: start from dL/d(output) of a linear functional of the output
    weights = np.random.default_rng(1).normal(size=output.shape)
    model.forward(x)
    dx = model.backward(weights)
    assert check_gradient(lambda: float(np.sum(model.forward(x) * weights)), x, dx) < TOLERANCE


def test_softmax_layer_activation_and_fused_paths_agree():
    """Dense(softmax), Dense + Softmax() and Dense + Activation('softmax') give the same loss and gradients."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 7))
    y = rng.integers(0, 3, size=6)
    results = []
    for head in ([Dense(3, activation="softmax")], [Dense(3), Softmax()], [Dense(3), Activation("softmax")]):
        model = Sequential([Input((7,)), *head], seed=3, dtype="float64")
        model.compile("sgd", "sparse_categorical_crossentropy")
        results.append(model.loss_and_gradients(x, y))
    for loss, grads in results[1:]:
        assert loss == results[0][0]
        for a, b in zip(grads, results[0][1]):
            np.testing.assert_array_equal(a, b)


def test_mse_and_categorical_losses_through_a_model():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 6, 6, 2))
    for loss, target in ((losses.MeanSquaredError(), rng.normal(size=(4, 3))),
                         (losses.CategoricalCrossentropy(), np.eye(3)[rng.integers(0, 3, 4)])):
        model = Sequential([Input((6, 6, 2)), Conv2D(2, 3, padding="same", activation="relu"), Flatten(),
                            Dense(3, activation="softmax")], seed=2, dtype="float64")
        model.compile("sgd", loss)
        _, grads = model.loss_and_gradients(x, target)
        for param, grad in zip(model.trainable_params(), grads):
            assert check_gradient(lambda: model.loss_and_gradients(x, target)[0], param, grad.copy()) < TOLERANCE


def test_fused_conv_pool_steps_agree_with_layer_by_layer():
    """The seed model runs Conv2D+MaxPooling2D pairs as fused kernels (both paths: direct for the 1-channel
    first layer, GEMM for the second); switched off, it runs layer by layer. Same loss, gradients, dx."""
    from numcnn import seed_mnist_model

    rng = np.random.default_rng(4)
    x, y, weights = rng.random((5, 28, 28, 1)), rng.integers(0, 10, size=5), rng.normal(size=(5, 10))
    results = []
    for fuse in (True, False):
        model = seed_mnist_model(seed=1, dtype="float64")
        model.fuse_layers = fuse
        assert (len(model.steps()) == 6) == fuse  # conv+pool twice, conv, flatten, dense, dense
        model.compile("adam", "sparse_categorical_crossentropy")
        loss, grads = model.loss_and_gradients(x, y)
        model.forward(x)
        results.append((loss, grads, model.backward(weights)))
    (loss_f, grads_f, dx_f), (loss_u, grads_u, dx_u) = results
    assert abs(loss_f - loss_u) <= 1e-13 * abs(loss_u)
    for a, b in zip(grads_f + [dx_f], grads_u + [dx_u]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13 * np.abs(b).max())
