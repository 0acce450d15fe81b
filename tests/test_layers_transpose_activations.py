"""Conv2DTranspose and the activations sigmoid, tanh, elu, gelu, leaky_relu: fast kernels against the
formula-literal reference, float64 finite differences, the Conv2D duality, and TensorFlow/Keras live
(``tf`` fixture: Keras 3 on TF, oneDNN off; weights copied across, gradients from ``tf.GradientTape``)."""

import ast
import inspect

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import numcnn
from numcnn import kernels as fast
from numcnn.errors import ShapeError
from numcnn.kernels import reference
from numcnn.layers import ELU, LAYER_CLASSES, Activation, Conv2DTranspose, Dense, Input, LeakyReLU
from tests.gradcheck import check_gradient

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
FEW = settings(max_examples=15, deadline=None, derandomize=True)
TF_SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                       suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------------------------
# Conv2DTranspose kernels
# ------------------------------------------------------------------------------------------------
@st.composite
def transpose_cases(draw):
    """Any geometry: kernels smaller than, equal to and larger than the strides, both paddings."""
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    c_in, filters = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng, (n, h, w, c_in), (kh, kw, filters, c_in), strides, padding


def draw_arrays(rng, x_shape, w_shape, dtype=np.float64):
    x, w = rng.normal(size=x_shape).astype(dtype), rng.normal(size=w_shape).astype(dtype)
    return x, w, rng.normal(size=w_shape[2]).astype(dtype)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@SETTINGS
@given(case=transpose_cases())
def test_transpose_fast_matches_reference(case, dtype, rtol):
    rng, x_shape, w_shape, strides, padding = case
    x, w, b = draw_arrays(rng, x_shape, w_shape, dtype)
    y_ref, cache_ref = reference.conv2d_transpose_forward(x, w, b, strides, padding)
    y_fast, cache_fast = fast.conv2d_transpose_forward(x, w, b, strides, padding)
    assert y_fast.dtype == dtype and y_fast.shape == y_ref.shape
    atol = rtol * np.sqrt(w_shape[0] * w_shape[1] * w_shape[3])  # a sum of at most KH*KW*C_in products
    np.testing.assert_allclose(y_fast, y_ref, rtol=rtol, atol=atol)
    dy = rng.normal(size=y_ref.shape).astype(dtype)
    for got, want in zip(fast.conv2d_transpose_backward(dy, cache_fast),
                         reference.conv2d_transpose_backward(dy, cache_ref)):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * np.sqrt(dy.size))


@SETTINGS
@given(case=transpose_cases())
def test_transpose_forward_is_the_conv2d_input_gradient_and_its_backward_a_conv2d(case):
    """Conv2D with kernel ``w`` (read as HWIO: I = filters, O = C_in) on an image of the transpose's output
    size has the transpose's input size; its input gradient for ``dy = x`` is the transpose's forward (minus
    the bias), and the Conv2D forward of the transpose's ``dy`` is the transpose's ``dx``."""
    rng, x_shape, w_shape, strides, padding = case
    x, w, b = draw_arrays(rng, x_shape, w_shape)
    y, cache = fast.conv2d_transpose_forward(x, w, b, strides, padding)
    image = rng.normal(size=(x_shape[0], y.shape[1], y.shape[2], w_shape[2]))
    z, conv_cache = fast.conv2d_forward(image, w, np.zeros(w_shape[3]), strides, padding)
    assert z.shape == x.shape
    conv_dx = fast.conv2d_backward(x, conv_cache)[0]
    np.testing.assert_allclose(y - b, conv_dx, rtol=1e-12, atol=1e-12)
    dy = rng.normal(size=y.shape)
    dx = fast.conv2d_transpose_backward(dy, cache)[0]
    np.testing.assert_allclose(dx, fast.conv2d_forward(dy, w, np.zeros(w_shape[3]), strides, padding)[0],
                               rtol=1e-12, atol=1e-12)
    # the same duality holds for the formula-literal loops, which share no code with the fast kernels
    np.testing.assert_allclose(reference.conv2d_transpose_forward(x, w, b, strides, padding)[0] - b,
                               reference.conv2d_backward(x, reference.conv2d_forward(image, w, np.zeros(w_shape[3]),
                                                                                     strides, padding)[1])[0],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
@FEW
@given(case=transpose_cases())
def test_transpose_gradients_match_finite_differences(impl, case):
    rng, x_shape, w_shape, strides, padding = case
    x, w, b = draw_arrays(rng, x_shape, w_shape)
    y, cache = impl.conv2d_transpose_forward(x, w, b, strides, padding)
    weights = rng.normal(size=y.shape)  # L = sum(weights * y)
    dx, dw, db = impl.conv2d_transpose_backward(weights, cache)

    def loss():
        return float(np.sum(weights * impl.conv2d_transpose_forward(x, w, b, strides, padding)[0]))

    for array, grad in ((x, dx), (w, dw), (b, db)):
        assert check_gradient(loss, array, grad) < 1e-6


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
def test_transpose_same_crops_top_left_by_the_smaller_half(impl):
    """k 4, s 2, 'same' on a 1x1 input: the full sum is 4x4 (the kernel itself), the output 2x2; the Conv2D
    it transposes pads 2 = 1 + 1, so the crop is 1 on each side and the output is the kernel's centre.
    k 3, s 2: pad 1 = 0 top + 1 bottom (TF's rule), so the crop keeps the kernel's top-left 2x2."""
    x = np.ones((1, 1, 1, 1))
    w = np.arange(16, dtype=np.float64).reshape(4, 4, 1, 1)
    y, _ = impl.conv2d_transpose_forward(x, w, np.zeros(1), (2, 2), "same")
    np.testing.assert_array_equal(y[0, :, :, 0], w[1:3, 1:3, 0, 0])
    w3 = np.arange(9, dtype=np.float64).reshape(3, 3, 1, 1)
    y3, _ = impl.conv2d_transpose_forward(x, w3, np.zeros(1), (2, 2), "same")
    np.testing.assert_array_equal(y3[0, :, :, 0], w3[0:2, 0:2, 0, 0])


@pytest.mark.parametrize("size, kernel, stride, padding, out", [
    (4, 3, 2, "valid", 9), (4, 3, 2, "same", 8),    # measured on TF 2.21 / Keras 3.15 (and re-measured below)
    (3, 1, 3, "valid", 9), (4, 2, 3, "valid", 12),  # kernel < stride: (H - 1) * s + max(k, s)
])
def test_transpose_output_sizes(size, kernel, stride, padding, out):
    assert reference.conv2d_transpose_output_size(size, kernel, stride, padding)[0] == out
    layer = Conv2DTranspose(2, kernel, strides=stride, padding=padding)
    assert layer.compute_output_shape((size, size, 3)) == (out, out, 2)


# ------------------------------------------------------------------------------------------------
# The Conv2DTranspose layer
# ------------------------------------------------------------------------------------------------
def built_transpose(dtype="float64", **kwargs):
    model = numcnn.Sequential([Input((3, 4, 2)), Conv2DTranspose(3, (3, 2), **kwargs)], seed=0, dtype=dtype)
    return model, model.layers[0]


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid", "tanh", "elu", "gelu", "leaky_relu"])
@pytest.mark.parametrize("padding, strides", [("valid", 1), ("same", 2), ("valid", (2, 3))])
def test_transpose_layer_gradients_match_finite_differences(activation, padding, strides):
    _, layer = built_transpose(padding=padding, strides=strides, activation=activation)
    rng = np.random.default_rng(5)
    layer.params["bias"][...] = rng.normal(size=3)
    x = rng.normal(size=(2, 3, 4, 2))
    weights = rng.normal(size=(2, *layer.output_shape))
    layer.forward(x)
    dx = layer.backward(weights)

    def loss():
        return float(np.sum(weights * layer.forward(x)))

    for array, grad in ((x, dx), (layer.params["kernel"], layer.grads["kernel"]),
                        (layer.params["bias"], layer.grads["bias"])):
        assert check_gradient(loss, array, grad) < 1e-6


def test_transpose_layer_shapes_dtypes_and_config_round_trip():
    model, layer = built_transpose("float32", strides=2, padding="same", activation="tanh", use_bias=False)
    assert layer.params["kernel"].shape == (3, 2, 3, 2)  # (kh, kw, filters, in_channels)
    assert list(layer.params) == ["kernel"] and layer.output_shape == (6, 8, 3)
    y = model.forward(np.zeros((1, 3, 4, 2), np.float32))
    assert y.dtype == np.float32 and y.shape == (1, 6, 8, 3)
    config = layer.get_config()
    assert config["output_padding"] is None and config["padding"] == "same"
    again = LAYER_CLASSES["Conv2DTranspose"].from_config(config)
    assert again.get_config() == config
    rebuilt = numcnn.Sequential.from_config(model.get_config())
    rebuilt.set_weights(model.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 2)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.forward(x), model.forward(x))


def test_transpose_layer_refuses_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="output_padding=None"):
        Conv2DTranspose(2, 3, strides=2, output_padding=1)
    with pytest.raises(ValueError, match="filters"):
        Conv2DTranspose(0, 3)
    with pytest.raises(ValueError, match="padding"):
        Conv2DTranspose(2, 3, padding="full")
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2DTranspose(2, (3, 0))
    _, layer = built_transpose()
    with pytest.raises(ShapeError, match=r"\(N, \?, \?, 2\)"):
        layer.forward(np.zeros((1, 3, 4, 3)))


def test_transpose_glorot_kernel_uses_keras_fans():
    """Fans of a (kh, kw, filters, in) kernel: fan_in = kh*kw*filters, fan_out = kh*kw*in (Keras reads the
    last two axes as (in, out) whatever the layer; TF check below with he_uniform, which tells them apart)."""
    model = numcnn.Sequential([Input((5, 5, 32)), Conv2DTranspose(64, 3, kernel_initializer="he_uniform")], seed=0)
    limit = np.sqrt(6 / (9 * 64))
    kernel = model.layers[0].params["kernel"]
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.99 * limit


# ------------------------------------------------------------------------------------------------
# Activations
# ------------------------------------------------------------------------------------------------
ELEMENTWISE = ["sigmoid", "tanh", "elu", "gelu", "leaky_relu"]
values = st.floats(-30, 30, allow_nan=False, width=32)


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@SETTINGS
@given(x=arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(1, 5)), elements=values))
def test_activation_fast_matches_reference(name, dtype, rtol, x):
    x = x.astype(dtype)
    forward, backward = fast.ACTIVATIONS[name]
    y_fast, cache_fast = forward(x)
    y_ref, cache_ref = getattr(reference, f"{name}_forward")(x)
    assert y_fast.dtype == dtype
    np.testing.assert_allclose(y_fast, y_ref, rtol=rtol, atol=np.finfo(dtype).tiny)
    dy = np.random.default_rng(0).normal(size=x.shape).astype(dtype)
    dx_fast = backward(dy, cache_fast)
    assert dx_fast.dtype == dtype
    np.testing.assert_allclose(dx_fast, getattr(reference, f"{name}_backward")(dy, cache_ref), rtol=rtol,
                               atol=np.finfo(dtype).tiny)


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("name", ELEMENTWISE)
@FEW
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([0.3, 3.0]))
def test_activation_gradients_match_finite_differences(impl, name, seed, scale):
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=scale, size=(3, 4))
    x[np.abs(x) < 1e-3] = 0.5  # elu and leaky_relu: keep away from the kink at 0
    forward, backward = getattr(impl, f"{name}_forward"), getattr(impl, f"{name}_backward")
    weights = rng.normal(size=x.shape)
    grad = backward(weights, forward(x)[1])
    assert check_gradient(lambda: float(np.sum(weights * forward(x)[0])), x, grad) < 1e-7


@pytest.mark.parametrize("layer, name", [(LeakyReLU(0.3), "leaky_relu"), (ELU(0.5), "elu")])
def test_parametrised_activation_layers_match_finite_differences_and_reference(layer, name):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 5))
    x[np.abs(x) < 1e-3] = 0.5
    weights = rng.normal(size=x.shape)
    layer.forward(x)
    dx = layer.backward(weights)
    assert check_gradient(lambda: float(np.sum(weights * layer.forward(x))), x, dx) < 1e-7
    parameter = layer.negative_slope if name == "leaky_relu" else layer.alpha
    y_ref, cache_ref = getattr(reference, f"{name}_forward")(x, parameter)
    np.testing.assert_allclose(layer.forward(x), y_ref, rtol=1e-12)
    np.testing.assert_allclose(layer.backward(weights), getattr(reference, f"{name}_backward")(weights, cache_ref),
                               rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_tanh_are_stable_for_large_inputs(dtype):
    """No overflow warning for |x| up to the dtype's max, exact limits, and derivatives that keep their digits
    where 1 - y would have lost them (float32 sigmoid(10): 1 - y is off by ~1e-3 relative)."""
    x = np.array([-np.finfo(dtype).max, -1000, -100, -10, 0, 10, 100, 1000, np.finfo(dtype).max], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        for name in ("sigmoid", "tanh"):
            forward, backward = fast.ACTIVATIONS[name]
            y, cache = forward(x)
            dx = backward(np.ones_like(x), cache)
            assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx)) and np.all(dx >= 0)
    y, cache = fast.sigmoid_forward(x)
    assert y[0] == 0 and y[4] == 0.5 and y[-1] == 1
    exact = np.exp(-10.0) / (1 + np.exp(-10.0)) ** 2  # sigmoid'(10) = sigmoid'(-10), in float64
    np.testing.assert_allclose(fast.sigmoid_backward(np.ones_like(x), cache)[[3, 5]], exact, rtol=1e-6)


def test_gelu_is_the_exact_erf_form():
    """Keras 3's default gelu (approximate=False): gelu(1) = 0.84134471 (the tanh approximation gives
    0.84119); measured with Keras 3.15, and re-measured live below."""
    assert float(fast.gelu_forward(np.array([1.0]))[0][0]) == pytest.approx(0.8413447460685429, rel=1e-12)
    assert float(fast.gelu_forward(np.array([1.0], np.float32))[0][0]) == pytest.approx(0.84134471, abs=1e-7)


def test_activation_strings_layers_and_registry():
    assert Activation("leaky_relu").forward(np.array([-1.0]))[0] == pytest.approx(-0.2)  # the string: 0.2
    assert LeakyReLU().forward(np.array([-1.0]))[0] == pytest.approx(-0.3)               # the layer: 0.3
    assert ELU().forward(np.array([-1.0]))[0] == pytest.approx(np.expm1(-1.0))
    for cls, config in ((LeakyReLU, {"negative_slope": 0.1}), (ELU, {"alpha": 0.7})):
        layer = cls(**config, name="a")
        assert LAYER_CLASSES[cls.__name__].from_config(layer.get_config()).get_config() == layer.get_config()
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        Dense(3, activation="swish")
    with pytest.raises(ValueError, match="unknown activation"):
        Activation("Sigmoid")
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU(-0.1)
    for name in ELEMENTWISE:  # every name works as activation= of the affine layers
        model = numcnn.Sequential([Input((3,)), Dense(2, activation=name)], seed=0)
        assert model.forward(np.ones((1, 3), np.float32)).shape == (1, 2)


def test_layers_base_and_layers_activations_do_not_import_each_other():
    """The registry lives at the kernels level; layers/base.py and layers/activations.py both read it."""
    from numcnn.layers import activations as layer_activations
    from numcnn.layers import base

    def relative_imports(module):
        tree = ast.parse(inspect.getsource(module))
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}

    assert "activations" not in relative_imports(base)
    assert "base" in relative_imports(layer_activations)  # the one direction that remains: it subclasses Layer


# ------------------------------------------------------------------------------------------------
# TensorFlow / Keras, live
# ------------------------------------------------------------------------------------------------
def keras_output_and_gradients(tf, keras_layer, x, upstream):
    """``y = layer(x)`` and the gradients of ``sum(y * upstream)`` w.r.t. x and each trainable weight."""
    x_var = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = keras_layer(x_var)
        loss = tf.reduce_sum(y * upstream)
    grads = tape.gradient(loss, [x_var, *keras_layer.trainable_weights])
    return y.numpy(), [g.numpy() for g in grads]


def assert_close_to_tf(ours, theirs, rtol=1e-5):
    """Elementwise ``rtol``, plus an absolute floor of ``rtol * max|theirs|``: float32 sums of products round
    at the size of the largest terms, so an entry near 0 carries that much absolute error on both sides."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * max(np.abs(theirs).max(initial=0), 1e-30))


TRANSPOSE_CONFIGS = [
    # (input H, W, C_in, filters, kernel, strides, padding, activation)
    (4, 4, 3, 2, 3, 2, "same", None),        # odd kernel, stride 2: crop 0 top, 1 bottom
    (4, 5, 2, 3, 4, 2, "same", None),        # even kernel, stride 2: crop 1 + 1
    (3, 4, 2, 2, (2, 3), (3, 2), "same", "relu"),
    (5, 3, 1, 2, (5, 4), 3, "same", None),   # kernel > stride: crop 1 + 1 rows, 0 + 1 columns
    (4, 4, 3, 2, 3, 2, "valid", "sigmoid"),
    (3, 3, 2, 2, 1, 3, "valid", None),       # kernel < stride: output (H - 1) * s + s, last rows bias only
    (2, 3, 2, 4, (3, 2), 1, "valid", "tanh"),
]


@pytest.mark.tf
@pytest.mark.parametrize("h, w, c_in, filters, kernel, strides, padding, activation", TRANSPOSE_CONFIGS)
def test_conv2d_transpose_matches_keras(tf, h, w, c_in, filters, kernel, strides, padding, activation):
    _, keras = tf
    rng = np.random.default_rng(7)
    model = numcnn.Sequential([Input((h, w, c_in)), Conv2DTranspose(filters, kernel, strides=strides, padding=padding,
                                                                    activation=activation)], seed=3)
    layer = model.layers[0]
    layer.params["bias"][...] = rng.normal(size=filters)
    keras_layer = keras.layers.Conv2DTranspose(filters, kernel, strides=strides, padding=padding, activation=activation)
    keras_layer.build((None, h, w, c_in))
    keras_layer.set_weights(layer.get_weights())  # same layout: no transposes
    x = rng.normal(size=(2, h, w, c_in)).astype(np.float32)
    y = model.forward(x)
    upstream = rng.normal(size=y.shape).astype(np.float32)
    dx = model.backward(upstream)
    y_tf, (dx_tf, dw_tf, db_tf) = keras_output_and_gradients(tf[0], keras_layer, x, upstream)
    assert y.shape == y_tf.shape == (2, *layer.output_shape)
    for ours, theirs in ((y, y_tf), (dx, dx_tf), (layer.grads["kernel"], dw_tf), (layer.grads["bias"], db_tf)):
        assert_close_to_tf(ours, theirs)


@pytest.mark.tf
@TF_SETTINGS
@given(data=st.data())
def test_conv2d_transpose_output_shapes_match_keras(tf, data):
    _, keras = tf
    h, w = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6))
    kernel = (data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5)))
    strides = (data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4)))
    padding = data.draw(st.sampled_from(["valid", "same"]))
    keras_layer = keras.layers.Conv2DTranspose(2, kernel, strides=strides, padding=padding)
    y_tf = keras_layer(np.ones((1, h, w, 1), np.float32)).numpy()
    layer = Conv2DTranspose(2, kernel, strides=strides, padding=padding)
    assert (1, *layer.compute_output_shape((h, w, 1))) == y_tf.shape
    # values too: the crop must be where Keras's is, not merely of the right size
    x = np.random.default_rng(h * 31 + w).normal(size=(1, h, w, 1)).astype(np.float32)
    kernel_weights, bias = keras_layer.get_weights()
    y, _ = fast.conv2d_transpose_forward(x, kernel_weights, bias, strides, padding)
    assert_close_to_tf(y, keras_layer(x).numpy())


@pytest.mark.tf
def test_conv2d_transpose_kernel_fans_match_keras(tf):
    """he_uniform's limit is sqrt(6 / fan_in): Keras's kernel (3, 3, 64, 32) stays below sqrt(6 / (9*64))
    and reaches ~99% of it (fan_in = kh*kw*filters; with kh*kw*in it would reach sqrt(6 / (9*32)))."""
    _, keras = tf
    keras_layer = keras.layers.Conv2DTranspose(64, 3, kernel_initializer="he_uniform")
    keras_layer.build((None, 5, 5, 32))
    kernel = keras_layer.get_weights()[0]
    assert kernel.shape == (3, 3, 64, 32)
    limit = np.sqrt(6 / (9 * 64))
    assert 0.99 * limit < np.abs(kernel).max() <= limit * (1 + 1e-6)


@pytest.mark.tf
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_strings_match_keras(tf, name):
    tf_, keras = tf
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.normal(scale=3, size=40), [-100, -20, -1e-4, 0, 1e-4, 20, 100]]).astype(np.float32)
    x = x.reshape(-1, 1)
    upstream = rng.normal(size=x.shape).astype(np.float32)
    layer = Activation(name)
    y = layer.forward(x)
    dx = layer.backward(upstream)
    y_tf, (dx_tf,) = keras_output_and_gradients(tf_, keras.layers.Activation(name), x, upstream)
    np.testing.assert_allclose(y, y_tf, rtol=1e-5, atol=1e-7)
    # TF's float32 sigmoid'/tanh' are y(1 - y) and 1 - y^2: once y is near 1 they carry an absolute error of
    # about one float32 ulp of 1 (times the upstream gradient), which is ~1e-3 relative near saturation.
    # numcnn's keep their digits there. So: agree to that absolute error, and be at least as close as TF
    # to the float64 truth (the formula-literal reference, evaluated in float64).
    ulp_of_one = np.abs(upstream).max() * np.finfo(np.float32).eps
    np.testing.assert_allclose(dx, dx_tf, rtol=1e-5, atol=4 * ulp_of_one)
    _, cache64 = getattr(reference, f"{name}_forward")(x.astype(np.float64))
    truth = getattr(reference, f"{name}_backward")(upstream.astype(np.float64), cache64)
    assert np.abs(dx - truth).max() <= np.abs(dx_tf - truth).max() + ulp_of_one


@pytest.mark.tf
@pytest.mark.parametrize("ours, keras_args", [
    (LeakyReLU(), ("LeakyReLU", {})),
    (LeakyReLU(0.05), ("LeakyReLU", {"negative_slope": 0.05})),
    (ELU(), ("ELU", {})),
    (ELU(0.5), ("ELU", {"alpha": 0.5})),
])
def test_activation_layers_match_keras_defaults_and_values(tf, ours, keras_args):
    tf_, keras = tf
    class_name, kwargs = keras_args
    keras_layer = getattr(keras.layers, class_name)(**kwargs)
    parameter = "negative_slope" if class_name == "LeakyReLU" else "alpha"
    assert ours.get_config()[parameter] == pytest.approx(keras_layer.get_config()[parameter])
    rng = np.random.default_rng(12)
    x = rng.normal(scale=2, size=(3, 7)).astype(np.float32)
    upstream = rng.normal(size=x.shape).astype(np.float32)
    y_tf, (dx_tf,) = keras_output_and_gradients(tf_, keras_layer, x, upstream)
    np.testing.assert_allclose(ours.forward(x), y_tf, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.backward(upstream), dx_tf, rtol=1e-5, atol=1e-7)


@pytest.mark.tf
def test_keras_string_defaults_leaky_relu_and_gelu(tf):
    _, keras = tf
    x = np.array([-1.0, 1.0], np.float32)
    assert keras.activations.get("leaky_relu")(x).numpy()[0] == pytest.approx(-0.2)
    assert keras.layers.LeakyReLU()(x).numpy()[0] == pytest.approx(-0.3)
    assert keras.activations.get("gelu")(x).numpy()[1] == pytest.approx(0.84134471, abs=1e-7)


@pytest.mark.tf
def test_dense_with_each_activation_matches_keras(tf):
    """The activations through AffineLayer (activation=...), with the pre-activation's gradient."""
    tf_, keras = tf
    rng = np.random.default_rng(13)
    for name in ELEMENTWISE:
        model = numcnn.Sequential([Input((6,)), Dense(4, activation=name)], seed=2)
        keras_layer = keras.layers.Dense(4, activation=name)
        keras_layer.build((None, 6))
        keras_layer.set_weights(model.get_weights())
        x = rng.normal(size=(3, 6)).astype(np.float32)
        upstream = rng.normal(size=(3, 4)).astype(np.float32)
        y = model.forward(x)
        dx = model.backward(upstream)
        y_tf, (dx_tf, dw_tf, db_tf) = keras_output_and_gradients(tf_, keras_layer, x, upstream)
        for ours, theirs in ((y, y_tf), (dx, dx_tf), *zip(model.get_gradients(), (dw_tf, db_tf))):
            assert_close_to_tf(ours, theirs)
