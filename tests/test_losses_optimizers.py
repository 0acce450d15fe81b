"""Losses against finite differences and Keras's measured values; optimizers against TF's measured steps.

The measured numbers come from docs/TF_PARITY.md: they were produced by Keras 3.15 / TF 2.21, not by numcnn.
(The TensorFlow parity suite re-measures all of them live.)
"""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from numcnn import initializers, losses, optimizers
from tests.gradcheck import check_gradient

LOSS_CASES = [
    (losses.SparseCategoricalCrossentropy(from_logits=True), "sparse", "logits"),
    (losses.SparseCategoricalCrossentropy(from_logits=False), "sparse", "probabilities"),
    (losses.CategoricalCrossentropy(from_logits=True), "onehot", "logits"),
    (losses.CategoricalCrossentropy(from_logits=False), "onehot", "probabilities"),
    (losses.MeanSquaredError(), "dense", "any"),
]


@pytest.mark.parametrize("loss, target_kind, input_kind", LOSS_CASES, ids=lambda v: getattr(v, "name", str(v)))
@settings(max_examples=30, deadline=None, derandomize=True)
@given(data=st.data())
def test_loss_gradient_matches_finite_differences(loss, target_kind, input_kind, data):
    n, classes = data.draw(st.integers(1, 5)), data.draw(st.integers(2, 6))
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    y_pred = rng.normal(scale=3, size=(n, classes))
    if input_kind == "probabilities":  # unnormalised positive values, away from the clip bounds
        y_pred = rng.uniform(0.05, 0.9, size=(n, classes))
    labels = rng.integers(0, classes, size=n)
    y_true = {"sparse": labels, "onehot": np.eye(classes)[labels], "dense": rng.normal(size=(n, classes))}[target_kind]
    value, grad = loss.loss_and_gradient(y_true, y_pred)
    assert check_gradient(lambda: loss(y_true, y_pred), y_pred, grad) < 1e-7


@settings(max_examples=50, deadline=None, derandomize=True)
@given(arrays(np.float64, (3, 4), elements=st.floats(-800, 800)))
def test_cross_entropy_from_extreme_logits_is_finite_and_exact(z):
    """logsumexp keeps the loss finite for logits of any size; compare with exact math via np.logaddexp."""
    y = np.array([0, 1, 3])
    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    value, grad = loss.loss_and_gradient(y, z)
    exact = np.mean([np.logaddexp.reduce(row) - row[label] for row, label in zip(z, y)])
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert value == pytest.approx(exact, rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(grad.sum(axis=1), 0, atol=1e-12)


def test_sparse_ce_on_probabilities_clips_like_keras():
    """Measured with Keras (docs/TF_PARITY.md): p_y ≈ 8.8e-27 gives 16.118 (≈ -log 1e-7), not 59.99."""
    p = np.array([[1 - 8.8e-27 - 1e-9, 1e-9, 8.8e-27]], dtype=np.float32)
    value = losses.SparseCategoricalCrossentropy()(np.array([2]), p)
    assert value == pytest.approx(16.118, abs=1e-3)


def test_sparse_labels_out_of_range_are_refused():
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        losses.SparseCategoricalCrossentropy(from_logits=True)(np.array([3]), np.zeros((1, 3)))


def one_variable_steps(optimizer, gradients, w0=0.0):
    w = np.array([w0], dtype=np.float32)
    for g in gradients:
        optimizer.apply([w], [np.array([g], dtype=np.float32)])
    return float(w[0]) - w0


LR = 0.01


# (optimizer, gradients, measured move in units of lr, decimals the measurement was quoted with)
@pytest.mark.parametrize("optimizer, gradients, expected, decimals", [
    (optimizers.Adam(LR), [1e-6], -0.2403, 4),       # eps added to the uncorrected sqrt(v); other form: 0.909
    (optimizers.SGD(LR, momentum=0.9), [1, 1], -2.9, 1),
    (optimizers.SGD(LR, momentum=0.9, nesterov=True), [1, 1], -4.61, 2),
    (optimizers.RMSprop(LR), [1e-4], -0.31466, 5),   # eps inside the square root; outside: 3.152
    (optimizers.SGD(LR), [1, 1], -2.0, 1),
], ids=["adam-epsilon-form", "sgd-momentum", "sgd-nesterov", "rmsprop-epsilon-inside", "sgd"])
def test_optimizer_steps_match_tensorflow_measurements(optimizer, gradients, expected, decimals):
    # The measurement is rounded to `decimals`: agree to within half a unit of its last digit.
    move = one_variable_steps(optimizer, gradients) / LR
    assert abs(move - expected) <= 0.5 * 10.0 ** -decimals + 1e-6


def test_adam_state_round_trip_resumes_exactly():
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(3, 2)).astype(np.float32) for _ in range(6)]
    w_straight = np.zeros((3, 2), np.float32)
    straight = optimizers.Adam()
    for g in grads:
        straight.apply([w_straight], [g])
    w_resumed = np.zeros((3, 2), np.float32)
    first = optimizers.Adam()
    for g in grads[:3]:
        first.apply([w_resumed], [g])
    second = optimizers.Adam()
    second.build([w_resumed])
    second.set_state(first.get_state())
    for g in grads[3:]:
        second.apply([w_resumed], [g])
    np.testing.assert_array_equal(w_straight, w_resumed)


def test_glorot_uniform_limit_and_reproducibility():
    """Measured with Keras (docs/TF_PARITY.md): Conv2D(64, 3) on 32 channels has max |w| ≈ sqrt(6 / (9*32 + 9*64)) = 0.08333."""
    w = initializers.glorot_uniform((3, 3, 32, 64), np.random.default_rng(0))
    assert w.dtype == np.float32
    assert 0.0830 < np.abs(w).max() <= np.sqrt(6 / (9 * 32 + 9 * 64))
    np.testing.assert_array_equal(w, initializers.glorot_uniform((3, 3, 32, 64), np.random.default_rng(0)))


def test_he_normal_is_truncated_with_keras_stddev():
    w = initializers.he_normal((200, 300), np.random.default_rng(1), dtype=np.float64)
    target = np.sqrt(2 / 200)
    assert np.abs(w).max() <= 2 * target / 0.87962566103423978
    assert w.std() == pytest.approx(target, rel=0.02)


def _correctly_rounded_power(base, exponent, dtype):
    """``base ** exponent`` computed exactly in rational arithmetic, then rounded once to ``dtype`` (float64 is
    rounded first, then float32: a double rounding, which for these inputs gives the correctly rounded
    float32 too). An independent truth that no CPU's SIMD pow can change."""
    return dtype(float(Fraction(float(base)) ** exponent))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_kernel_is_bit_identical_to_the_numpy_formula(dtype):
    """The one-pass Numba Adam does Keras's operations in Keras's order: the same bits as NumPy doing them.

    Holds on every x86-64 CPU because every operation on both sides is one IEEE-754 correctly rounded
    operation (+, -, *, /, sqrt; Numba does not contract to FMA without fastmath) — except ``beta ** t``:
    NumPy's SIMD power is not correctly rounded on AVX-512 (float32 ``0.999 ** 9`` 1 ulp low on Zen 4), so
    the reference takes the exactly rounded power and the optimizer takes libm's float64 pow rounded to
    ``dtype``, which equals it for these steps. A formula change (epsilon-hat, epsilon inside the root, the
    bias correction on m and v) moves the weights by far more than an ulp, so this still fails on it."""
    rng = np.random.default_rng(7)
    w = rng.normal(size=(5, 7)).astype(dtype)
    w_numpy, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
    adam = optimizers.Adam(learning_rate=0.01)
    for step in range(1, 11):
        g = rng.normal(size=w.shape).astype(dtype)
        adam.apply([w], [g])
        lr, b1, b2 = (dtype(np.float32(value)) for value in (0.01, 0.9, 0.999))
        beta_1_power = _correctly_rounded_power(b1, step, dtype)
        beta_2_power = _correctly_rounded_power(b2, step, dtype)
        alpha = lr * np.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        m += (g - m) * dtype(1 - 0.9)
        v += (g * g - v) * dtype(1 - 0.999)
        w_numpy -= (m * alpha) / (np.sqrt(v) + dtype(1e-7))
        np.testing.assert_array_equal(w, w_numpy)
