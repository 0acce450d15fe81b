"""Fast kernels agree with the formula-literal reference; both agree with finite differences and with the
hand-checked TensorFlow facts of docs/TF_PARITY.md (asymmetric 'same' padding, first-max tie rule, += on overlap)."""

import os

import numba
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from numcnn import kernels as fast
from numcnn.kernels import conv, parallel, reference
from tests.gradcheck import check_gradient

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


@st.composite
def conv_cases(draw, winograd=False):
    """Random Conv2D shapes; ``winograd``: only what the fused op's Winograd forward and backward run (stride 1;
    half of them 3x3 kernels, which F(4x4, 3x3) runs, the others any size up to 6x6, run by their 3x3 pieces)."""
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 12))
    c_in, c_out = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    if winograd and draw(st.booleans()):
        kh, kw = 3, 3
    elif winograd:
        kh, kw = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    else:
        kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    strides = (1, 1) if winograd else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.sampled_from(["valid", "same"]))
    assume(padding == "same" or (h >= kh and w >= kw))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng, (n, h, w, c_in), (kh, kw, c_in, c_out), strides, padding


@st.composite
def pool_cases(draw, ties=False):
    n, h, w, c = draw(st.integers(1, 3)), draw(st.integers(1, 12)), draw(st.integers(1, 12)), draw(st.integers(1, 3))
    pool = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    strides = (draw(st.integers(1, pool[0])), draw(st.integers(1, pool[1])))  # <= pool: overlapping allowed
    padding = draw(st.sampled_from(["valid", "same"]))
    assume(padding == "same" or (h >= pool[0] and w >= pool[1]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(0, 3, size=(n, h, w, c)).astype(np.float64) if ties else rng.normal(size=(n, h, w, c))
    return rng, x, pool, strides, padding


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
@SETTINGS
@given(case=conv_cases())
def test_conv_fast_matches_reference(case, dtype, rtol):
    rng, x_shape, w_shape, strides, padding = case
    x, w = rng.normal(size=x_shape).astype(dtype), rng.normal(size=w_shape).astype(dtype)
    b = rng.normal(size=w_shape[3]).astype(dtype)
    y_ref, cache_ref = reference.conv2d_forward(x, w, b, strides, padding)
    y_fast, cache_fast = fast.conv2d_forward(x, w, b, strides, padding)
    assert y_fast.dtype == dtype and y_fast.shape == y_ref.shape
    atol = rtol * np.sqrt(np.prod(w_shape[:3]))  # a sum of K products of unit-size numbers
    np.testing.assert_allclose(y_fast, y_ref, rtol=rtol, atol=atol)
    dy = rng.normal(size=y_ref.shape).astype(dtype)
    for got, want in zip(fast.conv2d_backward(dy, cache_fast), reference.conv2d_backward(dy, cache_ref)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol * np.sqrt(dy.size))


@pytest.mark.parametrize("ties", [False, True])
@SETTINGS
@given(data=st.data())
def test_maxpool_fast_matches_reference_exactly(data, ties):
    rng, x, pool, strides, padding = data.draw(pool_cases(ties=ties))
    y_ref, cache_ref = reference.maxpool2d_forward(x, pool, strides, padding)
    y_fast, cache_fast = fast.maxpool2d_forward(x, pool, strides, padding)
    np.testing.assert_array_equal(y_fast, y_ref)
    dy = rng.normal(size=y_ref.shape)
    # the same winner for every window, so the same sums in the same order: exactly equal
    np.testing.assert_array_equal(fast.maxpool2d_backward(dy, cache_fast), reference.maxpool2d_backward(dy, cache_ref))


def test_dense_and_activations_fast_match_reference():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(4, 7)), rng.normal(size=(7, 3)), rng.normal(size=3)
    y_ref, cache_ref = reference.dense_forward(x, w, b)
    y_fast, cache_fast = fast.dense_forward(x, w, b)
    np.testing.assert_allclose(y_fast, y_ref, rtol=1e-12)
    dy = rng.normal(size=(4, 3))
    for got, want in zip(fast.dense_backward(dy, cache_fast), reference.dense_backward(dy, cache_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    z = rng.normal(size=(5, 6)) * 10
    for name in ("relu", "softmax"):
        out_ref, c_ref = getattr(reference, f"{name}_forward")(z)
        out_fast, c_fast = getattr(fast, f"{name}_forward")(z)
        np.testing.assert_allclose(out_fast, out_ref, rtol=1e-12)
        dy = rng.normal(size=z.shape)
        np.testing.assert_allclose(getattr(fast, f"{name}_backward")(dy, c_fast),
                                   getattr(reference, f"{name}_backward")(dy, c_ref), rtol=1e-12, atol=1e-15)


@st.composite
def conv_pool_cases(draw, integers=False, winograd=False):
    """A Conv2D -> (ReLU) -> MaxPooling2D chain; small receptive fields take the fused op's direct kernel,
    large ones its GEMM path. With ``integers``, every sum of the direct and GEMM paths is exact, so windows
    hold exact ties (not Winograd F(4x4, 3x3)'s: its filter transform's 1/6, 1/12 and 1/24 round)."""
    rng, x_shape, w_shape, strides, padding = draw(conv_cases(winograd))
    oh, ow, _ = reference.conv2d_geometry(x_shape, w_shape, strides, padding)
    pool = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pool_strides = (draw(st.integers(1, pool[0])), draw(st.integers(1, pool[1])))
    pool_padding = draw(st.sampled_from(["valid", "same"]))
    assume(pool_padding == "same" or (oh >= pool[0] and ow >= pool[1]))
    draw_array = (lambda size: rng.integers(-2, 3, size=size).astype(np.float64)) if integers else (lambda size: rng.normal(size=size))
    x, w, b = draw_array(x_shape), draw_array(w_shape), draw_array(w_shape[3])
    args = (strides, padding, pool, pool_strides, pool_padding, draw(st.booleans()))
    return rng, x, w, b, args


# (forward method, backward after the gemm forward): every path of the fused op
FUSED_PATHS = [("direct", None), ("gemm", "winners"), ("gemm", "dense"), ("gemm", "winograd"), ("winograd", None)]
FUSED_PATH_IDS = ["direct", "gemm-winners", "gemm-dense", "gemm-winograd-backward", "winograd"]
# the paths that run only what Winograd can (conv_cases's ``winograd``)
WINOGRAD_PATHS = {"gemm-winograd-backward", "winograd"}


# Every path on normal data; with exact ties all but the Winograd forward, which rounds the outputs of equal
# receptive fields differently, so that a tie may get another winner (why training never takes it:
# kernels.conv.use_winograd). (A Winograd backward after the direct forward keeps the direct sum's winners.)
FUSED_CASES = ([(path, backward, False, name) for (path, backward), name in zip(FUSED_PATHS, FUSED_PATH_IDS)]
               + [(path, backward, True, name) for (path, backward), name in zip(FUSED_PATHS, FUSED_PATH_IDS)
                  if path != "winograd"])
FUSED_CASE_IDS = [f"{'exact-ties' if integers else 'normal'}-{name}" for *_, integers, name in FUSED_CASES]


@pytest.mark.parametrize("path, backward, integers, name", FUSED_CASES, ids=FUSED_CASE_IDS)
@SETTINGS
@given(data=st.data())
def test_fused_conv_pool_matches_the_chain_of_reference_ops(data, integers, path, backward, name):
    rng, x, w, b, args = data.draw(conv_pool_cases(integers, winograd=name in WINOGRAD_PATHS))
    y_ref, cache_ref = reference.conv_pool_forward(x, w, b, *args)
    y_fast, cache_fast = fast.conv_pool_forward(x, w, b, *args, method=path)
    np.testing.assert_allclose(y_fast, y_ref, rtol=1e-12, atol=1e-12)
    dy = rng.normal(size=y_ref.shape)
    got_grads = fast.conv_pool_backward(dy, cache_fast, backward=backward)
    for got, want in zip(got_grads, reference.conv_pool_backward(dy, cache_ref)):
        # with exact ties, a gradient sent to a different tied position would differ by O(1) here
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("path, backward, name", [(*path, name) for path, name in zip(FUSED_PATHS, FUSED_PATH_IDS)],
                         ids=FUSED_PATH_IDS)
@settings(max_examples=15, deadline=None, derandomize=True)
@given(data=st.data())
def test_fused_conv_pool_gradients_match_finite_differences(data, path, backward, name):
    rng, x, w, b, args = data.draw(conv_pool_cases(winograd=name in WINOGRAD_PATHS))
    y, cache = fast.conv_pool_forward(x, w, b, *args, method=path)
    weights = rng.normal(size=y.shape)
    dx, dw, db = fast.conv_pool_backward(weights, cache, backward=backward)
    loss = lambda: float(np.sum(weights * fast.conv_pool_forward(x, w, b, *args, method=path)[0]))  # noqa: E731
    for array, grad in ((x, dx), (w, dw), (b, db)):
        assert check_gradient(loss, array, grad) < 1e-6


def test_fused_backward_rejects_an_unknown_choice_and_a_strided_winograd_backward():
    rng = np.random.default_rng(6)
    x, w, b = rng.normal(size=(2, 8, 8, 4)), rng.normal(size=(3, 3, 4, 4)), np.zeros(4)
    y, cache = fast.conv_pool_forward(x, w, b, method="gemm")
    with pytest.raises(ValueError, match="'winners', 'dense' or 'winograd', got 'winner'"):
        fast.conv_pool_backward(np.ones_like(y), cache, backward="winner")
    y, cache = fast.conv_pool_forward(x, w, b, (2, 2), method="gemm")
    with pytest.raises(ValueError, match="needs stride 1"):
        fast.conv_pool_backward(np.ones_like(y), cache, backward="winograd")


# ------------------------------------------------------------------------------------------------
# Finite differences (float64), for both implementations
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
@settings(max_examples=15, deadline=None, derandomize=True)
@given(case=conv_cases())
def test_conv_gradients_match_finite_differences(impl, case):
    rng, x_shape, w_shape, strides, padding = case
    x, w, b = rng.normal(size=x_shape), rng.normal(size=w_shape), rng.normal(size=w_shape[3])
    y, cache = impl.conv2d_forward(x, w, b, strides, padding)
    weights = rng.normal(size=y.shape)  # L = sum(weights * y)
    dx, dw, db = impl.conv2d_backward(weights, cache)
    def loss():
        return float(np.sum(weights * impl.conv2d_forward(x, w, b, strides, padding)[0]))
    for array, grad in ((x, dx), (w, dw), (b, db)):
        assert check_gradient(loss, array, grad) < 1e-6


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
@settings(max_examples=15, deadline=None, derandomize=True)
@given(data=st.data())
def test_maxpool_gradient_matches_finite_differences(impl, data):
    rng, _, pool, strides, padding = data.draw(pool_cases())
    x = rng.permutation(np.arange(np.prod(_.shape), dtype=np.float64)).reshape(_.shape)  # distinct: no ties
    y, cache = impl.maxpool2d_forward(x, pool, strides, padding)
    weights = rng.normal(size=y.shape)
    dx = impl.maxpool2d_backward(weights, cache)
    loss = lambda: float(np.sum(weights * impl.maxpool2d_forward(x, pool, strides, padding)[0]))  # noqa: E731
    assert check_gradient(loss, x, dx, eps=1e-3) < 1e-6  # values 1 apart: eps 1e-3 never changes a winner


def test_softmax_and_relu_gradients_match_finite_differences():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(3, 5))
    z[np.abs(z) < 0.01] = 0.5  # ReLU: keep away from the kink at 0
    for impl in (fast, reference):
        for name in ("relu", "softmax"):
            forward, backward = getattr(impl, f"{name}_forward"), getattr(impl, f"{name}_backward")
            weights = rng.normal(size=z.shape)
            grad = backward(weights, forward(z)[1])
            assert check_gradient(lambda: float(np.sum(weights * forward(z)[0])), z, grad) < 1e-7


# ------------------------------------------------------------------------------------------------
# TensorFlow's conventions, measured (docs/TF_PARITY.md), as independent hand-checked cases
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
def test_same_padding_stride_2_pads_bottom_right(impl):
    """Conv2D(k=3, s=2, 'same') on 4x4: 0 rows/cols of padding top/left, 1 bottom/right (TF measured)."""
    x = np.arange(1, 17, dtype=np.float64).reshape(1, 4, 4, 1)
    w = np.zeros((3, 3, 1, 1))
    w[0, 0, 0, 0] = 1  # picks the top-left element of each window
    y, _ = impl.conv2d_forward(x, w, np.zeros(1), (2, 2), "same")
    # windows start at rows/cols 0 and 2 of the unpadded input: x[0,0]=1, x[0,2]=3, x[2,0]=9, x[2,2]=11
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 3], [9, 11]])


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
@pytest.mark.parametrize("window, winner", [
    ([[1.0, 1.0], [1.0, 1.0]], (0, 0)),  # all equal: top-left
    ([[0.0, 1.0], [1.0, 0.0]], (0, 1)),  # first maximum in row-major order
])
def test_maxpool_ties_send_the_gradient_to_the_first_maximum(impl, window, winner):
    x = np.array(window).reshape(1, 2, 2, 1)
    _, cache = impl.maxpool2d_forward(x, (2, 2))
    dx = impl.maxpool2d_backward(np.ones((1, 1, 1, 1)), cache)
    expected = np.zeros((2, 2))
    expected[winner] = 1
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
def test_overlapping_pool_windows_accumulate(impl):
    """Pool 2, stride 1 on 4x4 with one large central value: it wins 4 windows and receives 4."""
    x = np.zeros((1, 4, 4, 1))
    x[0, 1, 1, 0] = 10
    _, cache = impl.maxpool2d_forward(x, (2, 2), (1, 1))
    dx = impl.maxpool2d_backward(np.ones((1, 3, 3, 1)), cache)
    assert dx[0, 1, 1, 0] == 4


@pytest.mark.parametrize("impl", [fast, reference], ids=["fast", "reference"])
def test_same_pooling_pads_with_minus_infinity(impl):
    y, _ = impl.maxpool2d_forward(-np.ones((1, 3, 3, 1)), (2, 2), padding="same")
    np.testing.assert_array_equal(y, -np.ones((1, 2, 2, 1)))


def symmetric_same_conv(x, w, b, strides):
    """A WRONG 'same' convolution (PyTorch-style symmetric padding: one extra row/col on every side)."""
    pad = (w.shape[0] - 1 + 1) // 2
    x_pad = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return reference.conv2d_forward(x_pad, w, b, strides, "valid")[0]


def test_the_tests_catch_symmetric_same_padding():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(1, 4, 4, 1)), rng.normal(size=(3, 3, 1, 1)), np.zeros(1)
    right = fast.conv2d_forward(x, w, b, (2, 2), "same")[0]
    wrong = symmetric_same_conv(x, w, b, (2, 2))
    assert right.shape == wrong.shape and not np.allclose(right, wrong)


@pytest.mark.parametrize("threads", [1, 2])
def test_fast_kernels_are_bit_identical_across_thread_counts(threads, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_CHUNK_BYTES", 1)  # these small layers still split into MIN_CHUNKS chunks
    rng = np.random.default_rng(3)
    x, w, b = (rng.normal(size=s).astype(np.float32) for s in ((20, 9, 9, 3), (3, 3, 3, 5), (5,)))  # 20 > DW_PART_IMAGES: several dW parts
    previous = numba.get_num_threads()
    try:
        results = []
        for count in (threads, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(count)
            y, cache = fast.conv2d_forward(x, w, b, (1, 1), "same")
            p, pool_cache = fast.maxpool2d_forward(y, (3, 3), (1, 1))
            dy = fast.maxpool2d_backward(np.ones_like(p), pool_cache)
            results.append((y, p, *fast.conv2d_backward(dy, cache)))
            for path, backward in FUSED_PATHS:  # each has its own chunks and loop order
                fused_y, fused_cache = fast.conv_pool_forward(x, w, b, (1, 1), "same", (2, 2), method=path)
                results[-1] += (fused_y, *fast.conv_pool_backward(np.ones_like(fused_y), fused_cache,
                                                                  backward=backward))
    finally:
        numba.set_num_threads(previous)
    for a, b_ in zip(*results):
        np.testing.assert_array_equal(a, b_)


@pytest.mark.parametrize("need_dx", [True, False])
def test_fused_dense_backward_gives_the_bits_of_the_unfused_ops(need_dx, monkeypatch):
    """The fused op's dense backward routes the pooled gradient to ``dz`` one chunk of images at a time; the
    unfused ops build the whole ``dz`` (MaxPooling2D's backward) and then run Conv2D's backward on it. The
    same numbers in the same products: the same bits (float32, several chunks, a first layer's case too)."""
    monkeypatch.setattr(parallel, "MIN_CHUNK_BYTES", 1)  # a small layer that still splits into MIN_CHUNKS chunks
    rng = np.random.default_rng(5)
    x, w, b = (rng.normal(size=s).astype(np.float32) for s in ((20, 11, 11, 3), (5, 5, 3, 8), (8,)))
    conv_args, pool_args = ((2, 2), "same"), ((3, 3), (2, 2), "same")
    z, conv_cache = fast.conv2d_forward(x, w, b, *conv_args)
    p, pool_cache = fast.maxpool2d_forward(fast.relu_forward(z)[0], *pool_args)
    fused_y, fused_cache = fast.conv_pool_forward(x, w, b, *conv_args, *pool_args, relu=True, method="gemm")
    np.testing.assert_array_equal(fused_y, p)
    dy = rng.normal(size=p.shape).astype(np.float32)
    dz = fast.maxpool2d_backward(dy, pool_cache) * (z > 0)  # ReLU's backward: dy where its input was > 0
    expected = fast.conv2d_backward(dz, conv_cache, need_dx)
    got = fast.conv_pool_backward(dy, fused_cache, need_dx, backward="dense")
    assert len(conv.conv_chunks(x, w, *z.shape[1:3])) > 1
    for a, b_ in zip(got, expected):
        if b_ is None:
            assert a is None
        else:
            np.testing.assert_array_equal(a, b_)


def test_chunked_gemm_kernels_are_bit_identical_across_thread_counts(monkeypatch):
    """Dense (200 rows: 2 chunks), Conv2DTranspose and both Winograd tile sizes (20 images: 8 chunks) split their
    batch into chunks fixed by the shapes alone (kernels.parallel), so one thread and all of them give the same
    bits."""
    from numcnn.kernels import dense, winograd

    monkeypatch.setattr(parallel, "MIN_CHUNK_BYTES", 1)  # small layers that still split into MIN_CHUNKS chunks
    monkeypatch.setattr(dense, "MIN_CHUNK_MULTIPLY_ADDS", 1)  # and a small product into 64-row chunks
    assert dense.row_chunks(200, 30 * 7) == [(0, 100), (100, 200)]

    rng = np.random.default_rng(4)
    x_dense, w_dense, b_dense = (rng.normal(size=s).astype(np.float32) for s in ((200, 30), (30, 7), (7,)))
    x = rng.normal(size=(20, 6, 6, 4)).astype(np.float32)
    w_t, w = rng.normal(size=(3, 3, 5, 4)).astype(np.float32), rng.normal(size=(3, 3, 4, 5)).astype(np.float32)
    bias = rng.normal(size=5).astype(np.float32)

    def run():
        y, cache = fast.dense_forward(x_dense, w_dense, b_dense)
        out = [y, *fast.dense_backward(np.ones_like(y), cache)]
        y, cache = fast.conv2d_transpose_forward(x, w_t, bias, (2, 2), "same")
        out += [y, *fast.conv2d_transpose_backward(np.ones_like(y), cache)]
        for tile in (2, 4):
            y, cache = winograd.winograd_conv3x3_forward(x, w, bias, "same", tile=tile)
            out += [y, *winograd.winograd_conv3x3_backward(np.ones_like(y), cache)]
        return out

    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        expected = run()
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        got = run()
    finally:
        numba.set_num_threads(previous)
    for a, b_ in zip(got, expected):
        np.testing.assert_array_equal(a, b_)


def test_image_chunks_cover_the_batch_whatever_the_threads():
    from numcnn.kernels.parallel import MIN_CHUNK_BYTES, MIN_CHUNKS, image_chunks, run_chunks

    for n_images, bytes_per_image in ((1, 10), (7, 10), (20, 10), (300, 1 << 20), (5, 1 << 30)):
        chunks = image_chunks(n_images, bytes_per_image)
        assert chunks[0][0] == 0 and chunks[-1][1] == n_images
        assert all(a[1] == b[0] and a[0] < a[1] for a, b in zip(chunks, chunks[1:]))
        assert len(chunks) >= min(n_images, MIN_CHUNKS) or n_images * bytes_per_image < MIN_CHUNKS * MIN_CHUNK_BYTES
        # a small layer: fewer chunks (a power of two), each with MIN_CHUNK_BYTES of work unless it is alone
        assert len(chunks) in (n_images, 1, 2, 4) or len(chunks) % MIN_CHUNKS == 0
        assert len(chunks) == 1 or min(b - a for a, b in chunks) * bytes_per_image >= MIN_CHUNK_BYTES
    assert len(image_chunks(256, 4 << 10)) == 4  # 1 MB of work in all: 4 chunks of 256 KB

    chunks = image_chunks(300, 1 << 20)
    for threads in (1, 2):  # each chunk is run once, by whichever thread takes it
        numba.set_num_threads(threads)
        seen = []
        run_chunks(chunks, lambda share: seen.extend(share))
        assert sorted(seen) == [(i, start, stop) for i, (start, stop) in enumerate(chunks)]
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)

    def fail(share):
        raise ValueError("chunk failed")

    with pytest.raises(ValueError, match="chunk failed"):
        run_chunks(chunks, fail)


def test_blas_threads_are_single_inside_numcnn_and_restored_after():
    """numcnn's GEMM kernels run BLAS on one thread (kernels.parallel) and give the user's setting back when
    the outermost of nested uses leaves."""
    from threadpoolctl import threadpool_info

    from numcnn.kernels.parallel import single_threaded_blas

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    before = blas_threads()
    with single_threaded_blas():
        with single_threaded_blas():
            pass
        inside = blas_threads()  # still inside the outer use
    assert inside == [1] * len(before) and blas_threads() == before
    fast.conv2d_forward(np.ones((2, 5, 5, 1), np.float32), np.ones((3, 3, 1, 2), np.float32), np.zeros(2, np.float32))
    assert blas_threads() == before


def test_numba_runs_on_openmp_with_sleeping_idle_threads():
    """numcnn's import picks Numba's OpenMP layer (a parallel loop starts in microseconds, not tens of them)
    and makes OpenMP's idle threads sleep instead of spinning on the cores BLAS needs (README, Performance)."""
    if os.environ.get("NUMBA_THREADING_LAYER", "default") != "default":
        pytest.skip("the environment chose its own threading layer")
    fast.maxpool2d_forward(np.zeros((2, 2, 2, 1), np.float32))  # starts Numba's threads
    assert numba.threading_layer() == "omp"
    assert os.environ["OMP_WAIT_POLICY"] == "passive"


def test_elementwise_and_max_pooling_give_the_same_bits_on_one_thread_and_on_all(monkeypatch):
    """Below ``parallel.PARALLEL_MIN_ELEMENTS`` ReLU, leaky ReLU, sigmoid, dropout and max pooling run on the
    calling thread, above it in parallel blocks: both paths must give the same bits, and the formulas' results."""
    from numcnn.kernels import activations, normalization, parallel, pool

    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 24, 24, 8)).astype(np.float32)
    x[0, 0, :2] = 0.0  # zeros and a tie inside a pooling window
    dy = rng.normal(size=x.shape).astype(np.float32)
    keep = rng.random(x.shape) >= 0.3
    pooled_dy = rng.normal(size=(4, 12, 12, 8)).astype(np.float32)

    def everything():
        relu, relu_cache = activations.relu_forward(x)
        leaky, leaky_cache = activations.leaky_relu_forward(x, 0.2)
        dropped, drop_cache = normalization.dropout_forward(x, keep, 0.3)
        pooled, pool_cache = pool.maxpool2d_forward(x)
        return [relu, activations.relu_backward(dy, relu_cache),
                leaky, activations.leaky_relu_backward(dy, leaky_cache), dropped, normalization.dropout_backward(dy, drop_cache), pooled,
                pool.maxpool2d_backward(pooled_dy, pool_cache), activations.sigmoid_forward(x)[0]]

    monkeypatch.setattr(parallel, "PARALLEL_MIN_ELEMENTS", 1 << 40)
    serial = everything()
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ELEMENTS", 1)
    monkeypatch.setattr(parallel, "thread_count", lambda: 2)
    in_parallel = everything()
    for a, b in zip(serial, in_parallel):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(serial[0], np.maximum(x, 0))
    np.testing.assert_array_equal(serial[3], np.where(x > 0, dy, np.float32(0.2) * dy))
    np.testing.assert_array_equal(serial[4], np.where(keep, x * np.float32(1 / 0.7), 0))
    np.testing.assert_array_equal(serial[6], x.reshape(4, 12, 2, 12, 2, 8).max(axis=(2, 4)))
    e, one = np.exp(-np.abs(x)), np.float32(1)  # the stable sigmoid's formula, in NumPy's operations
    np.testing.assert_array_equal(serial[8], np.where(x >= 0, one, e) / (one + e))


@pytest.mark.parametrize("window, strides, padding", [((2, 2), (2, 2), "valid"), ((3, 3), (2, 2), "same"),
                                                      ((3, 2), (1, 2), "same")])
def test_max_pooling_compiled_per_window_gives_the_generic_scans_bits(window, strides, padding):
    """``pool.maxpool_images`` (compiled per window size, the fused kernels' pooling) against the scan of
    ``pool.pool_window_row`` (any window size), bit for bit: a bias added before comparing, ReLU after, ties,
    NaN and -0.0 (which adding a zero bias would turn into +0.0); and the backward, compiled per window size
    too, against ``pool.route_window_row`` (overlapping windows add up in the same order)."""
    from numcnn.kernels import pool

    rng = np.random.default_rng(8)
    x = rng.integers(-2, 3, size=(3, 11, 10, 17)).astype(np.float32)  # small integers: many ties
    x[0, 0, 0, 0], x[1, 3, 3, :4] = np.nan, -0.0
    oh, ow, (top, _, left, _) = reference.conv2d_geometry(x.shape, window, strides, padding)
    for bias in (np.zeros(0, np.float32), rng.normal(size=17).astype(np.float32)):
        for relu in (False, True):
            got = np.empty((3, oh, ow, 17), np.float32), np.empty((3, oh, ow, 17), np.int32)
            want = np.empty_like(got[0]), np.empty_like(got[1])
            pool.maxpool_images(x, bias, relu, *window, *strides, top, left, *got)
            buffers = (np.empty(17, np.float32), np.empty(17, np.float32), np.empty(17, np.int32),
                       np.empty(17, np.int32))
            for n in range(3):
                for r in range(oh):
                    pool.pool_window_row(x[n], 0, bias, relu, r, 11, 10, *window, *strides, top, left, buffers,
                                         want[0][n, r], want[1][n, r])
            np.testing.assert_array_equal(got[0].view(np.int32), want[0].view(np.int32))
            np.testing.assert_array_equal(got[1], want[1])
            dy = rng.normal(size=got[0].shape).astype(np.float32)
            dx = pool.maxpool2d_backward(dy, (x.shape, got[1], (*window, *strides, top, left)),
                                         relu_output=got[0] if relu else None)
            dx_want, masked = np.zeros_like(x), np.empty((ow, 17), np.float32)
            for n in range(3):
                for r in range(oh):
                    pool.route_window_row(dy[n, r], got[0][n, r], relu, got[1][n, r], r, 11, 10, *window, *strides,
                                          top, left, 0, masked, np.zeros(17, np.float32), dx_want[n])
            np.testing.assert_array_equal(dx.view(np.int32), dx_want.view(np.int32))


def test_dense_row_chunks_split_only_products_worth_a_thread():
    """One chunk below ``MIN_CHUNK_MULTIPLY_ADDS`` of work or 2 x ``ROWS_PER_CHUNK`` rows; else a power of two
    (8 at most) of near-equal chunks covering every row, each above both minimums."""
    from numcnn.kernels.dense import MIN_CHUNK_MULTIPLY_ADDS, ROWS_PER_CHUNK, row_chunks

    assert row_chunks(128, 576 * 64) == [(0, 128)]  # the seed model's dense layer at batch 128: 4.7 M
    assert len(row_chunks(1000, 576 * 64)) == 2 and len(row_chunks(100, 1 << 30)) == 1
    for n_rows, per_row in ((1, 1), (127, 1 << 22), (1000, 576 * 64), (4096, 4096 * 128), (333, 1 << 20)):
        chunks = row_chunks(n_rows, per_row)
        assert chunks[0][0] == 0 and chunks[-1][1] == n_rows
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        assert len(chunks) in (1, 2, 4, 8)
        sizes = [stop - start for start, stop in chunks]
        assert max(sizes) - min(sizes) <= 1
        assert len(chunks) == 1 or (min(sizes) >= ROWS_PER_CHUNK
                                    and min(sizes) * per_row >= MIN_CHUNK_MULTIPLY_ADDS)
