"""Winograd F(2x2, 3x3) and F(4x4, 3x3): fast kernels vs the formula-literal reference, finite differences, and a
derived bound on their extra rounding error against the direct (im2col) convolution, in float32 and float64.

The error bound (Higham, *Accuracy and Stability of Numerical Algorithms*, ch. 3). With unit roundoff ``u``
(2^-24 for float32, 2^-53 for float64) and ``γ(m) = m u / (1 - m u)``: a result that is a sum of products, each
elementary product passing through at most ``m`` roundings on its way into the sum (a product, an addition,
a fused multiply-add each count one), satisfies ``|computed - exact| <= γ(m) * (the same sum with every term
replaced by its absolute value)``. A multiplication by a coefficient exact in binary (0, ±1, ±1/2, ±2, 4, 8)
adds no rounding of its own; one by 5 (a product) counts one, one by G's 1/6, 1/12 or 1/24 of F(4x4, 3x3) two (the
coefficient itself is rounded, then the product). Expanded, the Winograd output is such a sum::

    y = b + Σ_k Σ_{ξ,ν} Aᵀ[a,ξ] Aᵀ[c,ν] (Σ_{p,q} G[ξ,p] G[ν,q] w[p,q,k,j]) (Σ_{r,s} Bᵀ[ξ,r] Bᵀ[ν,s] d[r,s,k])

and its absolute sum is the same algorithm run on ``|x|, |w|, |b|`` with the matrices ``|Bᵀ|, |G|, |Aᵀ|``. Those
absolute coefficients are where the transforms grow the error: the absolute sum is larger than the direct
convolution's ``Σ|x||w|``, because every product ``x w`` of the direct sum reappears split over several
Winograd terms that cancel in the signed sum but add up in the absolute one (``error_report`` measures this
growth factor: 10-30x at the worst element for unit-size random data with F(2x2, 3x3)). Roundings per term in
``numcnn.kernels.winograd``, counted on its code: per 1-D pass, F(2x2, 3x3)'s input and dy transforms add 1
rounding, its output, inverse input and filter transforms up to 2; F(4x4, 3x3)'s ``_bt6`` / ``_at6`` / ``_a6`` up to 3
(e.g. ``d12 + 8 d34 + m5``: three additions), ``_b6`` up to 4 (``5 v0`` plus three additions), its filter
transform 4 (a rounded coefficient, a product, two additions) and the filter gradient transform 6 (Gᵀ's rows
have up to 5 nonzero terms). Two passes each (rows, then columns):

* forward: input transform, filter transform, the GEMM's sum over C_in (C_in), output transform, bias (1) ->
  ``m = C_in + 11`` for F(2x2), ``C_in + 21`` for F(4x4).  Direct im2col: ``m = 9 C_in + 1``.
* dx: dy transform, filter transform, GEMM over C_out, inverse input transform, up to 4 overlapping tiles added
  -> ``m = C_out + 14`` resp. ``C_out + 26``.  Direct: C_out + 9 (col2im adds up to 9 fields).
* dw: input transform, dy transform, GEMM over all T tiles (T), filter gradient transform -> ``m = T + 8``
  resp. ``T + 24``.  Direct: ``N*OH*OW`` (every output position is one term).

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


TILES = [2, 4]  # F(2x2, 3x3) and F(4x4, 3x3)
# roundings per term (module docstring), by tile: (forward, dx, dw minus the number of tiles T)
WINOGRAD_ROUNDINGS = {2: (11, 14, 8), 4: (21, 26, 24)}


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
@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@SETTINGS
@given(case=winograd_cases())
def test_fast_winograd_matches_reference(case, dtype, rtol, tile):
    rng, x, w, b, padding = random_problem(case, dtype)
    y_ref, cache_ref = reference.winograd_conv3x3_forward(x, w, b, padding, tile)
    y_fast, cache_fast = winograd.winograd_conv3x3_forward(x, w, b, padding, tile=tile)
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


@pytest.mark.parametrize("tile", TILES)
@settings(max_examples=15, deadline=None, derandomize=True)
@given(case=winograd_cases(max_channels=3, max_size=6))
def test_winograd_gradients_match_finite_differences(case, tile):
    rng, x, w, b, padding = random_problem(case, np.float64)
    y, cache = winograd.winograd_conv3x3_forward(x, w, b, padding, tile=tile)
    probe = rng.normal(size=y.shape)  # L = sum(y * probe): dL/dy = probe

    def loss():
        return float(np.sum(winograd.winograd_conv3x3_forward(x, w, b, padding, tile=tile)[0] * probe))

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


def tiles_of(x_pad, th, tw, tile):
    """``d[n, i, l, r, s, k] = x_pad[n, m*i + r, m*l + s, k]`` (m = ``tile``): every (m+2)x(m+2) input tile."""
    m, a = tile, tile + 2
    return np.stack([np.stack([x_pad[:, r:r + m * th:m, s:s + m * tw:m, :] for s in range(a)], axis=3)
                     for r in range(a)], axis=3)


def winograd_dense(x, w, b, dy, padding, bt, g, at):
    """F(m x m, 3x3) forward and backward with the given matrices (m = ``at``'s rows), vectorised in float64
    (einsum). With the true matrices it is Winograd; with ``|Bᵀ|, |G|, |Aᵀ|`` on ``|x|, |w|, |b|, |dy|`` it is
    every result's absolute sum, the factor of its error bound."""
    x, w, b, dy = (np.asarray(a, np.float64) for a in (x, w, b, dy))
    m, a = at.shape
    oh, ow, pads, th, tw = reference.winograd_geometry(x.shape, padding, m)
    v = np.einsum("ar,nilrsk,bs->nilabk", bt, tiles_of(reference.winograd_pad(x, pads, th, tw, m), th, tw, m), bt)
    u = np.einsum("ap,pqkj,bq->abkj", g, w, g)
    products = np.einsum("nilabk,abkj->nilabj", v, u)
    y = np.einsum("ca,nilabj,db->nicldj", at, products, at).reshape(len(x), m * th, m * tw, -1)[:, :oh, :ow] + b
    dy_tiles = np.zeros((len(x), m * th, m * tw, dy.shape[3]))
    dy_tiles[:, :oh, :ow] = dy
    dy_tiles = dy_tiles.reshape(len(x), th, m, tw, m, -1).transpose(0, 1, 3, 2, 4, 5)  # (n, i, l, c, d, j)
    dm = np.einsum("ca,nilcdj,db->nilabj", at, dy_tiles, at)
    dd = np.einsum("ar,nilabk,bs->nilrsk", bt, np.einsum("nilabj,abkj->nilabk", dm, u), bt)
    dx_pad = np.zeros((len(x), m * th + 2, m * tw + 2, x.shape[3]))
    for r in range(a):
        for s in range(a):
            dx_pad[:, r:r + m * th:m, s:s + m * tw:m, :] += dd[:, :, :, r, s, :]
    top, _, left, _ = pads
    dx = dx_pad[:, top:top + x.shape[1], left:left + x.shape[2]]
    dw = np.einsum("ap,abkj,bq->pqkj", g, np.einsum("nilabj,nilabk->abkj", dm, v), g)
    return y, dx, dw


def absolute_matrices(tile):
    return [np.abs(m) for m in reference.WINOGRAD_MATRICES[tile]]


def error_report(x, w, b, dy, padding, tile):
    """Per result (y, dx, dw): max |winograd - direct|, the bound on it, and max of their ratio; also the
    growth factor (Winograd's absolute sum over the direct one's, at the worst element)."""
    u = UNIT_ROUNDOFF[x.dtype.type]
    n_images, _, _, c_in = x.shape
    c_out = w.shape[3]
    y_w, cache_w = winograd.winograd_conv3x3_forward(x, w, b, padding, tile=tile)
    y_d, cache_d = conv.conv2d_forward(x, w, b, (1, 1), padding, winograd_rule=False)
    dx_w, dw_w, _ = winograd.winograd_conv3x3_backward(dy, cache_w)
    dx_d, dw_d, _ = conv.conv2d_backward(dy, cache_d)
    abs_w = winograd_dense(np.abs(x), np.abs(w), np.abs(b), np.abs(dy), padding, *absolute_matrices(tile))
    x64, w64, dy64 = (np.abs(a).astype(np.float64) for a in (x, w, dy))
    abs_y_d, abs_cache = conv.conv2d_forward(x64, w64, np.abs(b).astype(np.float64), (1, 1), padding,
                                             winograd_rule=False)
    abs_dx_d, abs_dw_d, _ = conv.conv2d_backward(dy64, abs_cache)
    oh, ow, _, th, tw = reference.winograd_geometry(x.shape, padding, tile)
    extra = WINOGRAD_ROUNDINGS[tile]
    rounds_w = (c_in + extra[0], c_out + extra[1], n_images * th * tw + extra[2])
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


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=20, deadline=None, derandomize=True)
@given(case=winograd_cases(max_channels=24, max_size=12))
def test_winograd_error_against_direct_convolution_is_within_the_derived_bound(case, dtype, tile):
    rng, x, w, b, padding = random_problem(case, dtype)
    dy = rng.normal(size=conv.conv2d_forward(x, w, b, (1, 1), padding, winograd_rule=False)[0].shape).astype(dtype)
    for name, figures in error_report(x, w, b, dy, padding, tile).items():
        assert figures["worst_ratio"] <= 1.0, (name, figures)


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("c_in", [3, 32])
def test_float32_winograd_error_against_float64_truth_is_within_its_own_bound(c_in, tile):
    """A tighter check: Winograd alone against the exact result (float64 on the same float32 inputs, whose own
    error, ~1e-16 relative, is far below float32's), so the bound can be compared with the measured error."""
    rng = np.random.default_rng(c_in)
    x = rng.normal(size=(4, 12, 12, c_in)).astype(np.float32)
    w = rng.normal(size=(3, 3, c_in, 8)).astype(np.float32)
    b = rng.normal(size=8).astype(np.float32)
    y32, _ = winograd.winograd_conv3x3_forward(x, w, b, "same", tile=tile)
    truth, _ = conv.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1), "same",
                                  winograd_rule=False)
    abs_sum = winograd_dense(np.abs(x), np.abs(w), np.abs(b), np.zeros_like(truth), "same", *absolute_matrices(tile))[0]
    bound = gamma(c_in + WINOGRAD_ROUNDINGS[tile][0], 2.0 ** -24) * abs_sum * (1 + 1e-6)
    error = np.abs(y32 - truth)
    assert (error <= bound).all()
    # the bound is not vacuous: below 1% of the largest output (measured: F(2x2) 0.001-0.007 %, F(4x4) 0.06-0.3 %;
    # it sits 60-280x resp. 310-820x above the largest error measured here: F(4x4)'s absolute sums grow more)
    assert bound.max() < 0.01 * np.abs(truth).max()


@pytest.mark.parametrize("tile", TILES)
def test_a_wrong_transform_breaks_the_bound(tile):
    """The bound test can fail: a Winograd with one coefficient of G off by 2^-20 (an error of a few float32
    ulps per product) is caught."""
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(2, 8, 8, 8)), rng.normal(size=(3, 3, 8, 4))
    b, dy = np.zeros(4), np.zeros((2, 8, 8, 4))
    bt, g, at = reference.WINOGRAD_MATRICES[tile]
    g_wrong = g.copy()
    g_wrong[1, 1] += 2.0 ** -20
    y_wrong = winograd_dense(x, w, b, dy, "same", bt, g_wrong, at)[0]
    y_direct, _ = conv.conv2d_forward(x, w, b, (1, 1), "same", winograd_rule=False)
    abs_sum = winograd_dense(np.abs(x), np.abs(w), b, dy, "same", *absolute_matrices(tile))[0]
    abs_direct, _ = conv.conv2d_forward(np.abs(x), np.abs(w), b, (1, 1), "same", winograd_rule=False)
    bound = (gamma(8 + WINOGRAD_ROUNDINGS[tile][0], 2.0 ** -53) * abs_sum
             + gamma(9 * 8 + 1, 2.0 ** -53) * abs_direct)
    assert (np.abs(y_wrong - y_direct) > bound).any()


# --------------------------------------------------------------------------------------------------------
# Larger kernels as sums of 3x3 pieces (forward only)
# --------------------------------------------------------------------------------------------------------
@st.composite
def pieces_cases(draw, max_channels=4, max_size=10):
    kh, kw = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    padding = draw(st.sampled_from(["valid", "same"]))
    assume(padding == "same" or (h >= kh and w >= kw))
    c_in, c_out = draw(st.integers(1, max_channels)), draw(st.integers(1, max_channels))
    return draw(st.integers(0, 2**32 - 1)), (n, h, w, c_in), (kh, kw, c_in, c_out), padding


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@SETTINGS
@given(case=pieces_cases())
def test_pieces_forward_matches_its_reference_and_the_direct_convolution(case, dtype, rtol):
    rng, x, w, b, padding = random_problem(case, dtype)
    y_fast = winograd.winograd_pieces_forward(x, w, b, padding)
    y_ref = reference.winograd_conv_by_pieces_forward(x, w, b, padding)
    y_direct, _ = reference.conv2d_forward(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), (1, 1),
                                           padding)
    assert y_fast.dtype == dtype and y_fast.shape == y_ref.shape == y_direct.shape
    atol = rtol * 30 * np.sqrt(w.shape[0] * w.shape[1] * x.shape[3])  # sums of KH*KW*C_in unit-size products
    np.testing.assert_allclose(y_fast, y_ref, rtol=rtol, atol=atol)
    np.testing.assert_allclose(y_fast, y_direct, rtol=rtol, atol=atol)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(case=pieces_cases(max_size=8))
def test_pieces_backward_matches_its_reference_the_direct_convolution_and_finite_differences(case):
    rng, x, w, b, padding = random_problem(case, np.float64)
    y = winograd.winograd_pieces_forward(x, w, b, padding)
    dy = rng.normal(size=y.shape)
    _, _, pads = reference.conv2d_geometry(x.shape, w.shape, (1, 1), padding)
    got = winograd.winograd_pieces_backward_by_chunks(dy.shape, dy.dtype, lambda start, stop, _: dy[start:stop],
                                                      x, w, pads)
    want = reference.winograd_conv_by_pieces_backward(dy, x, w, padding)
    direct = reference.conv2d_backward(dy, reference.conv2d_forward(x, w, b, (1, 1), padding)[1])
    for g, r, d in zip(got, want, direct):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-11)
        np.testing.assert_allclose(g, d, rtol=1e-12, atol=1e-11)
    skipped = winograd.winograd_pieces_backward_by_chunks(dy.shape, dy.dtype, lambda start, stop, _: dy[start:stop],
                                                          x, w, pads, need_dx=False)
    assert skipped[0] is None and np.array_equal(skipped[1], got[1])

    def loss():
        return float(np.sum(winograd.winograd_pieces_forward(x, w, b, padding) * dy))

    for array, analytical in ((x, got[0]), (w, got[1]), (b, got[2])):
        assert check_gradient(loss, array, analytical) < 1e-6


def pieces_absolute_sum(x, w, b, padding):
    """The absolute sum that bounds ``winograd_pieces_forward``'s error: each 3x3 piece's F(4x4, 3x3) run on
    absolute values with ``|Bᵀ|, |G|, |Aᵀ|`` (``winograd_dense``), on the padded input shifted as the piece
    reads it, summed, plus ``|b|``."""
    kh, kw = w.shape[:2]
    oh, ow, (top, _, left, _) = reference.conv2d_geometry(x.shape, w.shape, (1, 1), padding)
    rows, cols = oh + 3 * -(-kh // 3) + 4, ow + 3 * -(-kw // 3) + 4
    x_pad = np.zeros((len(x), rows, cols, x.shape[3]))
    x_pad[:, top:top + x.shape[1], left:left + x.shape[2]] = np.abs(x)
    w_pad = np.zeros((3 * -(-kh // 3), 3 * -(-kw // 3), *w.shape[2:]))
    w_pad[:kh, :kw] = np.abs(w)
    total = np.abs(b).astype(np.float64)
    for p, q in winograd.kernel_pieces(kh, kw):
        shifted = x_pad[:, p:p + oh + 2, q:q + ow + 2]
        total = total + winograd_dense(shifted, w_pad[p:p + 3, q:q + 3], np.zeros(w.shape[3]),
                                       np.zeros((len(x), oh, ow, w.shape[3])), "valid", *absolute_matrices(4))[0]
    return total


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=20, deadline=None, derandomize=True)
@given(case=pieces_cases(max_channels=12, max_size=12))
def test_pieces_error_against_direct_convolution_is_within_the_derived_bound(case, dtype):
    """As for F(4x4, 3x3) (module docstring), with the products of all P pieces summed in one GEMM of K = P*C_in:
    ``m = P*C_in + 21``."""
    rng, x, w, b, padding = random_problem(case, dtype)
    u = UNIT_ROUNDOFF[dtype]
    got = winograd.winograd_pieces_forward(x, w, b, padding).astype(np.float64)
    direct, _ = conv.conv2d_forward(x, w, b, (1, 1), padding, winograd_rule=False)
    abs_direct, _ = conv.conv2d_forward(np.abs(x).astype(np.float64), np.abs(w).astype(np.float64),
                                        np.abs(b).astype(np.float64), (1, 1), padding, winograd_rule=False)
    pieces = len(winograd.kernel_pieces(*w.shape[:2]))
    bound = (gamma(pieces * x.shape[3] + WINOGRAD_ROUNDINGS[4][0], u) * pieces_absolute_sum(x, w, b, padding)
             + gamma(w.shape[0] * w.shape[1] * x.shape[3] + 1, u) * abs_direct) * (1 + 1e-6)
    assert (np.abs(got - direct) <= bound).all()


def test_pieces_rule_needs_a_5x5_kernel_and_32_channels(monkeypatch):
    """``conv.use_winograd_pieces``'s measured rule: 5x5 or larger, 32 channels in and out, stride 1."""
    monkeypatch.setattr(conv, "WINOGRAD_SETTING", "")
    assert conv.use_winograd_pieces((5, 5, 32, 64), (1, 1), (16, 16))  # the strided model's second conv
    assert conv.use_winograd_pieces((7, 7, 32, 32), (1, 1), (16, 16))
    assert not conv.use_winograd_pieces((5, 5, 16, 64), (1, 1), (16, 16))  # too few channels
    assert not conv.use_winograd_pieces((4, 4, 32, 32), (1, 1), (16, 16))  # a 4x4 kernel: mostly zero pieces
    assert not conv.use_winograd_pieces((3, 3, 64, 64), (1, 1), (16, 16))  # 3x3: use_winograd's
    assert not conv.use_winograd_pieces((5, 5, 32, 64), (2, 2), (16, 16))  # stride 2
    assert not conv.use_winograd_pieces((5, 5, 32, 64), (1, 1), (8, 8))  # a small map


def test_winograd_rule_needs_16_channels_and_an_11x11_output(monkeypatch):
    """The measured rule (``conv.use_winograd``'s docstring): F(4x4, 3x3) from 16 channels in and out and an
    11x11 output on, whatever the BLAS kernel."""
    monkeypatch.setattr(conv, "WINOGRAD_SETTING", "")
    assert conv.use_winograd((3, 3, 16, 16), (1, 1), (16, 16))
    assert conv.use_winograd((3, 3, 32, 64), (1, 1), (11, 11))  # the seed model's second conv
    assert not conv.use_winograd((3, 3, 8, 16), (1, 1), (32, 32))  # too few channels
    assert not conv.use_winograd((3, 3, 64, 8), (1, 1), (32, 32))
    assert not conv.use_winograd((3, 3, 64, 64), (1, 1), (10, 10))  # a small map
    assert not conv.use_winograd((3, 3, 64, 64), (1, 1), (3, 3))  # the seed model's third conv


def test_conv2d_routes_to_winograd_by_its_rule_and_the_environment_switch(monkeypatch):
    monkeypatch.setattr(conv, "WINOGRAD_SETTING", "")  # the automatic rule (see use_winograd's docstring)
    assert conv.use_winograd((3, 3, 16, 32), (1, 1), (16, 16))
    assert not conv.use_winograd((3, 3, 3, 32), (1, 1), (16, 16))  # 3 input channels
    assert not conv.use_winograd((3, 3, 32, 64), (1, 1), (9, 9))  # a small map
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
    assert isinstance(cache, winograd.WinogradCache) and cache.tile == conv.WINOGRAD_TILE == 4
    y_ref, cache_ref = reference.conv2d_forward(x, w, b, (1, 1), "same")
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    dy = rng.normal(size=y.shape)
    for got, want in zip(conv.conv2d_backward(dy, cache), reference.conv2d_backward(dy, cache_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_conv2d_runs_a_larger_kernel_by_its_pieces_where_the_rule_says_so(monkeypatch):
    """A 5x5 Conv2D with 32 channels (not fused with a pooling) goes to the pieces both ways; the same numbers as
    the direct sum (float64), and im2col where the rule says no (16 channels)."""
    monkeypatch.setattr(conv, "WINOGRAD_SETTING", "")
    rng = np.random.default_rng(8)
    for c_in, pieces in ((32, True), (16, False)):
        x, w, b = rng.normal(size=(2, 12, 12, c_in)), rng.normal(size=(5, 5, c_in, 32)), rng.normal(size=32)
        y, cache = conv.conv2d_forward(x, w, b, (1, 1), "same")
        assert isinstance(cache, winograd.PiecesCache) is pieces
        y_ref, cache_ref = reference.conv2d_forward(x, w, b, (1, 1), "same")
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-10)
        dy = rng.normal(size=y.shape)
        for got, want in zip(conv.conv2d_backward(dy, cache), reference.conv2d_backward(dy, cache_ref)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)
        assert conv.conv2d_backward(dy, cache, need_dx=False)[0] is None


@pytest.mark.parametrize("kernel, channels", [(3, 16), (5, 32)])
def test_predict_runs_a_conv_pool_pair_by_winograd_and_training_by_the_direct_sum(monkeypatch, kernel, channels):
    """The fused Conv2D + MaxPooling2D takes Winograd at inference where the rule says it pays (F(4x4, 3x3) for a
    3x3 kernel, its 3x3 pieces for a 5x5 one; both through ``winograd_pieces_forward``, a 3x3 kernel being one
    piece), never in training (its tie rule needs the direct sum's equal outputs
    for equal fields): counted on the real kernel. Both give the pooled map of the same function, within
    Winograd's float32 rounding (bounds above: about (P*C_in + 21) * 2^-24 times the result's absolute sum, here
    < 1e-4 absolute)."""
    import numcnn
    from numcnn import layers

    monkeypatch.setattr(conv, "WINOGRAD_SETTING", "")  # the rules' shapes (their tests above)
    calls = []
    real_forward = winograd.winograd_pieces_forward
    monkeypatch.setattr(winograd, "winograd_pieces_forward", lambda *a, **k: calls.append(1) or real_forward(*a, **k))
    model = numcnn.Sequential([layers.Input((18, 18, channels)), layers.Conv2D(channels, kernel, padding="same",
                                                                              activation="relu"),
                               layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3)], seed=0)
    x = np.random.default_rng(5).normal(size=(4, 18, 18, channels)).astype(np.float32)
    assert model.steps()[0] == (0, 1)  # the fused pair
    trained = model.forward(x, training=True)
    assert calls == []
    predicted = model.predict(x, verbose=0)
    assert calls == [1]
    np.testing.assert_allclose(predicted, trained, rtol=0, atol=1e-4)
    assert not np.array_equal(predicted, trained)  # different arithmetic: the check above compared two paths
