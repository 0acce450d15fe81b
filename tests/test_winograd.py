"""Winograd F(2x2, 3x3): fast kernel vs formula-literal reference, finite differences, and a derived bound on its
extra rounding error against the direct (im2col) convolution, in float32 and float64.

The error bound (Higham, *Accuracy and Stability of Numerical Algorithms*, ch. 3). With unit roundoff ``u``
(2^-24 for float32, 2^-53 for float64) and ``γ(m) = m u / (1 - m u)``: a result that is a sum of products, each
elementary product passing through at most ``m`` roundings on its way into the sum (a product, an addition,
a fused multiply-add each count one), satisfies ``|computed - exact| <= γ(m) * (the same sum with every term
replaced by its absolute value)``. The Winograd transforms only multiply by 0, ±1 and ±1/2 (exact in binary),
so expanded, the Winograd output is such a sum::

    y = b + Σ_k Σ_{ξ,ν} Aᵀ[a,ξ] Aᵀ[c,ν] (Σ_{p,q} G[ξ,p] G[ν,q] w[p,q,k,j]) (Σ_{r,s} Bᵀ[ξ,r] Bᵀ[ν,s] d[r,s,k])

and its absolute sum is the same algorithm run on ``|x|, |w|, |b|`` with the matrices ``|Bᵀ|, |G|, |Aᵀ|``. Those
absolute coefficients are where the transforms grow the error: the absolute sum is larger than the direct
convolution's ``Σ|x||w|``, because every product ``x w`` of the direct sum reappears split over several
Winograd terms that cancel in the signed sum but add up in the absolute one (``error_report`` measures this
growth factor: 10-30x at the worst element for unit-size random data). Roundings per term in
``numcnn.kernels.winograd`` (each 1-D pass of the input and output transforms adds at most 2 resp. 3 nonzero terms, the filter transform 3 per pass):

* forward: input transform 2, filter transform 4, product and GEMM sum over C_in: C_in, output transform 4,
  bias 1 -> ``m = C_in + 11``.  Direct im2col: ``m = 9 C_in + 1``.
* dx: dy transform 2, filter transform 4, GEMM over C_out: C_out, inverse input transform 4, up to 4
  overlapping tiles added: 4 -> ``m = C_out + 14``.  Direct: C_out + 9 (col2im adds up to 9 fields).
* dw: input transform 2, dy transform 2, GEMM over all T tiles: T, filter gradient transform 4 ->
  ``m = T + 8``.  Direct: ``N*OH*OW`` (every output position is one term).

Both results obey their bound against the exact value, so ``|winograd - direct| <= bound_winograd +
bound_direct`` elementwise; that is what the test asserts (plus, in float32, against a float64 truth). The
absolute sums are computed in float64 (their own relative rounding, below 1e-13, is covered by a 1e-6 margin).
Underflow is outside this model: the test data are of unit size.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from numcnn.kernels import conv, reference, winograd
from tests.gradcheck import check_gradient

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)
UNIT_ROUNDOFF = {np.float32: 2.0 ** -24, np.float64: 2.0 ** -53}


@st.composite
def winograd_cases(draw, max_channels=4, max_size=9):
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    c_in, c_out = draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    padding = draw(st.sampled_from(["valid", "same"]))
    assume(padding == "same" or (h >= 3 and w >= 3))
    return draw(st.integers(0, 2**32 - 1)), (n, h, w, c_in), (3, 3, c_in, c_out), padding


def random_problem(case, dtype):
    seed, x_shape, w_shape, padding = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=x_shape).astype(dtype)
    w = rng.normal(size=w_shape).astype(dtype)
    b = rng.normal(size=w_shape[3]).astype(dtype)
    return rng, x, w, b, padding


# --------------------------------------------------------------------------------------------------------
# fast == reference, and finite differences
# --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@SETTINGS
@given(case=winograd_cases())
def test_fast_winograd_matches_reference(case, dtype, rtol):
    rng, x, w, b, padding = random_problem(case, dtype)
    y_ref, cache_ref = reference.winograd_conv3x3_forward(x, w, b, padding)
    y_fast, cache_fast = winograd.winograd_conv3x3_forward(x, w, b, padding)
    assert y_fast.dtype == dtype and y_fast.shape == y_ref.shape
    atol = rtol * 3 * np.sqrt(9 * x.shape[3])  # a sum of 9 C_in products of unit-size numbers
    np.testing.assert_allclose(y_fast, y_ref, rtol=rtol, atol=atol)
    dy = rng.normal(size=y_ref.shape).astype(dtype)
    got_all = winograd.winograd_conv3x3_backward(dy, cache_fast)
    for got, want in zip(got_all, reference.winograd_conv3x3_backward(dy, cache_ref)):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * np.sqrt(dy.size))
    dx_skipped, dw, db = winograd.winograd_conv3x3_backward(dy, cache_fast, need_dx=False)
    assert dx_skipped is None
    np.testing.assert_array_equal(dw, got_all[1])


@settings(max_examples=15, deadline=None, derandomize=True)
@given(case=winograd_cases(max_channels=3, max_size=6))
def test_winograd_gradients_match_finite_differences(case):
    rng, x, w, b, padding = random_problem(case, np.float64)
    y, cache = winograd.winograd_conv3x3_forward(x, w, b, padding)
    probe = rng.normal(size=y.shape)  # L = sum(y * probe): dL/dy = probe

    def loss():
        return float(np.sum(winograd.winograd_conv3x3_forward(x, w, b, padding)[0] * probe))

    dx, dw, db = winograd.winograd_conv3x3_backward(probe, cache)
    for array, analytical in ((x, dx), (w, dw), (b, db)):
        assert check_gradient(loss, array, analytical) < 1e-6


def test_bad_kernel_size_is_rejected():
    x, w, b = np.zeros((1, 5, 5, 1)), np.zeros((5, 5, 1, 1)), np.zeros(1)
    for forward in (winograd.winograd_conv3x3_forward, reference.winograd_conv3x3_forward):
        with pytest.raises(ValueError, match="3x3 kernel"):
            forward(x, w, b)


# --------------------------------------------------------------------------------------------------------
# The extra rounding error, bounded
# --------------------------------------------------------------------------------------------------------
def gamma(m, u):
    return m * u / (1 - m * u)


def tiles_of(x_pad, th, tw):
    """``d[n, i, l, r, s, k] = x_pad[n, 2i + r, 2l + s, k]``: every 4x4 input tile."""
    return np.stack([np.stack([x_pad[:, r:r + 2 * th:2, s:s + 2 * tw:2, :] for s in range(4)], axis=3)
                     for r in range(4)], axis=3)


def winograd_dense(x, w, b, dy, padding, bt, g, at):
    """F(2x2, 3x3) forward and backward with the given matrices, vectorised in float64 (einsum). With the true
    matrices it is Winograd; with ``|Bᵀ|, |G|, |Aᵀ|`` on ``|x|, |w|, |b|, |dy|`` it is every result's absolute
    sum, the factor of its error bound."""
    x, w, b, dy = (np.asarray(a, np.float64) for a in (x, w, b, dy))
    oh, ow, pads, th, tw = reference.winograd_geometry(x.shape, padding)
    v = np.einsum("ar,nilrsk,bs->nilabk", bt, tiles_of(reference.winograd_pad(x, pads, th, tw), th, tw), bt)
    u = np.einsum("ap,pqkj,bq->abkj", g, w, g)
    m = np.einsum("nilabk,abkj->nilabj", v, u)
    y = np.einsum("ca,nilabj,db->nicldj", at, m, at).reshape(len(x), 2 * th, 2 * tw, -1)[:, :oh, :ow] + b
    dy_tiles = np.zeros((len(x), 2 * th, 2 * tw, dy.shape[3]))
    dy_tiles[:, :oh, :ow] = dy
    dy_tiles = dy_tiles.reshape(len(x), th, 2, tw, 2, -1).transpose(0, 1, 3, 2, 4, 5)  # (n, i, l, c, d, j)
    dm = np.einsum("ca,nilcdj,db->nilabj", at, dy_tiles, at)
    dd = np.einsum("ar,nilabk,bs->nilrsk", bt, np.einsum("nilabj,abkj->nilabk", dm, u), bt)
    dx_pad = np.zeros((len(x), 2 * th + 2, 2 * tw + 2, x.shape[3]))
    for r in range(4):
        for s in range(4):
            dx_pad[:, r:r + 2 * th:2, s:s + 2 * tw:2, :] += dd[:, :, :, r, s, :]
    top, _, left, _ = pads
    dx = dx_pad[:, top:top + x.shape[1], left:left + x.shape[2]]
    dw = np.einsum("ap,abkj,bq->pqkj", g, np.einsum("nilabj,nilabk->abkj", dm, v), g)
    return y, dx, dw


def error_report(x, w, b, dy, padding):
    """Per result (y, dx, dw): max |winograd - direct|, the bound on it, and max of their ratio; also the
    growth factor (Winograd's absolute sum over the direct one's, at the worst element)."""
    u = UNIT_ROUNDOFF[x.dtype.type]
    n_images, _, _, c_in = x.shape
    c_out = w.shape[3]
    y_w, cache_w = winograd.winograd_conv3x3_forward(x, w, b, padding)
    y_d, cache_d = conv.conv2d_forward(x, w, b, (1, 1), padding, winograd_rule=False)
    dx_w, dw_w, _ = winograd.winograd_conv3x3_backward(dy, cache_w)
    dx_d, dw_d, _ = conv.conv2d_backward(dy, cache_d)
    abs_matrices = [np.abs(m) for m in (reference.WINOGRAD_BT, reference.WINOGRAD_G, reference.WINOGRAD_AT)]
    abs_w = winograd_dense(np.abs(x), np.abs(w), np.abs(b), np.abs(dy), padding, *abs_matrices)
    x64, w64, dy64 = (np.abs(a).astype(np.float64) for a in (x, w, dy))
    abs_y_d, abs_cache = conv.conv2d_forward(x64, w64, np.abs(b).astype(np.float64), (1, 1), padding,
                                             winograd_rule=False)
    abs_dx_d, abs_dw_d, _ = conv.conv2d_backward(dy64, abs_cache)
    oh, ow, _, th, tw = reference.winograd_geometry(x.shape, padding)
    rounds_w = (c_in + 11, c_out + 14, n_images * th * tw + 8)
    rounds_d = (9 * c_in + 1, c_out + 9, n_images * oh * ow)
    report = {}
    for name, got_w, got_d, sum_w, sum_d, m_w, m_d in zip(
            ("y", "dx", "dw"), (y_w, dx_w, dw_w), (y_d, dx_d, dw_d), abs_w, (abs_y_d, abs_dx_d, abs_dw_d),
            rounds_w, rounds_d):
        bound = (gamma(m_w, u) * sum_w + gamma(m_d, u) * sum_d) * (1 + 1e-6)
        diff = np.abs(got_w.astype(np.float64) - got_d)
        report[name] = {"max_diff": float(diff.max()), "max_bound": float(bound.max()),
                        "worst_ratio": float((diff / bound).max()),
                        "growth": float((sum_w / np.maximum(sum_d, 1e-300)).max())}
    return report


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=20, deadline=None, derandomize=True)
@given(case=winograd_cases(max_channels=24, max_size=12))
def test_winograd_error_against_direct_convolution_is_within_the_derived_bound(case, dtype):
    rng, x, w, b, padding = random_problem(case, dtype)
    dy = rng.normal(size=conv.conv2d_forward(x, w, b, (1, 1), padding, winograd_rule=False)[0].shape).astype(dtype)
    for name, figures in error_report(x, w, b, dy, padding).items():
        assert figures["worst_ratio"] <= 1.0, (name, figures)


@pytest.mark.parametrize("c_in", [3, 32])
def test_float32_winograd_error_against_float64_truth_is_within_its_own_bound(c_in):
    """A tighter check: Winograd alone against the exact result (float64 on the same float32 inputs, whose own
    error, ~1e-16 relative, is far below float32's), so the bound can be compared with the measured error."""
    rng = np.random.default_rng(c_in)
    x = rng.normal(size=(4, 12, 12, c_in)).astype(np.float32)
    w = rng.normal(size=(3, 3, c_in, 8)).astype(np.float32)
    b = rng.normal(size=8).astype(np.float32)
    y32, _ = winograd.winograd_conv3x3_forward(x, w, b, "same")
    truth, _ = conv.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1), "same",
                                  winograd_rule=False)
    abs_matrices = [np.abs(m) for m in (reference.WINOGRAD_BT, reference.WINOGRAD_G, reference.WINOGRAD_AT)]
    abs_sum = winograd_dense(np.abs(x), np.abs(w), np.abs(b), np.zeros_like(truth), "same", *abs_matrices)[0]
    bound = gamma(c_in + 11, 2.0 ** -24) * abs_sum * (1 + 1e-6)
    error = np.abs(y32 - truth)
    assert (error <= bound).all()
    # the bound is not vacuous: it is a small multiple of float32's resolution of the result
    assert bound.max() < 1e-4 * max(1.0, np.abs(truth).max()) * c_in


def test_a_wrong_transform_breaks_the_bound():
    """The bound test can fail: a Winograd with one coefficient of G off by 2^-20 (an error of a few float32
    ulps per product) is caught."""
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(2, 8, 8, 8)), rng.normal(size=(3, 3, 8, 4))
    b, dy = np.zeros(4), np.zeros((2, 8, 8, 4))
    g_wrong = reference.WINOGRAD_G.copy()
    g_wrong[1, 1] += 2.0 ** -20
    y_wrong = winograd_dense(x, w, b, dy, "same", reference.WINOGRAD_BT, g_wrong, reference.WINOGRAD_AT)[0]
    y_direct, _ = conv.conv2d_forward(x, w, b, (1, 1), "same", winograd_rule=False)
    abs_matrices = [np.abs(m) for m in (reference.WINOGRAD_BT, reference.WINOGRAD_G, reference.WINOGRAD_AT)]
    abs_sum = winograd_dense(np.abs(x), np.abs(w), b, dy, "same", *abs_matrices)[0]
    abs_direct, _ = conv.conv2d_forward(np.abs(x), np.abs(w), b, (1, 1), "same", winograd_rule=False)
    bound = gamma(8 + 11, 2.0 ** -53) * abs_sum + gamma(9 * 8 + 1, 2.0 ** -53) * abs_direct
    assert (np.abs(y_wrong - y_direct) > bound).any()


@pytest.mark.parametrize("avx512_blas", [False, True])
def test_winograd_rule_by_the_blas_kernel(monkeypatch, avx512_blas):
    """Where BLAS runs 512-bit kernels at full width, im2col's product is fast enough that Winograd needs 64 channels."""
    monkeypatch.setattr(conv, "WINOGRAD_SETTING", "")
    monkeypatch.setattr(conv, "blas_has_full_width_avx512", lambda: avx512_blas)
    assert conv.use_winograd((3, 3, 32, 32), (1, 1), (32, 32)) is not avx512_blas
    assert conv.use_winograd((3, 3, 16, 64), (1, 1), (16, 16)) is not avx512_blas
    assert conv.use_winograd((3, 3, 64, 64), (1, 1), (16, 16))
    assert not conv.use_winograd((3, 3, 64, 64), (1, 1), (13, 13))  # a small map


def test_blas_kernel_is_read_from_openblas():
    """A process whose OpenBLAS is told to run its 256-bit Haswell kernel (OPENBLAS_CORETYPE, as this
    project's machines set it) reports that kernel, and numcnn then counts its BLAS as not AVX-512."""
    code = ("import numpy, numcnn, threadpoolctl; from numcnn.kernels.parallel import blas_has_avx512; "
            "print(sorted({i['architecture'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == "
            "'openblas'}), blas_has_avx512())")
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["['Haswell']", "False"]


@pytest.mark.parametrize("host_cpu, full_width", [("znver4", False), ("znver5", True), ("sapphirerapids", True)])
def test_512_bit_blas_counts_as_full_width_except_on_cpus_that_split_it(monkeypatch, host_cpu, full_width):
    """Zen 4 runs a 512-bit instruction as two 256-bit halves (its sgemm is no faster with OpenBLAS's
    SkylakeX kernel than with Haswell, kernels.parallel), so there Winograd keeps the 256-bit rule."""
    from llvmlite import binding

    from numcnn.kernels import parallel

    monkeypatch.setattr(binding, "get_host_cpu_name", lambda: host_cpu)
    monkeypatch.setattr(parallel, "blas_has_avx512", lambda: True)
    assert parallel.blas_has_full_width_avx512() is full_width
    monkeypatch.setattr(parallel, "blas_has_avx512", lambda: False)  # 256-bit kernels: never full width
    assert parallel.blas_has_full_width_avx512() is False


def test_conv2d_routes_to_winograd_by_its_rule_and_the_environment_switch(monkeypatch):
    monkeypatch.setattr(conv, "WINOGRAD_SETTING", "")  # the automatic rule (see use_winograd's docstring)
    monkeypatch.setattr(conv, "blas_has_full_width_avx512", lambda: False)
    assert conv.use_winograd((3, 3, 16, 32), (1, 1), (16, 16))
    assert not conv.use_winograd((3, 3, 3, 32), (1, 1), (16, 16))  # 3 input channels
    assert not conv.use_winograd((3, 3, 32, 64), (1, 1), (11, 11))  # a small map
    assert not conv.use_winograd((3, 3, 16, 32), (2, 2), (8, 8))  # stride 2: not possible
    monkeypatch.setattr(conv, "WINOGRAD_SETTING", "0")
    assert not conv.use_winograd((3, 3, 16, 32), (1, 1), (16, 16))
    rng = np.random.default_rng(2)
    x, w, b = rng.normal(size=(2, 6, 6, 3)), rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4)
    monkeypatch.setattr(conv, "WINOGRAD_SETTING", "1")  # wherever the kernel can
    assert conv.use_winograd(w.shape, (1, 1), (6, 6))
    assert not conv.use_winograd(w.shape, (2, 1), (3, 6))
    assert not conv.use_winograd((5, 5, 3, 4), (1, 1), (6, 6))
    y, cache = conv.conv2d_forward(x, w, b, (1, 1), "same")
    assert isinstance(cache, winograd.WinogradCache)
    y_ref, cache_ref = reference.conv2d_forward(x, w, b, (1, 1), "same")
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    dy = rng.normal(size=y.shape)
    for got, want in zip(conv.conv2d_backward(dy, cache), reference.conv2d_backward(dy, cache_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_predict_runs_a_conv_pool_pair_by_winograd_and_training_by_the_direct_sum(monkeypatch):
    """The fused Conv2D + MaxPooling2D takes Winograd at inference where the rule says it pays, never in
    training (its tie rule needs the direct sum's equal outputs for equal fields): counted on the real kernel.
    Both give the pooled map of the same function, within Winograd's float32 rounding (bound above: about
    (C_in + 11) * 2^-24 times the result's absolute sum, here < 1e-4 absolute)."""
    import numcnn
    from numcnn import layers

    monkeypatch.setattr(conv, "WINOGRAD_SETTING", "")
    monkeypatch.setattr(conv, "blas_has_full_width_avx512", lambda: False)  # the rule for 16 channels: Winograd (its test above)
    calls = []
    real_forward = winograd.winograd_conv3x3_forward
    monkeypatch.setattr(winograd, "winograd_conv3x3_forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    model = numcnn.Sequential([layers.Input((18, 18, 16)), layers.Conv2D(16, 3, activation="relu"),
                               layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3)], seed=0)
    x = np.random.default_rng(5).normal(size=(4, 18, 18, 16)).astype(np.float32)
    assert model.steps()[0] == (0, 1)  # the fused pair
    trained = model.forward(x, training=True)
    assert calls == []
    predicted = model.predict(x, verbose=0)
    assert calls == [1]
    np.testing.assert_allclose(predicted, trained, rtol=0, atol=1e-4)
    assert not np.array_equal(predicted, trained)  # different arithmetic: the check above compared two paths
