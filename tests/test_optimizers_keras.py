"""Optimizers, learning-rate schedules and initializers against Keras 3 itself (live, via the ``tf`` fixture).

Every Keras number here is measured in the test: the same gradients go through numcnn's optimizer and Keras's
(``apply_gradients`` on ``keras.Variable``s, TensorFlow with oneDNN off), and the weights are compared after
every step. In float64 the two follow the same operations, so they agree to ~1e-15 relative (the last bits of
TensorFlow's own reductions and powers may differ); in float32 to a few ulps. A formula slip (epsilon inside
instead of outside a root, a missing bias correction, a cast through the wrong dtype) moves the update by
orders of magnitude more than these tolerances.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from numcnn import initializers, optimizers
from numcnn.optimizers import schedules

HYPOTHESIS = settings(max_examples=20, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])

# relative tolerance on the accumulated update (w - w0) after every step
TOLERANCE = {np.float32: 2e-6, np.float64: 1e-13}


def gradient_sequence(rng, shapes, steps, dtype):
    """Gradients of varied scale (1e-7 .. 10), so that epsilon, clipping and bias corrections all matter."""
    return [[(rng.normal(size=shape) * 10.0 ** rng.integers(-7, 2)).astype(dtype) for shape in shapes]
            for _ in range(steps)]


def run_both(tf, keras, ours, theirs, dtype, steps=8, seed=0, shapes=((4, 3), (3,))):
    """The same gradients through both optimizers; returns the worst relative error of ``w - w0``."""
    rng = np.random.default_rng(seed)
    w0 = [rng.normal(size=shape).astype(dtype) for shape in shapes]
    w_ours = [w.copy() for w in w0]
    w_theirs = [keras.Variable(w.copy(), dtype=np.dtype(dtype).name) for w in w0]
    worst = 0.0
    for grads in gradient_sequence(rng, shapes, steps, dtype):
        ours.apply(w_ours, grads)
        theirs.apply_gradients([(tf.constant(g), w) for g, w in zip(grads, w_theirs)])
        for mine, keras_w, start in zip(w_ours, w_theirs, w0):
            expected = keras_w.numpy() - start
            error = np.max(np.abs((mine - start) - expected)) / max(np.max(np.abs(expected)), 1e-300)
            worst = max(worst, float(error))
    return worst


# (name, numcnn optimizer factory, Keras optimizer factory): each with options that change the formula
CASES = [
    ("AdamW", lambda o: o.AdamW(0.01), lambda k: k.AdamW(0.01)),
    ("AdamW wd 0.1", lambda o: o.AdamW(0.01, weight_decay=0.1), lambda k: k.AdamW(0.01, weight_decay=0.1)),
    ("Adam amsgrad", lambda o: o.Adam(0.01, amsgrad=True), lambda k: k.Adam(0.01, amsgrad=True)),
    ("AdamW amsgrad", lambda o: o.AdamW(0.01, amsgrad=True), lambda k: k.AdamW(0.01, amsgrad=True)),
    ("Nadam", lambda o: o.Nadam(0.01), lambda k: k.Nadam(0.01)),
    ("Nadam betas", lambda o: o.Nadam(0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4),
     lambda k: k.Nadam(0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4)),
    ("Adagrad", lambda o: o.Adagrad(0.1), lambda k: k.Adagrad(0.1)),
    ("Adagrad accumulator 0.01", lambda o: o.Adagrad(0.1, initial_accumulator_value=0.01, epsilon=1e-3),
     lambda k: k.Adagrad(0.1, initial_accumulator_value=0.01, epsilon=1e-3)),
    ("SGD clipnorm", lambda o: o.SGD(0.1, clipnorm=0.5), lambda k: k.SGD(0.1, clipnorm=0.5)),
    ("SGD global_clipnorm", lambda o: o.SGD(0.1, global_clipnorm=0.5), lambda k: k.SGD(0.1, global_clipnorm=0.5)),
    ("SGD clipvalue", lambda o: o.SGD(0.1, clipvalue=0.3), lambda k: k.SGD(0.1, clipvalue=0.3)),
    ("SGD weight_decay", lambda o: o.SGD(0.1, weight_decay=0.05), lambda k: k.SGD(0.1, weight_decay=0.05)),
    ("Adam clipnorm", lambda o: o.Adam(0.01, clipnorm=1.0), lambda k: k.Adam(0.01, clipnorm=1.0)),
    ("Adam global_clipnorm", lambda o: o.Adam(0.01, global_clipnorm=1.0), lambda k: k.Adam(0.01, global_clipnorm=1.0)),
    ("Adam clipvalue", lambda o: o.Adam(0.01, clipvalue=0.1), lambda k: k.Adam(0.01, clipvalue=0.1)),
    ("RMSprop weight_decay", lambda o: o.RMSprop(0.01, weight_decay=0.01),
     lambda k: k.RMSprop(0.01, weight_decay=0.01)),
    ("SGD momentum exponential decay",
     lambda o: o.SGD(o.schedules.ExponentialDecay(0.1, 3, 0.5), momentum=0.9),
     lambda k: k.SGD(k.schedules.ExponentialDecay(0.1, 3, 0.5), momentum=0.9)),
    ("Adam staircase decay", lambda o: o.Adam(o.schedules.ExponentialDecay(0.01, 2, 0.7, staircase=True)),
     lambda k: k.Adam(k.schedules.ExponentialDecay(0.01, 2, 0.7, staircase=True))),
    ("AdamW cosine warmup", lambda o: o.AdamW(o.schedules.CosineDecay(0.001, 5, alpha=0.1, warmup_target=0.01,
                                                                       warmup_steps=3)),
     lambda k: k.AdamW(k.schedules.CosineDecay(0.001, 5, alpha=0.1, warmup_target=0.01, warmup_steps=3))),
    ("Nadam piecewise", lambda o: o.Nadam(o.schedules.PiecewiseConstantDecay([2, 5], [0.01, 0.005, 0.001])),
     lambda k: k.Nadam(k.schedules.PiecewiseConstantDecay([2, 5], [0.01, 0.005, 0.001]))),
    ("Adagrad inverse time", lambda o: o.Adagrad(o.schedules.InverseTimeDecay(0.1, 2, 0.5)),
     lambda k: k.Adagrad(k.schedules.InverseTimeDecay(0.1, 2, 0.5))),
]


@pytest.mark.tf
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name, make_ours, make_theirs", CASES, ids=[case[0] for case in CASES])
def test_optimizer_follows_keras(tf, name, make_ours, make_theirs, dtype):
    _, keras = tf
    error = run_both(*tf, make_ours(optimizers), make_theirs(keras.optimizers), dtype)
    assert error < TOLERANCE[dtype], f"{name}: relative error {error:.3g}"


@pytest.mark.tf
def test_a_wrong_formula_is_caught_by_the_same_comparison(tf):
    """The comparison can fail: Adam without AMSGrad against Keras's AMSGrad, and weight decay applied after the
    update instead of before, are both far outside the tolerance."""
    _, keras = tf
    assert run_both(*tf, optimizers.Adam(0.01), keras.optimizers.Adam(0.01, amsgrad=True), np.float64) > 1e-6

    class DecayAfterUpdate(optimizers.SGD):
        def update(self, index, w, g, lr):
            w += w * w.dtype.type(np.float32(self.weight_decay)) * lr  # undo the decay the base applied...
            super().update(index, w, g, lr)
            w -= w * w.dtype.type(np.float32(self.weight_decay)) * lr  # ...and apply it after the step

    assert run_both(*tf, DecayAfterUpdate(0.5, weight_decay=0.5), keras.optimizers.SGD(0.5, weight_decay=0.5),
                    np.float64) > 1e-6


@pytest.mark.tf
def test_optimizers_by_keras_name(tf):
    _, keras = tf
    for name in ("adamw", "nadam", "adagrad", "adam", "sgd", "rmsprop"):
        ours, theirs = optimizers.get(name), keras.optimizers.get(name)
        assert type(ours).__name__ == type(theirs).__name__
        for key, value in ours.get_config().items():  # the same defaults (Keras stores lr as a float32)
            expected = theirs.get_config()[key]
            assert value == pytest.approx(expected, rel=1e-7), (name, key)


# ------------------------------------------------------------------------------------------------
# Schedules: values at every step against Keras's own schedule objects
# ------------------------------------------------------------------------------------------------
def ulps_apart(a, b) -> int:
    a, b = np.float32(a), np.float32(b)
    return abs(int(a.view(np.int32)) - int(b.view(np.int32)))


def schedule_pairs(draw, schedules_module, keras_schedules):
    kind = draw(st.sampled_from(["exponential", "inverse", "piecewise", "cosine", "cosine_warmup"]))
    lr0 = draw(st.floats(1e-4, 1.0))
    steps = draw(st.integers(1, 50))
    if kind == "exponential":
        args = (lr0, steps, draw(st.floats(0.05, 0.99)))
        kwargs = {"staircase": draw(st.booleans())}
        return (schedules_module.ExponentialDecay(*args, **kwargs), keras_schedules.ExponentialDecay(*args, **kwargs))
    if kind == "inverse":
        args = (lr0, steps, draw(st.floats(0.01, 3.0)))
        kwargs = {"staircase": draw(st.booleans())}
        return (schedules_module.InverseTimeDecay(*args, **kwargs), keras_schedules.InverseTimeDecay(*args, **kwargs))
    if kind == "piecewise":
        boundaries = sorted(draw(st.sets(st.integers(0, 60), min_size=1, max_size=4)))
        values = [draw(st.floats(1e-4, 1.0)) for _ in range(len(boundaries) + 1)]
        return (schedules_module.PiecewiseConstantDecay(boundaries, values),
                keras_schedules.PiecewiseConstantDecay(boundaries, values))
    kwargs = {"alpha": draw(st.floats(0.0, 0.5))}
    if kind == "cosine_warmup":
        kwargs.update(warmup_target=draw(st.floats(1e-3, 1.0)), warmup_steps=draw(st.integers(1, 20)))
    return (schedules_module.CosineDecay(lr0, steps, **kwargs), keras_schedules.CosineDecay(lr0, steps, **kwargs))


@pytest.mark.tf
@HYPOTHESIS
@given(data=st.data())
def test_schedules_match_keras_at_every_step(tf, data):
    _, keras = tf
    ours, theirs = schedule_pairs(data.draw, schedules, keras.optimizers.schedules)
    for step in range(0, 80):
        mine, expected = ours(step), float(theirs(step))
        assert isinstance(mine, np.float32)
        if abs(mine) < np.finfo(np.float32).tiny:  # TensorFlow's CPU kernels flush subnormals to zero
            assert abs(expected) < np.finfo(np.float32).tiny
            continue
        # float32 throughout; TensorFlow's float32 pow/cos may differ from a correctly rounded one by an ulp
        assert ulps_apart(mine, expected) <= 1, (ours, step, mine, expected)


@pytest.mark.tf
def test_schedule_values_at_known_points(tf):
    """Spot values from the formulas, checked against Keras too: 0.1 * 0.5 ** (10 / 4) at step 10 and the
    staircase floor; the cosine halfway point; warm-up's linear ramp."""
    _, keras = tf
    k = keras.optimizers.schedules
    pairs = [
        (schedules.ExponentialDecay(0.1, 4, 0.5), k.ExponentialDecay(0.1, 4, 0.5), 10, 0.1 * 0.5 ** 2.5),
        (schedules.ExponentialDecay(0.1, 4, 0.5, staircase=True), k.ExponentialDecay(0.1, 4, 0.5, staircase=True), 10,
         0.1 * 0.5 ** 2),
        (schedules.CosineDecay(0.2, 10), k.CosineDecay(0.2, 10), 5, 0.1),
        (schedules.CosineDecay(0.0, 10, warmup_target=0.4, warmup_steps=4), k.CosineDecay(0.0, 10, warmup_target=0.4,
                                                                                      warmup_steps=4), 1, 0.1),
        (schedules.InverseTimeDecay(0.3, 2, 1.0), k.InverseTimeDecay(0.3, 2, 1.0), 4, 0.1),
        (schedules.PiecewiseConstantDecay([3], [0.5, 0.1]), k.PiecewiseConstantDecay([3], [0.5, 0.1]), 3, 0.5),
        (schedules.PiecewiseConstantDecay([3], [0.5, 0.1]), k.PiecewiseConstantDecay([3], [0.5, 0.1]), 4, 0.1),
    ]
    for ours, theirs, step, exact in pairs:
        assert float(ours(step)) == pytest.approx(exact, rel=1e-6)
        assert ulps_apart(ours(step), float(theirs(step))) <= 1


@pytest.mark.tf
def test_schedule_serialisation_is_keras_form(tf):
    _, keras = tf
    for ours, theirs in [
        (schedules.ExponentialDecay(0.1, 10, 0.5, staircase=True), keras.optimizers.schedules.ExponentialDecay(
            0.1, 10, 0.5, staircase=True)),
        (schedules.CosineDecay(0.1, 10, alpha=0.2, warmup_target=0.3, warmup_steps=2),
         keras.optimizers.schedules.CosineDecay(0.1, 10, alpha=0.2, warmup_target=0.3, warmup_steps=2)),
        (schedules.PiecewiseConstantDecay([1, 2], [0.3, 0.2, 0.1]),
         keras.optimizers.schedules.PiecewiseConstantDecay([1, 2], [0.3, 0.2, 0.1])),
        (schedules.InverseTimeDecay(0.1, 3, 0.5), keras.optimizers.schedules.InverseTimeDecay(0.1, 3, 0.5)),
    ]:
        assert schedules.serialize(ours) == keras.optimizers.schedules.serialize(theirs)
        ours_config = optimizers.Adam(ours).get_config()["learning_rate"]
        assert ours_config == keras.optimizers.Adam(theirs).get_config()["learning_rate"]
        again = schedules.deserialize(ours_config)
        assert type(again) is type(ours) and again.get_config() == ours.get_config()


def test_optimizer_with_schedule_round_trips_through_its_config():
    optimizer = optimizers.AdamW(schedules.CosineDecay(0.01, 20, warmup_target=0.1, warmup_steps=5),
                                 weight_decay=0.01, global_clipnorm=2.0)
    rebuilt = optimizers.from_config("adamw", optimizer.get_config())
    assert rebuilt.get_config() == optimizer.get_config()
    rng = np.random.default_rng(3)
    w1, w2 = rng.normal(size=(5, 2)), None
    w2 = w1.copy()
    for _ in range(12):
        g = rng.normal(size=w1.shape)
        optimizer.apply([w1], [g])
        rebuilt.apply([w2], [g])
    np.testing.assert_array_equal(w1, w2)


def test_learning_rate_reads_as_keras_float32_and_schedules_refuse_numbers():
    optimizer = optimizers.Adam(0.001)
    assert optimizer.learning_rate == float(np.float32(0.001)) != 0.001
    optimizer.learning_rate = 0.5
    assert optimizer.learning_rate == 0.5
    scheduled = optimizers.SGD(schedules.ExponentialDecay(1.0, 1, 0.5))
    scheduled.iterations = 3
    assert scheduled.learning_rate == 0.125
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        scheduled.learning_rate = 0.1
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD(-1.0)
    with pytest.raises(ValueError, match="decay_steps"):
        schedules.ExponentialDecay(0.1, 0, 0.5)
    with pytest.raises(ValueError, match="1 less"):
        schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="weight_decay"):
        optimizers.AdamW(weight_decay=None)
    with pytest.raises(ValueError, match="unknown learning rate schedule"):
        schedules.deserialize({"class_name": "os.system", "config": {}})


# ------------------------------------------------------------------------------------------------
# State save/resume is exact for every optimizer and option
# ------------------------------------------------------------------------------------------------
RESUMABLE = [
    lambda: optimizers.Adam(0.01, amsgrad=True),
    lambda: optimizers.AdamW(0.01, weight_decay=0.05, clipnorm=0.5),
    lambda: optimizers.Nadam(0.01),
    lambda: optimizers.Adagrad(0.1),
    lambda: optimizers.SGD(schedules.ExponentialDecay(0.1, 2, 0.5), momentum=0.9, nesterov=True),
    lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True, global_clipnorm=1.0),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("make", RESUMABLE, ids=["amsgrad", "adamw", "nadam", "adagrad", "sgd-schedule", "rmsprop"])
def test_state_round_trip_resumes_bit_identically(make, dtype):
    rng = np.random.default_rng(0)
    shapes = [(3, 2), (2,)]
    grads = [[rng.normal(size=s).astype(dtype) for s in shapes] for _ in range(7)]
    straight_w = [np.ones(s, dtype) for s in shapes]
    straight = make()
    for g in grads:
        straight.apply(straight_w, g)
    resumed_w = [np.ones(s, dtype) for s in shapes]
    first = make()
    for g in grads[:4]:
        first.apply(resumed_w, g)
    second = optimizers.from_config(first.name, first.get_config())  # as a file would bring it back
    second.build(resumed_w)
    second.set_state(first.get_state())
    for g in grads[4:]:
        second.apply(resumed_w, g)
    for a, b in zip(straight_w, resumed_w):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_amsgrad_kernel_is_bit_identical_to_the_numpy_formula(dtype):
    """The one-pass Numba AMSGrad does Keras's operations in Keras's order: the same bits as NumPy (every
    operation is one correctly rounded IEEE operation on both sides; the bias-correction scalars are shared)."""
    rng = np.random.default_rng(7)
    w = rng.normal(size=(5, 7)).astype(dtype)
    w_numpy, m, v, v_hat = w.copy(), np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    adam = optimizers.Adam(learning_rate=0.01, amsgrad=True)
    for _ in range(10):
        g = rng.normal(size=w.shape).astype(dtype) * dtype(rng.choice([1e-3, 1.0, 10.0]))
        alpha, one_minus_b1, one_minus_b2, eps = adam._scalars(w.dtype.type, w.dtype.type(np.float32(0.01)))
        adam.apply([w], [g])
        m += (g - m) * one_minus_b1
        v += (g * g - v) * one_minus_b2
        v_hat = np.maximum(v_hat, v)
        w_numpy -= (m * alpha) / (np.sqrt(v_hat) + eps)
        np.testing.assert_array_equal(w, w_numpy)


# ------------------------------------------------------------------------------------------------
# Initializers: glorot_normal and he_uniform against Keras's definitions and Keras's own draws
# ------------------------------------------------------------------------------------------------
def ks_statistic(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the empirical CDFs."""
    a, b = np.sort(a.ravel()), np.sort(b.ravel())
    points = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, points, side="right") / a.size
                               - np.searchsorted(b, points, side="right") / b.size)))


@pytest.mark.tf
@pytest.mark.parametrize("shape", [(300, 200), (3, 3, 64, 128), (5, 5, 8, 400)])
def test_glorot_normal_and_he_uniform_match_keras_draws(tf, shape):
    """Same distribution as Keras's (its streams cannot be reproduced, so compare distributions): the KS
    distance between 60k+ draws stays below its 1e-6 significance level, while a wrong scale (13% off, the
    truncation constant left out) is far above it; the bounds are Keras's: 2 stddev for the truncated normal,
    sqrt(6 / fan_in) for he_uniform."""
    _, keras = tf
    size = int(np.prod(shape))
    same_distribution = 2.69 * np.sqrt(2 / size)  # KS critical value at alpha = 1e-6 for two samples of `size`
    fan_in = int(np.prod(shape[:-1]))
    fan_out = int(np.prod(shape[:-2])) * shape[-1]
    rng = np.random.default_rng(0)

    ours = initializers.glorot_normal(shape, rng, dtype=np.float64)
    theirs = keras.initializers.GlorotNormal(seed=1)(shape).numpy().astype(np.float64)
    stddev = np.sqrt(2 / (fan_in + fan_out)) / 0.87962566103423978  # the normal before truncation
    assert np.abs(ours).max() <= 2 * stddev and np.abs(theirs).max() <= 2 * stddev * (1 + 1e-6)
    assert ks_statistic(ours, theirs) < same_distribution
    assert ours.std() == pytest.approx(np.sqrt(2 / (fan_in + fan_out)), rel=0.02)  # the truncated stddev
    assert ks_statistic(ours / 0.87962566103423978, theirs) > 2 * same_distribution  # the scale that must not be

    ours = initializers.he_uniform(shape, rng, dtype=np.float64)
    theirs = keras.initializers.HeUniform(seed=1)(shape).numpy().astype(np.float64)
    limit = np.sqrt(6 / fan_in)
    assert np.abs(ours).max() <= limit and np.abs(ours).max() > 0.99 * limit
    assert np.abs(theirs).max() <= limit * (1 + 1e-6)
    assert ks_statistic(ours, theirs) < same_distribution
    assert ours.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert ks_statistic(ours / np.sqrt(2), theirs) > 2 * same_distribution  # LeCun's sqrt(3 / fan_in) limit


def test_initializers_are_reproducible_and_typed():
    for init in (initializers.glorot_normal, initializers.he_uniform):
        a = init((4, 5), np.random.default_rng(9))
        np.testing.assert_array_equal(a, init((4, 5), np.random.default_rng(9)))
        assert a.dtype == np.float32 and init((4, 5), np.random.default_rng(9), dtype=np.float64).dtype == np.float64
