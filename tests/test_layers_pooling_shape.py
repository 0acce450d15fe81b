"""The pooling and shape layers: AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, UpSampling2D,
ZeroPadding2D and Reshape.

Each is checked four ways: the fast kernel against the formula-literal reference (float32 and float64), the
hand-written backward against float64 central differences, hand-computed cases of the formulas, and
TensorFlow/Keras itself (forward and ``tf.GradientTape`` input gradient of ``sum(y * dy)``, float32). The TF
facts these layers rely on are measured here, in the ``tf`` tests, not quoted:

* AveragePooling2D 'same' does not count padded cells (a 3x3 map of ones pooled 2x2, stride 2, stays ones);
* GlobalMaxPooling2D splits a tie's gradient evenly (three tied maxima get 1/3 each), unlike MaxPooling2D.
"""

import json

import numba
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import numcnn
from numcnn import kernels as fast
from numcnn.errors import ShapeError
from numcnn.kernels import reference
from numcnn.layers import (LAYER_CLASSES, AveragePooling2D, Conv2D, Dense, Flatten, GlobalAveragePooling2D,
                           GlobalMaxPooling2D, Input, MaxPooling2D, Reshape, UpSampling2D, ZeroPadding2D)
from tests.gradcheck import check_gradient

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)
FD_SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)
DTYPES = [(np.float32, 1e-5), (np.float64, 1e-12)]


# ------------------------------------------------------------------------------------------------
# Drawing cases
# ------------------------------------------------------------------------------------------------
@st.composite
def images(draw, max_side=8, max_batch=3, max_channels=3, ties=False):
    """A random NHWC batch (float64) and the generator that made it; ``ties``: small integers, full of ties."""
    shape = (draw(st.integers(1, max_batch)), draw(st.integers(1, max_side)), draw(st.integers(1, max_side)),
             draw(st.integers(1, max_channels)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(0, 3, size=shape).astype(np.float64) if ties else rng.normal(size=shape)
    return rng, x


@st.composite
def pool_cases(draw, max_side=8):
    """Average-pooling arguments for an image batch; strides below the pool (overlap) and above it (gaps)."""
    rng, x = draw(images(max_side=max_side))
    pool = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    strides = (draw(st.integers(1, pool[0] + 1)), draw(st.integers(1, pool[1] + 1)))
    padding = draw(st.sampled_from(["valid", "same"]))
    assume(padding == "same" or (x.shape[1] >= pool[0] and x.shape[2] >= pool[1]))
    return rng, x, pool, strides, padding


paddings = st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3)))
sizes = st.tuples(st.integers(1, 3), st.integers(1, 3))


# ------------------------------------------------------------------------------------------------
# Fast kernels agree with the reference loops
# ------------------------------------------------------------------------------------------------
def assert_same_results(got, want, dtype, rtol):
    assert got.dtype == dtype and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(np.max(np.abs(want), initial=0), 1))


@pytest.mark.parametrize("dtype, rtol", DTYPES)
@SETTINGS
@given(case=pool_cases())
def test_avgpool_fast_matches_reference(case, dtype, rtol):
    rng, x, pool, strides, padding = case
    x = x.astype(dtype)
    y_ref, cache_ref = reference.avgpool2d_forward(x, pool, strides, padding)
    y_fast, cache_fast = fast.avgpool2d_forward(x, pool, strides, padding)
    assert_same_results(y_fast, y_ref, dtype, rtol)
    dy = rng.normal(size=y_ref.shape).astype(dtype)
    assert_same_results(fast.avgpool2d_backward(dy, cache_fast), reference.avgpool2d_backward(dy, cache_ref),
                        dtype, rtol)


@pytest.mark.parametrize("dtype, rtol", DTYPES)
@pytest.mark.parametrize("op", ["global_avgpool2d", "global_maxpool2d"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@SETTINGS
@given(data=st.data())
def test_global_pooling_fast_matches_reference(data, ties, op, dtype, rtol):
    rng, x = data.draw(images(ties=ties))
    x = x.astype(dtype)
    y_ref, cache_ref = getattr(reference, f"{op}_forward")(x)
    y_fast, cache_fast = getattr(fast, f"{op}_forward")(x)
    assert_same_results(y_fast, y_ref, dtype, rtol)
    dy = rng.normal(size=y_ref.shape).astype(dtype)
    # with ties, a global max gradient split differently (or sent to one winner) would be off by O(1)
    assert_same_results(getattr(fast, f"{op}_backward")(dy, cache_fast),
                        getattr(reference, f"{op}_backward")(dy, cache_ref), dtype, rtol)


@pytest.mark.parametrize("dtype, rtol", DTYPES)
@SETTINGS
@given(data=st.data(), size=sizes, padding=paddings)
def test_upsampling_and_zero_padding_fast_match_reference(data, size, padding, dtype, rtol):
    rng, x = data.draw(images())
    x = x.astype(dtype)
    for op, arguments in (("upsampling2d", (size, "nearest")), ("upsampling2d", (size, "bilinear")),
                          ("zero_padding2d", (padding,))):
        y_ref, cache_ref = getattr(reference, f"{op}_forward")(x, *arguments)
        y_fast, cache_fast = getattr(fast, f"{op}_forward")(x, *arguments)
        assert_same_results(y_fast, y_ref, dtype, rtol)
        dy = rng.normal(size=y_ref.shape).astype(dtype)
        assert_same_results(getattr(fast, f"{op}_backward")(dy, cache_fast),
                            getattr(reference, f"{op}_backward")(dy, cache_ref), dtype, rtol)


@pytest.mark.parametrize("threads", [1, 2])
def test_avgpool_is_bit_identical_across_thread_counts(threads):
    x = np.random.default_rng(4).normal(size=(9, 7, 8, 3)).astype(np.float32)
    previous = numba.get_num_threads()
    try:
        results = []
        for count in (threads, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(count)
            y, cache = fast.avgpool2d_forward(x, (3, 2), (2, 1), "same")
            results.append((y, fast.avgpool2d_backward(np.cos(y), cache)))
    finally:
        numba.set_num_threads(previous)
    for first, second in zip(*results):
        np.testing.assert_array_equal(first, second)


# ------------------------------------------------------------------------------------------------
# Finite differences (float64): the reference kernels, and the layers (which run the fast kernels)
# ------------------------------------------------------------------------------------------------
def reference_ops(x, case):
    """(forward(x) -> (y, cache), backward) of the reference op named by ``case``."""
    name, argument = case
    if name in ("avgpool2d", "upsampling2d", "zero_padding2d"):
        forward = getattr(reference, f"{name}_forward")
        return (lambda: forward(x, *argument)), getattr(reference, f"{name}_backward")
    return (lambda: getattr(reference, f"{name}_forward")(x)), getattr(reference, f"{name}_backward")


@FD_SETTINGS
@given(data=st.data())
def test_reference_gradients_match_finite_differences(data):
    rng, x = data.draw(images(max_side=5, max_batch=2, max_channels=2))
    x = rng.permutation(x.size).astype(np.float64).reshape(x.shape)  # distinct: no ties for the global max
    pool = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    strides = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)))
    for case in (("avgpool2d", (pool, strides, "same")), ("global_avgpool2d", None), ("global_maxpool2d", None),
                 ("upsampling2d", (data.draw(sizes), "nearest")), ("upsampling2d", (data.draw(sizes), "bilinear")),
                 ("zero_padding2d", (data.draw(paddings),))):
        forward, backward = reference_ops(x, case)
        y, cache = forward()
        weights = rng.normal(size=y.shape)
        dx = backward(weights, cache)
        # values 1 apart: eps 1e-3 never changes which entry is the maximum
        assert check_gradient(lambda: float(np.sum(weights * forward()[0])), x, dx, eps=1e-3) < 1e-6, case[0]


def layer_gradient_error(layer, x, rng, eps=1e-6) -> float:
    """Relative error of ``layer.backward`` against central differences of ``L = sum(weights * y)``; also
    checks that the layer's declared output shape is what its forward returns."""
    layer.build(x.shape[1:], rng, dtype=np.float64)
    y = layer.forward(x)
    assert y.shape == (x.shape[0], *layer.output_shape) and y.dtype == np.float64
    weights = rng.normal(size=y.shape)
    dx = layer.backward(weights)
    assert dx.shape == x.shape and dx.dtype == np.float64
    return check_gradient(lambda: float(np.sum(weights * layer.forward(x))), x, dx, eps=eps)


@FD_SETTINGS
@given(case=pool_cases())
def test_average_pooling_gradient_matches_finite_differences(case):
    rng, x, pool, strides, padding = case
    assert layer_gradient_error(AveragePooling2D(pool, strides, padding), x, rng) < 1e-6


@pytest.mark.parametrize("layer_class", [GlobalAveragePooling2D, GlobalMaxPooling2D])
@pytest.mark.parametrize("keepdims", [False, True])
@FD_SETTINGS
@given(data=st.data())
def test_global_pooling_gradients_match_finite_differences(data, keepdims, layer_class):
    rng, x = data.draw(images())
    x = rng.permutation(x.size).astype(np.float64).reshape(x.shape)  # distinct, 1 apart: eps never flips a max
    assert layer_gradient_error(layer_class(keepdims=keepdims), x, rng, eps=1e-3) < 1e-6


@FD_SETTINGS
@given(data=st.data(), size=sizes, padding=paddings)
def test_upsampling_and_zero_padding_gradients_match_finite_differences(data, size, padding):
    rng, x = data.draw(images())
    assert layer_gradient_error(UpSampling2D(size), x, rng) < 1e-6
    assert layer_gradient_error(UpSampling2D(size, interpolation="bilinear"), x, rng) < 1e-6
    assert layer_gradient_error(ZeroPadding2D(padding), x, rng) < 1e-6


@FD_SETTINGS
@given(data=st.data())
def test_reshape_gradient_matches_finite_differences(data):
    rng, x = data.draw(images())
    h, w, c = x.shape[1:]
    target = data.draw(st.sampled_from([(-1,), (w, c, h), (h * w, -1), (c, -1, 1)]))
    assert layer_gradient_error(Reshape(target), x, rng) < 1e-6


# ------------------------------------------------------------------------------------------------
# The formulas on hand-computed cases
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
def test_same_average_pooling_divides_by_the_cells_inside_the_image(impl):
    """3x3, pool 2 stride 2 'same': TF pads 1 row/col bottom/right, so the windows are rows {0, 1}, {2} and
    columns {0, 1}, {2}; each mean divides by the cells it actually covers (4, 2, 2, 1)."""
    x = np.arange(9, dtype=np.float64).reshape(1, 3, 3, 1)
    y, cache = impl.avgpool2d_forward(x, (2, 2), (2, 2), "same")
    np.testing.assert_array_equal(y[0, :, :, 0], [[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8]])
    dx = impl.avgpool2d_backward(np.ones((1, 2, 2, 1)), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1 / 4, 1 / 4, 1 / 2], [1 / 4, 1 / 4, 1 / 2], [1 / 2, 1 / 2, 1]])
    ones, _ = impl.avgpool2d_forward(np.ones((1, 3, 3, 1)), (2, 2), (2, 2), "same")
    np.testing.assert_array_equal(ones, np.ones((1, 2, 2, 1)))


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
def test_overlapping_average_windows_add_their_gradients(impl):
    """Pool 2, stride 1, 'valid' on 3x3: the centre is in all 4 windows (4 * 1/4), a corner in one (1/4)."""
    _, cache = impl.avgpool2d_forward(np.zeros((1, 3, 3, 1)), (2, 2), (1, 1), "valid")
    dx = impl.avgpool2d_backward(np.ones((1, 2, 2, 1)), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])


def average_pooling_counting_the_padding(x, pool, strides):
    """A WRONG 'same' average pooling: pads with zeros and divides every window by PH*PW."""
    oh, ow, (top, bottom, left, right) = reference.conv2d_geometry(x.shape, pool, strides, "same")
    x_pad = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    return reference.avgpool2d_forward(x_pad, pool, strides, "valid")[0]


def test_the_tests_catch_an_average_that_counts_the_padding():
    x = np.ones((1, 3, 3, 1))
    right = fast.avgpool2d_forward(x, (2, 2), (2, 2), "same")[0]
    wrong = average_pooling_counting_the_padding(x, (2, 2), (2, 2))
    assert right.shape == wrong.shape and not np.allclose(right, wrong)


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
def test_global_max_splits_a_tie_evenly_and_sends_a_single_maximum_everything(impl):
    channel_0 = [[0.0, 2.0, 1.0], [2.0, 0.0, 2.0]]  # the maximum 2 three times
    channel_1 = [[0.0, -2.0, -1.0], [-2.0, 0.5, -2.0]]  # one maximum, 0.5 at (1, 1)
    x = np.stack([channel_0, channel_1], axis=-1)[np.newaxis]
    y, cache = impl.global_maxpool2d_forward(x)
    np.testing.assert_array_equal(y, [[2.0, 0.5]])
    dx = impl.global_maxpool2d_backward(np.array([[3.0, 5.0]]), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 1, 0], [1, 0, 1]])  # 3 / 3 tied maxima
    np.testing.assert_array_equal(dx[0, :, :, 1], [[0, 0, 0], [0, 5, 0]])


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
def test_upsampling_repeats_pixels_and_its_backward_sums_each_block(impl):
    x = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    y, cache = impl.upsampling2d_forward(x, (2, 3))
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 1, 1, 2, 2, 2], [1, 1, 1, 2, 2, 2],
                                                  [3, 3, 3, 4, 4, 4], [3, 3, 3, 4, 4, 4]])
    dy = np.arange(24, dtype=np.float64).reshape(1, 4, 6, 1)  # row r holds 6r ... 6r + 5
    dx = impl.upsampling2d_backward(dy, cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0 + 1 + 2 + 6 + 7 + 8, 3 + 4 + 5 + 9 + 10 + 11],
                                                   [12 + 13 + 14 + 18 + 19 + 20, 15 + 16 + 17 + 21 + 22 + 23]])


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
def test_bilinear_upsampling_uses_half_pixel_centres_clamped_at_the_edges(impl):
    """Size 2 along a row of 4: output o samples position (o + 1/2) / 2 - 1/2 = -0.25, 0.25, 0.75, ..., 3.25;
    outside [0, 3] it takes the edge pixel, inside it blends the two pixels around it."""
    x = np.array([0.0, 1.0, 10.0, 100.0]).reshape(1, 1, 4, 1)
    y, cache = impl.upsampling2d_forward(x, (1, 2), "bilinear")
    blends = [0, 0.25 * 1, 0.75 * 1, 1 + 0.25 * 9, 1 + 0.75 * 9, 10 + 0.25 * 90, 10 + 0.75 * 90, 100]
    np.testing.assert_array_equal(y[0, 0, :, 0], blends)
    # backward: pixel 1 has weight 0.25, 0.75, 0.75, 0.25 in outputs 1-4 (and pixel 0 gets 1 + 0.75 + 0.25)
    dx = impl.upsampling2d_backward(np.ones((1, 1, 8, 1)), cache)
    np.testing.assert_array_equal(dx[0, 0, :, 0], [2, 2, 2, 2])


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
def test_zero_padding_places_the_image_and_its_backward_crops(impl):
    x = np.array([[1.0, 2.0]]).reshape(1, 1, 2, 1)
    y, cache = impl.zero_padding2d_forward(x, ((1, 0), (0, 2)))
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, 0, 0, 0], [1, 2, 0, 0]])
    dx = impl.zero_padding2d_backward(np.arange(8, dtype=np.float64).reshape(1, 2, 4, 1), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[4, 5]])


@pytest.mark.parametrize("padding, pairs", [
    (2, ((2, 2), (2, 2))),
    ((1, 3), ((1, 1), (3, 3))),
    (((0, 2), (3, 1)), ((0, 2), (3, 1))),
    ([[0, 2], [3, 1]], ((0, 2), (3, 1))),  # a config read back from JSON
])
def test_zero_padding_accepts_keras_forms(padding, pairs):
    layer = ZeroPadding2D(padding)
    assert layer.padding == pairs
    (top, bottom), (left, right) = pairs
    assert layer.compute_output_shape((4, 5, 2)) == (top + 4 + bottom, left + 5 + right, 2)


@pytest.mark.parametrize("target, input_shape, output_shape", [
    ((-1,), (2, 3, 4), (24,)),
    ((4, -1), (2, 3, 4), (4, 6)),
    ((3, 2, 4), (2, 3, 4), (3, 2, 4)),
    ((-1, 1, 5), (10,), (2, 1, 5)),
])
def test_reshape_infers_minus_one_and_keeps_c_order(target, input_shape, output_shape):
    layer = Reshape(target)
    assert layer.compute_output_shape(input_shape) == output_shape
    x = np.arange(2 * np.prod(input_shape), dtype=np.float64).reshape(2, *input_shape)
    np.testing.assert_array_equal(layer.forward(x), x.reshape(2, *output_shape))  # per example, C order


# ------------------------------------------------------------------------------------------------
# Arguments, errors, configs
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, match", [
    (lambda: AveragePooling2D(padding="full"), "padding"),
    (lambda: AveragePooling2D(pool_size=0), "pool_size"),
    (lambda: AveragePooling2D(2, strides=(1, 0)), "strides"),
    (lambda: GlobalAveragePooling2D(keepdims="yes"), "keepdims"),
    (lambda: GlobalMaxPooling2D(keepdims=1), "keepdims"),
    (lambda: UpSampling2D(interpolation="bicubic"), "bicubic.*nearest.*bilinear"),
    (lambda: UpSampling2D(size=0), "size"),
    (lambda: ZeroPadding2D(-1), "padding"),
    (lambda: ZeroPadding2D((1, 2, 3)), "padding"),
    (lambda: ZeroPadding2D(((1,), (2, 2))), "padding"),
    (lambda: ZeroPadding2D(1.5), "padding"),
    (lambda: Reshape((-1, -1)), "-1 at most once"),
    (lambda: Reshape((0, 3)), "positive"),
    (lambda: Reshape(12), "tuple"),
])
def test_bad_arguments_raise_clear_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("layer", [AveragePooling2D(), GlobalAveragePooling2D(), GlobalMaxPooling2D(),
                                   UpSampling2D(), ZeroPadding2D(), MaxPooling2D()])
def test_image_layers_refuse_other_ranks(layer):
    with pytest.raises(ShapeError, match=r"\(N, H, W, C\)"):
        layer.forward(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"\(H, W, C\)"):
        layer.compute_output_shape((4, 4))


def test_shape_mismatches_are_shape_errors():
    with pytest.raises(ShapeError, match="cannot reshape"):
        Reshape((5,)).compute_output_shape((2, 3))
    with pytest.raises(ShapeError, match="not a multiple of 4"):
        Reshape((4, -1)).compute_output_shape((2, 3))
    with pytest.raises(ShapeError, match="cannot reshape"):
        numcnn.Sequential([Input((2, 3)), Reshape((7,))])
    with pytest.raises(ValueError, match="smaller than the window"):
        AveragePooling2D(3).compute_output_shape((2, 5, 1))


def all_new_layers():
    return [AveragePooling2D((3, 2), strides=(1, 2), padding="same", name="avg"), AveragePooling2D(),
            GlobalAveragePooling2D(), GlobalAveragePooling2D(keepdims=True, name="gap"),
            GlobalMaxPooling2D(), GlobalMaxPooling2D(keepdims=True), UpSampling2D((2, 3)), UpSampling2D(),
            UpSampling2D(3, interpolation="Bilinear"),
            ZeroPadding2D(((0, 2), (3, 1))), ZeroPadding2D(), Reshape((-1, 2)), Reshape((6, 2, 1), name="r")]


@pytest.mark.parametrize("layer", all_new_layers(), ids=lambda layer: type(layer).__name__)
def test_config_round_trips(layer):
    config = layer.get_config()
    clone = LAYER_CLASSES[type(layer).__name__].from_config(json.loads(json.dumps(config)))
    assert clone.get_config() == config
    x = np.random.default_rng(5).normal(size=(2, 4, 3, 1))
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))


# ------------------------------------------------------------------------------------------------
# In a model
# ------------------------------------------------------------------------------------------------
def model_layers():
    """Every new layer in one chain, with each output shape worked out by hand from the formulas."""
    return [
        (ZeroPadding2D(((1, 0), (2, 1))), (10, 12, 2)),             # 9 + 1 + 0, 9 + 2 + 1
        (Conv2D(3, 3, activation="relu"), (8, 10, 3)),               # 10 - 3 + 1, 12 - 3 + 1
        (AveragePooling2D(3, strides=2, padding="same"), (4, 5, 3)),  # ceil(8 / 2), ceil(10 / 2)
        (UpSampling2D((1, 2), interpolation="bilinear"), (4, 10, 3)),
        (Conv2D(4, 3, padding="same"), (4, 10, 4)),
        (MaxPooling2D(2), (2, 5, 4)),
        (Reshape((5, 2, 4)), (5, 2, 4)),
        (GlobalMaxPooling2D(keepdims=True), (1, 1, 4)),
        (GlobalAveragePooling2D(), (4,)),
        (Reshape((2, -1)), (2, 2)),
        (Flatten(), (4,)),
        (Dense(3), (3,)),
    ]


def build_model(dtype="float32"):
    layers, shapes = zip(*model_layers())
    return numcnn.Sequential([Input((9, 9, 2)), *layers], seed=1, dtype=dtype), shapes


def test_a_model_of_the_new_layers_builds_runs_and_summarises():
    model, shapes = build_model()
    summary = model.summary(print_fn=None)
    for layer, shape in zip(model.layers, shapes):
        assert layer.output_shape == shape
        row = next(line for line in summary.splitlines() if line.startswith(f"{layer.name} "))
        assert f"({type(layer).__name__})" in row and str((None, *shape)) in row
    x = np.random.default_rng(6).normal(size=(3, 9, 9, 2)).astype(np.float32)
    y = model.forward(x)
    assert y.shape == (3, 3) and y.dtype == np.float32
    dx = model.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.dtype == np.float32 and np.all(np.isfinite(dx))
    assert all(g.shape == w.shape for g, w in zip(model.get_gradients(), model.get_weights()))
    clone = numcnn.Sequential.from_config(json.loads(model.to_json()))
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.forward(x), y)
    model.compile(optimizer="sgd", loss="mse")
    assert np.isfinite(model.train_step(x, np.zeros((3, 3), np.float32)))


def test_the_model_gradients_match_finite_differences():
    model, _ = build_model("float64")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 9, 9, 2))
    weights = rng.normal(size=(2, 3))
    model.forward(x)
    dx = model.backward(weights)
    def loss():
        return float(np.sum(weights * model.forward(x)))
    for array, grad in [(x, dx), *zip(model.trainable_params(), [g.copy() for g in model.get_gradients()])]:
        indices = rng.choice(array.size, size=min(array.size, 40), replace=False)
        assert check_gradient(loss, array, grad, indices=indices) < 1e-6


# ------------------------------------------------------------------------------------------------
# TensorFlow / Keras (float32)
# ------------------------------------------------------------------------------------------------
def keras_forward_and_input_gradient(tf, function, x, dy):
    """``y = function(x)`` and ``d sum(y * dy) / dx`` from ``tf.GradientTape``."""
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        y = function(xt)
        loss = tf.reduce_sum(y * tf.constant(dy))
    return y.numpy(), tape.gradient(loss, xt).numpy()


def assert_close_to_tf(ours, theirs):
    """Relative to the largest value, as ``numcnn verify`` measures (elementwise rtol alone fails on sums
    that cancel to ~0, where the two sides add in different orders)."""
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5 * max(np.max(np.abs(theirs)), 1e-30))


TF_CASES = [  # (numcnn layer, Keras layer, input shape, integer inputs with ties)
    (lambda: AveragePooling2D(2), lambda k: k.layers.AveragePooling2D(2), (6, 6, 2), False),
    (lambda: AveragePooling2D(3, 2, "same"), lambda k: k.layers.AveragePooling2D(3, 2, "same"), (7, 5, 3), False),
    (lambda: AveragePooling2D((3, 2), (1, 2), "same"),
     lambda k: k.layers.AveragePooling2D((3, 2), (1, 2), "same"), (5, 6, 2), False),
    (lambda: AveragePooling2D(2, 3, "same"), lambda k: k.layers.AveragePooling2D(2, 3, "same"), (7, 8, 1), False),
    (lambda: AveragePooling2D(2, padding="same"), lambda k: k.layers.AveragePooling2D(2, padding="same"),
     (3, 3, 1), False),
    (lambda: AveragePooling2D((2, 3), (2, 1)), lambda k: k.layers.AveragePooling2D((2, 3), (2, 1)), (5, 7, 2),
     False),
    (lambda: GlobalAveragePooling2D(), lambda k: k.layers.GlobalAveragePooling2D(), (5, 7, 3), False),
    (lambda: GlobalAveragePooling2D(keepdims=True), lambda k: k.layers.GlobalAveragePooling2D(keepdims=True),
     (4, 3, 2), False),
    (lambda: GlobalMaxPooling2D(), lambda k: k.layers.GlobalMaxPooling2D(), (5, 7, 3), False),
    (lambda: GlobalMaxPooling2D(), lambda k: k.layers.GlobalMaxPooling2D(), (4, 5, 3), True),
    (lambda: GlobalMaxPooling2D(keepdims=True), lambda k: k.layers.GlobalMaxPooling2D(keepdims=True), (3, 3, 2),
     True),
    (lambda: UpSampling2D(), lambda k: k.layers.UpSampling2D(), (3, 4, 2), False),
    (lambda: UpSampling2D((2, 3)), lambda k: k.layers.UpSampling2D((2, 3)), (2, 3, 3), False),
    (lambda: UpSampling2D(interpolation="bilinear"), lambda k: k.layers.UpSampling2D(interpolation="bilinear"),
     (3, 4, 2), False),
    (lambda: UpSampling2D((3, 2), "bilinear"), lambda k: k.layers.UpSampling2D((3, 2), interpolation="bilinear"),
     (5, 3, 1), False),
    (lambda: UpSampling2D((2, 3), "bilinear"), lambda k: k.layers.UpSampling2D((2, 3), interpolation="bilinear"),
     (4, 4, 2), False),
    (lambda: ZeroPadding2D(), lambda k: k.layers.ZeroPadding2D(), (3, 4, 2), False),
    (lambda: ZeroPadding2D((1, 2)), lambda k: k.layers.ZeroPadding2D((1, 2)), (3, 4, 2), False),
    (lambda: ZeroPadding2D(((0, 2), (3, 1))), lambda k: k.layers.ZeroPadding2D(((0, 2), (3, 1))), (2, 3, 1), False),
    (lambda: Reshape((-1,)), lambda k: k.layers.Reshape((-1,)), (3, 4, 2), False),
    (lambda: Reshape((4, -1, 2)), lambda k: k.layers.Reshape((4, -1, 2)), (3, 4, 2), False),
    (lambda: Reshape((2, 12)), lambda k: k.layers.Reshape((2, 12)), (3, 4, 2), False),
]


def case_id(case):
    layer = case[0]()
    kind = f"-{layer.interpolation}" if isinstance(layer, UpSampling2D) else ""
    return f"{type(layer).__name__}{kind}-{case[2]}{'-ties' if case[3] else ''}"


@pytest.mark.parametrize("case", TF_CASES, ids=[case_id(case) for case in TF_CASES])
def test_forward_and_input_gradient_match_keras(tf, case):
    tf_module, keras = tf
    make_ours, make_theirs, input_shape, ties = case
    rng = np.random.default_rng(8)
    shape = (2, *input_shape)
    x = (rng.integers(0, 3, size=shape) if ties else rng.normal(size=shape)).astype(np.float32)
    layer = make_ours()
    layer.build(input_shape, rng)
    y = layer.forward(x)
    assert y.shape[1:] == layer.output_shape
    dy = rng.normal(size=y.shape).astype(np.float32)
    y_tf, dx_tf = keras_forward_and_input_gradient(tf_module, make_theirs(keras), x, dy)
    assert_close_to_tf(y, y_tf)
    assert_close_to_tf(layer.backward(dy), dx_tf)


def test_keras_facts_these_layers_rely_on(tf):
    """Measured, not assumed: TF averages only the cells inside the image; it splits a global max's gradient
    over its ties (while MaxPooling2D sends a tie's gradient to the first maximum); its bilinear upsampling
    samples at half-pixel centres, clamped at the edges."""
    tf_module, keras = tf
    ones = np.ones((1, 3, 3, 1), np.float32)
    same_average = keras.layers.AveragePooling2D(2, padding="same")(ones).numpy()
    np.testing.assert_array_equal(same_average, np.ones((1, 2, 2, 1)))

    x = np.array([[0, 2, 1], [2, 0, 2]], np.float32).reshape(1, 2, 3, 1)
    _, split = keras_forward_and_input_gradient(tf_module, keras.layers.GlobalMaxPooling2D(), x,
                                                np.ones((1, 1), np.float32))
    np.testing.assert_allclose(split[0, :, :, 0], [[0, 1 / 3, 0], [1 / 3, 0, 1 / 3]], rtol=1e-6)
    _, first = keras_forward_and_input_gradient(tf_module, keras.layers.MaxPooling2D((2, 3)), x,
                                                np.ones((1, 1, 1, 1), np.float32))
    np.testing.assert_array_equal(first[0, :, :, 0], [[0, 1, 0], [0, 0, 0]])

    row = np.array([0, 1, 10, 100], np.float32).reshape(1, 1, 4, 1)
    bilinear = keras.layers.UpSampling2D((1, 2), interpolation="bilinear")(row).numpy()
    np.testing.assert_array_equal(bilinear[0, 0, :, 0], [0, 0.25, 0.75, 3.25, 7.75, 32.5, 77.5, 100])


@pytest.mark.parametrize("case", TF_CASES, ids=[case_id(case) for case in TF_CASES])
def test_keras_configs_map_onto_ours(tf, case):
    """What an importer needs: every key of our config is in Keras's with the same value (tuples as lists),
    and Keras's other keys are only the ones numcnn has no use for (channels_last is the only layout)."""
    _, keras = tf
    ours, theirs = case[0]().get_config(), case[1](keras).get_config()
    assert set(theirs) - set(ours) <= {"trainable", "dtype", "data_format"}
    assert theirs.get("data_format", "channels_last") == "channels_last"
    as_lists = json.loads(json.dumps(theirs))
    for key in set(ours) - {"name"}:
        assert as_lists[key] == ours[key], key
    rebuilt = type(case[0]()).from_config({key: as_lists[key] for key in ours if key != "name"})
    assert {**rebuilt.get_config(), "name": None} == {**ours, "name": None}


def test_a_model_of_the_new_layers_matches_keras(tf):
    tf_module, keras = tf
    model, shapes = build_model()
    keras_model = keras.Sequential([
        keras.Input((9, 9, 2)),
        keras.layers.ZeroPadding2D(((1, 0), (2, 1))),
        keras.layers.Conv2D(3, 3, activation="relu"),
        keras.layers.AveragePooling2D(3, strides=2, padding="same"),
        keras.layers.UpSampling2D((1, 2), interpolation="bilinear"),
        keras.layers.Conv2D(4, 3, padding="same"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Reshape((5, 2, 4)),
        keras.layers.GlobalMaxPooling2D(keepdims=True),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Reshape((2, -1)),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])
    assert [tuple(layer.output.shape[1:]) for layer in keras_model.layers] == list(shapes)
    keras_model.set_weights(model.get_weights())
    rng = np.random.default_rng(9)
    x = rng.normal(size=(4, 9, 9, 2)).astype(np.float32)
    dy = rng.normal(size=(4, 3)).astype(np.float32)
    y = model.forward(x)
    y_tf, dx_tf = keras_forward_and_input_gradient(tf_module, keras_model, x, dy)
    assert_close_to_tf(y, y_tf)
    assert_close_to_tf(model.backward(dy), dx_tf)
