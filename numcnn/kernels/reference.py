"""Formula-literal reference kernels: slow, plain loops that read like the math. They are the spec.

Every function here has a fast twin with the same signature and the same results in
``numcnn.kernels`` (``conv.py``, ``pool.py``, ``dense.py``, ``resample.py``, ``activations.py``); the tests check that
they agree. Read these to learn; the fast ones are what runs.

Contract (cs231n style): ``y, cache = op_forward(...)`` and ``grads = op_backward(dy, cache)``.
Layout is NHWC: ``x[n, row, col, channel]``; conv kernels are ``w[kh, kw, c_in, c_out]`` (Keras's HWIO).

Notation of the source document (sections 3.1-3.3) and what it means exactly:

* 3.1 convolution, ``y_ij = f(sum_k x_ik * w_kj + b_j)``: ``i`` is an output position, ``k`` runs over
  one receptive field (rows, columns *and* input channels), ``j`` is the output channel. Exactly::

      y[n, r, c, j] = b[j] + sum_{p, q, k} x_pad[n, r*sh + p, c*sw + q, k] * w[p, q, k, j]

  (the activation ``f`` is a separate op).
* 3.2 max pooling, ``y_i = max(x_{2i-1}, x_{2i})`` is the 1-D, size-2 case of::

      y[n, r, c, k] = max_{p < ph, q < pw} x_pad[n, r*sh + p, c*sw + q, k]     (padding is -inf)

* 3.3 dense, ``y_j = f(sum_i x_i * w_ij + b_j)``: ``y[n, j] = b[j] + sum_i x[n, i] * w[i, j]``.
"""

from __future__ import annotations

import math

import numpy as np

from .geometry import output_size_and_padding


# --------------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------------
def pad_nhwc(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """Pad rows by ``(top, bottom)`` and columns by ``(left, right)``; ``pads = (top, bottom, left, right)``."""
    top, bottom, left, right = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def conv2d_geometry(x_shape, w_shape, strides, padding, size_along=output_size_and_padding):
    """Output height/width and the ``(top, bottom, left, right)`` padding of a Conv2D or pooling window
    (``size_along`` gives ``(out, before, after)`` for one axis; Conv2DTranspose passes its own)."""
    _, height, width, _ = x_shape
    kh, kw = w_shape[:2]
    sh, sw = strides
    oh, top, bottom = size_along(height, kh, sh, padding)
    ow, left, right = size_along(width, kw, sw, padding)
    return oh, ow, (top, bottom, left, right)


def conv2d_forward(x, w, b, strides=(1, 1), padding="valid"):
    """Forward convolution (cross-correlation, as in every DL framework).

    ``y[n, r, c, j] = b[j] + sum_{p, q, k} x_pad[n, r*sh + p, c*sw + q, k] * w[p, q, k, j]``

    Shapes: x (N, H, W, C_in), w (KH, KW, C_in, C_out), b (C_out,) -> y (N, OH, OW, C_out).
    """
    n_images, _, _, _ = x.shape
    kh, kw, _, c_out = w.shape
    sh, sw = strides
    oh, ow, pads = conv2d_geometry(x.shape, w.shape, strides, padding)
    x_pad = pad_nhwc(x, pads)
    y = np.zeros((n_images, oh, ow, c_out), dtype=x.dtype)
    for n in range(n_images):
        for r in range(oh):
            for c in range(ow):
                field = x_pad[n, r * sh : r * sh + kh, c * sw : c * sw + kw, :]  # (KH, KW, C_in)
                for j in range(c_out):
                    y[n, r, c, j] = b[j] + np.sum(field * w[:, :, :, j])
    return y, (x, w, strides, pads)


def conv2d_backward(dy, cache, need_dx=True):
    """Backward convolution: every product ``x_pad[..] * w[p, q, k, j]`` in the forward sum sends
    ``dy[n, r, c, j]`` back to both factors::

        dx_pad[n, r*sh + p, c*sw + q, k] += dy[n, r, c, j] * w[p, q, k, j]
        dw[p, q, k, j]                  += dy[n, r, c, j] * x_pad[n, r*sh + p, c*sw + q, k]
        db[j]                           += dy[n, r, c, j]

    then ``dx`` is ``dx_pad`` with the padding cut off. Returns ``(dx, dw, db)`` (``dx`` None if not
    ``need_dx``).
    """
    x, w, strides, pads = cache
    kh, kw, _, _ = w.shape
    sh, sw = strides
    top, _, left, _ = pads
    x_pad = pad_nhwc(x, pads)
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = np.zeros(w.shape[3], dtype=w.dtype)
    n_images, oh, ow, _ = dy.shape
    for n in range(n_images):
        for r in range(oh):
            for c in range(ow):
                rows = slice(r * sh, r * sh + kh)
                cols = slice(c * sw, c * sw + kw)
                g = dy[n, r, c, :]  # (C_out,)
                dx_pad[n, rows, cols, :] += np.sum(w * g, axis=3)
                dw += x_pad[n, rows, cols, :, np.newaxis] * g
                db += g
    if not need_dx:
        return None, dw, db
    height, width = x.shape[1:3]
    dx = dx_pad[:, top : top + height, left : left + width, :]
    return np.ascontiguousarray(dx), dw, db


# --------------------------------------------------------------------------------------------
# Max pooling
# --------------------------------------------------------------------------------------------
def maxpool2d_forward(x, pool_size=(2, 2), strides=None, padding="valid"):
    """Max pooling, each channel separately; 'same' pads with -inf so padding never wins.

    ``y[n, r, c, k] = max_{p < ph, q < pw} x_pad[n, r*sh + p, c*sw + q, k]``

    The cache records, per output, the input position of the **first** maximum in row-major order
    within the window: that is where TF sends the gradient when several entries tie.
    Shapes: x (N, H, W, C) -> y (N, OH, OW, C).
    """
    strides = pool_size if strides is None else strides
    ph, pw = pool_size
    sh, sw = strides
    n_images, _, _, channels = x.shape
    oh, ow, pads = conv2d_geometry(x.shape, pool_size, strides, padding)
    top, _, left, _ = pads
    x_pad = pad_nhwc(x, pads, value=-np.inf)
    y = np.zeros((n_images, oh, ow, channels), dtype=x.dtype)
    winner = np.zeros((n_images, oh, ow, channels, 2), dtype=np.int64)  # (row, col) in x
    for n in range(n_images):
        for r in range(oh):
            for c in range(ow):
                for k in range(channels):
                    best, best_at = -np.inf, None
                    for p in range(ph):
                        for q in range(pw):
                            value = x_pad[n, r * sh + p, c * sw + q, k]
                            if best_at is None or value > best:  # strict '>': the first max wins
                                best, best_at = value, (r * sh + p - top, c * sw + q - left)
                    y[n, r, c, k] = best
                    winner[n, r, c, k] = best_at
    return y, (x.shape, winner)


def maxpool2d_backward(dy, cache):
    """Each output's gradient goes to its window's (first) maximum; overlapping windows **add up**::

        dx[n, winner_row, winner_col, k] += dy[n, r, c, k]
    """
    x_shape, winner = cache
    dx = np.zeros(x_shape, dtype=dy.dtype)
    n_images, oh, ow, channels = dy.shape
    for n in range(n_images):
        for r in range(oh):
            for c in range(ow):
                for k in range(channels):
                    row, col = winner[n, r, c, k]
                    dx[n, row, col, k] += dy[n, r, c, k]
    return dx


# --------------------------------------------------------------------------------------------
# Conv2D -> activation -> MaxPooling2D (the fast kernels fuse the three; the spec is the chain)
# --------------------------------------------------------------------------------------------
def conv_pool_forward(x, w, b, conv_strides=(1, 1), conv_padding="valid", pool_size=(2, 2), pool_strides=None,
                      pool_padding="valid", relu=True):
    """``y = maxpool(f(conv(x, w) + b))``, ``f`` = ReLU if ``relu`` else identity: the three ops in a row."""
    z, conv_cache = conv2d_forward(x, w, b, conv_strides, conv_padding)
    a, relu_cache = relu_forward(z) if relu else (z, None)
    y, pool_cache = maxpool2d_forward(a, pool_size, pool_strides, pool_padding)
    return y, (conv_cache, relu_cache, pool_cache)


def conv_pool_backward(dy, cache, need_dx=True):
    """The chain rule through the three ops, last one first: pool, ReLU, conv."""
    conv_cache, relu_cache, pool_cache = cache
    da = maxpool2d_backward(dy, pool_cache)
    dz = da if relu_cache is None else relu_backward(da, relu_cache)
    return conv2d_backward(dz, conv_cache, need_dx)


# --------------------------------------------------------------------------------------------
# Dense
# --------------------------------------------------------------------------------------------
def dense_forward(x, w, b):
    """``y[n, j] = b[j] + sum_i x[n, i] * w[i, j]``. Shapes: x (N, I), w (I, J), b (J,) -> y (N, J)."""
    n_rows, n_in = x.shape
    n_out = w.shape[1]
    y = np.zeros((n_rows, n_out), dtype=x.dtype)
    for n in range(n_rows):
        for j in range(n_out):
            y[n, j] = b[j] + sum(x[n, i] * w[i, j] for i in range(n_in))
    return y, (x, w)


def dense_backward(dy, cache, need_dx=True):
    """``dx[n, i] = sum_j dy[n, j] w[i, j]``; ``dw[i, j] = sum_n x[n, i] dy[n, j]``; ``db[j] = sum_n dy[n, j]``."""
    x, w = cache
    n_rows, n_in = x.shape
    n_out = w.shape[1]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for n in range(n_rows):
        for i in range(n_in):
            dx[n, i] = sum(dy[n, j] * w[i, j] for j in range(n_out))
    for i in range(n_in):
        for j in range(n_out):
            dw[i, j] = sum(x[n, i] * dy[n, j] for n in range(n_rows))
    db = np.array([sum(dy[n, j] for n in range(n_rows)) for j in range(n_out)], dtype=dy.dtype)
    return (dx if need_dx else None), dw, db


# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------
def relu_forward(x):
    """``y = max(x, 0)`` elementwise."""
    y = np.where(x > 0, x, np.zeros_like(x))
    return y, x


def relu_backward(dy, x):
    """``dx = dy`` where ``x > 0``, else 0 (the derivative at exactly 0 is taken as 0, as TF does)."""
    return np.where(x > 0, dy, np.zeros_like(dy))


def softmax_forward(z):
    """``p_j = exp(z_j - max z) / sum_k exp(z_k - max z)`` over the last axis.

    Subtracting ``max z`` changes nothing mathematically (it cancels) but keeps ``exp`` from overflowing.
    """
    p = np.zeros_like(z)
    for index in np.ndindex(z.shape[:-1]):
        row = z[index]
        e = np.exp(row - np.max(row))
        p[index] = e / np.sum(e)
    return p, p


def softmax_backward(dy, p):
    """Jacobian ``dp_j/dz_i = p_j (delta_ij - p_i)``, so ``dz_i = p_i (dy_i - sum_j dy_j p_j)``."""
    dz = np.zeros_like(dy)
    for index in np.ndindex(dy.shape[:-1]):
        dz[index] = p[index] * (dy[index] - np.sum(dy[index] * p[index]))
    return dz


# --------------------------------------------------------------------------------------------
# Average pooling, global pooling, upsampling, zero padding (the pooling and shape layers)
# --------------------------------------------------------------------------------------------
def _inside(index, size):
    return 0 <= index < size


def avgpool2d_forward(x, pool_size=(2, 2), strides=None, padding="valid"):
    """Average pooling, each channel separately, over the window cells that lie **inside** the image::

        y[n, r, c, k] = (1 / |W_rc|) * sum_{(i, j) in W_rc} x[n, i, j, k]
        W_rc = {(r*sh + p - top, c*sw + q - left) : p < ph, q < pw} ∩ image

    'valid' windows are always whole (``|W_rc| = ph * pw``); 'same' cuts TF's asymmetric padding off and
    divides by what is left (TF's rule: padding is not averaged). Shapes: x (N, H, W, C) -> y (N, OH, OW, C).
    """
    strides = pool_size if strides is None else strides
    ph, pw = pool_size
    sh, sw = strides
    n_images, height, width, channels = x.shape
    oh, ow, (top, _, left, _) = conv2d_geometry(x.shape, pool_size, strides, padding)
    y = np.zeros((n_images, oh, ow, channels), dtype=x.dtype)
    for n in range(n_images):
        for r in range(oh):
            for c in range(ow):
                for k in range(channels):
                    total, count = x.dtype.type(0), 0
                    for p in range(ph):
                        for q in range(pw):
                            i, j = r * sh + p - top, c * sw + q - left
                            if _inside(i, height) and _inside(j, width):
                                total += x[n, i, j, k]
                                count += 1
                    y[n, r, c, k] = total / x.dtype.type(count)
    return y, (x.shape, pool_size, strides, (top, left))


def avgpool2d_backward(dy, cache):
    """``y`` is a sum of ``x / |W_rc|`` terms, so each output sends ``dy / |W_rc|`` to every cell of its window;
    overlapping windows **add up**::

        dx[n, i, j, k] += dy[n, r, c, k] / |W_rc|      for every (i, j) in W_rc
    """
    x_shape, (ph, pw), (sh, sw), (top, left) = cache
    _, height, width, _ = x_shape
    dx = np.zeros(x_shape, dtype=dy.dtype)
    n_images, oh, ow, channels = dy.shape
    for n in range(n_images):
        for r in range(oh):
            for c in range(ow):
                window = [(r * sh + p - top, c * sw + q - left) for p in range(ph) for q in range(pw)]
                window = [(i, j) for i, j in window if _inside(i, height) and _inside(j, width)]
                for k in range(channels):
                    share = dy[n, r, c, k] / dy.dtype.type(len(window))
                    for i, j in window:
                        dx[n, i, j, k] += share
    return dx


def global_avgpool2d_forward(x):
    """``y[n, k] = (1 / (H W)) * sum_{i < H, j < W} x[n, i, j, k]``. Shapes: (N, H, W, C) -> (N, C)."""
    n_images, height, width, channels = x.shape
    y = np.zeros((n_images, channels), dtype=x.dtype)
    for n in range(n_images):
        for k in range(channels):
            total = x.dtype.type(0)
            for i in range(height):
                for j in range(width):
                    total += x[n, i, j, k]
            y[n, k] = total / x.dtype.type(height * width)
    return y, x.shape


def global_avgpool2d_backward(dy, x_shape):
    """Every pixel enters the mean with weight ``1 / (H W)``: ``dx[n, i, j, k] = dy[n, k] / (H W)``."""
    n_images, height, width, channels = x_shape
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for n in range(n_images):
        for i in range(height):
            for j in range(width):
                for k in range(channels):
                    dx[n, i, j, k] = dy[n, k] / dy.dtype.type(height * width)
    return dx


def global_maxpool2d_forward(x):
    """``y[n, k] = max_{i < H, j < W} x[n, i, j, k]``. Shapes: (N, H, W, C) -> (N, C)."""
    n_images, height, width, channels = x.shape
    y = np.zeros((n_images, channels), dtype=x.dtype)
    for n in range(n_images):
        for k in range(channels):
            best = x[n, 0, 0, k]
            for i in range(height):
                for j in range(width):
                    best = max(best, x[n, i, j, k])
            y[n, k] = best
    return y, (x, y)


def global_maxpool2d_backward(dy, cache):
    """Where several positions tie for the maximum, TF's gradient of ``reduce_max`` (what Keras's
    GlobalMaxPooling2D differentiates) splits ``dy`` evenly among them; one maximum gets all of it::

        dx[n, i, j, k] = dy[n, k] / T[n, k]  if x[n, i, j, k] == y[n, k]  else 0,
        T[n, k] = the number of positions (i, j) with x[n, i, j, k] == y[n, k]

    (MaxPooling2D's TF kernel instead sends a tie's gradient to the first maximum only.)
    """
    x, y = cache
    n_images, height, width, channels = x.shape
    dx = np.zeros(x.shape, dtype=dy.dtype)
    for n in range(n_images):
        for k in range(channels):
            winners = [(i, j) for i in range(height) for j in range(width) if x[n, i, j, k] == y[n, k]]
            for i, j in winners:
                dx[n, i, j, k] = dy[n, k] / dy.dtype.type(len(winners))
    return dx


def upsampling2d_forward(x, size=(2, 2), interpolation="nearest"):
    """Upsampling by ``size = (sh, sw)``. Shapes: (N, H, W, C) -> (N, H*sh, W*sw, C).

    * ``"nearest"``: ``y[n, r, c, k] = x[n, r // sh, c // sw, k]``.
    * ``"bilinear"``: with ``(a, b, ly) = bilinear_taps(H, sh)[r]`` and ``(c0, c1, lx) = bilinear_taps(W, sw)[c]``,
      the two rows, two columns and weights output ``(r, c)`` reads (TF's order of operations)::

          top    = x[n, a, c0, k] + (x[n, a, c1, k] - x[n, a, c0, k]) * lx
          bottom = x[n, b, c0, k] + (x[n, b, c1, k] - x[n, b, c0, k]) * lx
          y[n, r, c, k] = top + (bottom - top) * ly
    """
    sh, sw = size
    n_images, height, width, channels = x.shape
    y = np.zeros((n_images, height * sh, width * sw, channels), dtype=x.dtype)
    rows, cols = bilinear_taps(height, sh), bilinear_taps(width, sw)
    for n in range(n_images):
        for r in range(height * sh):
            for c in range(width * sw):
                for k in range(channels):
                    if interpolation == "nearest":
                        y[n, r, c, k] = x[n, r // sh, c // sw, k]
                        continue
                    (a, b, ly), (c0, c1, lx) = rows[r], cols[c]
                    ly, lx = x.dtype.type(ly), x.dtype.type(lx)
                    top = x[n, a, c0, k] + (x[n, a, c1, k] - x[n, a, c0, k]) * lx
                    bottom = x[n, b, c0, k] + (x[n, b, c1, k] - x[n, b, c0, k]) * lx
                    y[n, r, c, k] = top + (bottom - top) * ly
    return y, (x.shape, (sh, sw), interpolation)


def bilinear_taps(in_size: int, scale: int):
    """Where each output of bilinear upsampling reads along one axis, as TF's ResizeBilinear computes it
    (half-pixel centres; float32 arithmetic, which TF uses for every input dtype): output ``o`` sits at
    input position ``source = (o + 1/2) * (in_size / out_size) - 1/2`` and reads ``lower = max(floor(source), 0)``
    and ``upper = min(ceil(source), in_size - 1)`` with weight ``lerp = source - floor(source)`` on ``upper``
    (beyond the edges both are the edge pixel). Returns ``[(lower, upper, lerp)]`` for ``o < in_size * scale``."""
    f32 = np.float32
    ratio = f32(in_size) / f32(in_size * scale)
    taps = []
    for o in range(in_size * scale):
        source = (f32(o) + f32(0.5)) * ratio - f32(0.5)
        floor = np.floor(source)
        taps.append((max(int(floor), 0), min(int(np.ceil(source)), in_size - 1), source - floor))
    return taps


def upsampling2d_backward(dy, cache):
    """Each output is a weighted sum of input pixels; each pixel gets back ``dy`` times its weight.

    * ``"nearest"``: ``x[n, i, j, k]`` was copied to every ``(r, c)`` with ``r // sh = i`` and ``c // sw = j``::

          dx[n, i, j, k] = sum_{a < sh, b < sw} dy[n, i*sh + a, j*sw + b, k]

    * ``"bilinear"``: ``y = (1-ly)(1-lx) x[a, c0] + (1-ly) lx x[a, c1] + ly (1-lx) x[b, c0] + ly lx x[b, c1]``, so
      (with TF's ``1 - lerp`` in float32; where ``a == b`` or ``c0 == c1`` the shares land on one pixel)::

          dx[n, a, c0, k] += dy[n, r, c, k] (1-ly) (1-lx)      dx[n, a, c1, k] += dy[n, r, c, k] (1-ly) lx
          dx[n, b, c0, k] += dy[n, r, c, k] ly (1-lx)          dx[n, b, c1, k] += dy[n, r, c, k] ly lx
    """
    x_shape, (sh, sw), interpolation = cache
    dx = np.zeros(x_shape, dtype=dy.dtype)
    n_images, out_h, out_w, channels = dy.shape
    rows, cols = bilinear_taps(x_shape[1], sh), bilinear_taps(x_shape[2], sw)
    one, t = np.float32(1), dy.dtype.type
    for n in range(n_images):
        for r in range(out_h):
            for c in range(out_w):
                for k in range(channels):
                    if interpolation == "nearest":
                        dx[n, r // sh, c // sw, k] += dy[n, r, c, k]
                        continue
                    (a, b, ly), (c0, c1, lx) = rows[r], cols[c]
                    d_top, d_bottom = dy[n, r, c, k] * t(one - ly), dy[n, r, c, k] * t(ly)
                    dx[n, a, c0, k] += d_top * t(one - lx)
                    dx[n, a, c1, k] += d_top * t(lx)
                    dx[n, b, c0, k] += d_bottom * t(one - lx)
                    dx[n, b, c1, k] += d_bottom * t(lx)
    return dx


def zero_padding2d_forward(x, padding=((1, 1), (1, 1))):
    """``y[n, top + i, left + j, k] = x[n, i, j, k]``, zero in the ``top``/``bottom`` rows and ``left``/``right``
    columns. Shapes: (N, H, W, C) -> (N, top + H + bottom, left + W + right, C)."""
    (top, bottom), (left, right) = padding
    n_images, height, width, channels = x.shape
    y = np.zeros((n_images, top + height + bottom, left + width + right, channels), dtype=x.dtype)
    for n in range(n_images):
        for i in range(height):
            for j in range(width):
                for k in range(channels):
                    y[n, top + i, left + j, k] = x[n, i, j, k]
    return y, (x.shape, ((top, bottom), (left, right)))


def zero_padding2d_backward(dy, cache):
    """Only ``y[n, top + i, left + j, k]`` depends on ``x[n, i, j, k]`` (with slope 1), so
    ``dx[n, i, j, k] = dy[n, top + i, left + j, k]``: the gradient cropped."""
    x_shape, ((top, _), (left, _)) = cache
    n_images, height, width, channels = x_shape
    dx = np.zeros(x_shape, dtype=dy.dtype)
    for n in range(n_images):
        for i in range(height):
            for j in range(width):
                for k in range(channels):
                    dx[n, i, j, k] = dy[n, top + i, left + j, k]
    return dx


# --------------------------------------------------------------------------------------------
# Batch normalization (statistics per channel = the last axis, over every other axis)
# --------------------------------------------------------------------------------------------
def batchnorm_moments(x):
    """The batch's statistics of each channel ``c`` over all ``M`` values ``x[..., c]`` (N*H*W of them)::

        mean[c] = (1/M) sum x[..., c]          var[c] = (1/M) sum (x[..., c] - mean[c])^2

    The variance is the **biased** one (divided by M, not M - 1), as Keras and TF normalise with. Both are
    summed in float64 and rounded to x's dtype once.
    """
    channels = x.shape[-1]
    mean = np.zeros(channels, dtype=x.dtype)
    var = np.zeros(channels, dtype=x.dtype)
    for c in range(channels):
        values = x[..., c].astype(np.float64).ravel()  # every value of channel c in the batch
        m = len(values)
        mean_c = sum(values) / m
        mean[c] = mean_c
        var[c] = sum((v - mean_c) ** 2 for v in values) / m
    return mean, var


def batchnorm_forward(x, gamma, beta, mean, var, epsilon, batch_statistics):
    """``y[..., c] = gamma[c] * xhat[..., c] + beta[c]`` with ``xhat = (x - mean[c]) / sqrt(var[c] + eps)``.

    ``mean``/``var`` are the batch's own (``batch_statistics=True``, training) or the moving statistics
    (inference). Shapes: x (..., C); gamma, beta, mean, var (C,).
    """
    eps = x.dtype.type(epsilon)
    y = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        c = index[-1]
        xhat = (x[index] - mean[c]) / np.sqrt(var[c] + eps)
        y[index] = gamma[c] * xhat + beta[c]
    return y, (x, gamma, mean, var, eps, batch_statistics)


def batchnorm_backward(dy, cache):
    """Returns ``(dx, dgamma, dbeta)``; per channel, with ``M`` values and ``s = sqrt(var + eps)``::

        dbeta  = sum dy                 dgamma = sum dy * xhat
        dx     = gamma / s * (dy - dbeta / M - xhat * dgamma / M)      (batch statistics: they depend on x)
        dx     = gamma / s * dy                                         (moving statistics: constants)

    The first ``dx`` is the chain rule through ``mean`` and ``var`` too: ``d mean / dx = 1/M`` and
    ``d var / dx = 2 (x - mean) / M`` add the two correction terms (see ``numcnn.layers.normalization``).
    """
    x, gamma, mean, var, eps, batch_statistics = cache
    dx = np.zeros_like(x)
    channels = x.shape[-1]
    dgamma = np.zeros(channels, dtype=x.dtype)
    dbeta = np.zeros(channels, dtype=x.dtype)
    for c in range(channels):
        s = np.sqrt(var[c] + eps)
        xhat = (x[..., c] - mean[c]) / s
        g = dy[..., c]
        m = g.size
        dbeta[c] = np.sum(g.astype(np.float64))
        dgamma[c] = np.sum((g * xhat).astype(np.float64))
        if batch_statistics:
            dx[..., c] = gamma[c] / s * (g - dbeta[c] / m - xhat * (dgamma[c] / m))
        else:
            dx[..., c] = gamma[c] / s * g
    return dx, dgamma, dbeta


# --------------------------------------------------------------------------------------------
# Dropout (inverted: the kept units are scaled up at training time, inference is the identity)
# --------------------------------------------------------------------------------------------
def dropout_forward(x, keep, rate):
    """``y = x * 1/(1 - rate)`` where ``keep`` is True, else 0; ``keep`` broadcasts to x (``noise_shape``).

    Scaling the kept units by ``1/(1 - rate)`` keeps every unit's expectation: ``E[y] = (1 - rate) x / (1 - rate)
    = x``, so inference can use the network unchanged.
    """
    scale = x.dtype.type(1 / (1 - rate))
    keep = np.broadcast_to(keep, x.shape)
    y = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        if keep[index]:
            y[index] = x[index] * scale
    return y, (keep, scale)


def dropout_backward(dy, cache):
    """``dx = dy * 1/(1 - rate)`` where the unit was kept, else 0."""
    keep, scale = cache
    dx = np.zeros_like(dy)
    for index in np.ndindex(dy.shape):
        if keep[index]:
            dx[index] = dy[index] * scale
    return dx


# --------------------------------------------------------------------------------------------
# Transposed convolution (Conv2DTranspose)
# --------------------------------------------------------------------------------------------
def conv2d_transpose_output_size(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int, int]:
    """``(out, crop_before, crop_after)`` of a transposed convolution along one axis, as Keras 3 computes it.

    ``out = (size - 1) * stride + max(kernel, stride)`` ('valid') or ``size * stride`` ('same'): the size of
    the image whose Conv2D (same kernel, stride and padding) has ``size`` outputs. The transpose computes
    the full sum (``(size - 1) * stride + kernel`` rows and more) and crops what that Conv2D would have
    padded: TF's asymmetric rule, ``pad_total = max((size - 1) * stride + kernel - out, 0)``, the smaller
    half before (top/left), the extra row after (bottom/right).
    """
    if padding == "valid":
        out = (size - 1) * stride + max(kernel, stride)
    else:
        out = size * stride
    conv_out, before, after = output_size_and_padding(out, kernel, stride, padding)
    assert conv_out == size, "the Conv2D of the transpose's output must give back the input size"
    return out, before, after


def conv2d_transpose_geometry(x_shape, w_shape, strides, padding):
    """Output height/width of a Conv2DTranspose and the ``(top, bottom, left, right)`` crop of its full sum."""
    return conv2d_geometry(x_shape, w_shape, strides, padding, size_along=conv2d_transpose_output_size)


def conv2d_transpose_forward(x, w, b, strides=(1, 1), padding="valid"):
    """Transposed convolution: every input pixel adds a copy of the kernel, scaled by its values, to the
    output, ``strides`` apart; where copies overlap they add up::

        y_full[n, r*sh + p, c*sw + q, j] += x[n, r, c, k] * w[p, q, j, k]
        y[n, i, l, j] = b[j] + y_full[n, top + i, left + l, j]          (the crop of 'same')

    Read against ``conv2d_backward``: this is ``dx_pad`` of a Conv2D with kernel ``w`` (HWIO with
    I = filters, O = C_in), whose output gradient is ``x``. Shapes: x (N, H, W, C_in), w (KH, KW, F, C_in)
    (Keras's layout: out before in), b (F,) -> y (N, OH, OW, F), sizes from ``conv2d_transpose_geometry``.
    """
    n_images, height, width, _ = x.shape
    kh, kw, filters, _ = w.shape
    sh, sw = strides
    oh, ow, pads = conv2d_transpose_geometry(x.shape, w.shape, strides, padding)
    top, bottom, left, right = pads
    y_full = np.zeros((n_images, top + oh + bottom, left + ow + right, filters), dtype=x.dtype)
    for n in range(n_images):
        for r in range(height):
            for c in range(width):
                for p in range(kh):
                    for q in range(kw):
                        # sum over k of x[n, r, c, k] * w[p, q, j, k], for every output channel j
                        y_full[n, r * sh + p, c * sw + q, :] += w[p, q, :, :] @ x[n, r, c, :]
    y = np.ascontiguousarray(y_full[:, top : top + oh, left : left + ow, :])
    y += b
    return y, (x, w, strides, pads)


def conv2d_transpose_backward(dy, cache, need_dx=True):
    """Every product ``x[n, r, c, k] * w[p, q, j, k]`` of the forward sum landed on ``y_full[n, r*sh + p,
    c*sw + q, j]``; its gradient ``g = dy_full`` there goes back to both factors (cropped positions of
    'same' got no gradient: ``dy_full`` is ``dy`` padded with zeros)::

        dx[n, r, c, k]  += dy_full[n, r*sh + p, c*sw + q, j] * w[p, q, j, k]    (a Conv2D of dy with w)
        dw[p, q, j, k]  += dy_full[n, r*sh + p, c*sw + q, j] * x[n, r, c, k]
        db[j]           += dy[n, i, l, j]

    Returns ``(dx, dw, db)`` (``dx`` None if not ``need_dx``).
    """
    x, w, strides, pads = cache
    kh, kw, _, _ = w.shape
    sh, sw = strides
    n_images, height, width, _ = x.shape
    dy_full = pad_nhwc(dy, pads)
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for n in range(n_images):
        for r in range(height):
            for c in range(width):
                for p in range(kh):
                    for q in range(kw):
                        g = dy_full[n, r * sh + p, c * sw + q, :]  # (F,)
                        dx[n, r, c, :] += g @ w[p, q, :, :]       # sum over j of g[j] * w[p, q, j, k]
                        dw[p, q, :, :] += np.outer(g, x[n, r, c, :])
    db = np.sum(dy, axis=(0, 1, 2))
    return (dx if need_dx else None), dw, db


# --------------------------------------------------------------------------------------------
# More activations, one element at a time in float64 (``math``), stored in the input's dtype.
# The cache is the input ``x``: each backward evaluates the derivative's own formula at ``x``.
# --------------------------------------------------------------------------------------------
def _elementwise(function, *arrays):
    """``out[i] = function(a[i], b[i], ...)`` for every index ``i`` of the first array."""
    out = np.empty_like(arrays[0])
    for index in np.ndindex(out.shape):
        out[index] = function(*(float(a[index]) for a in arrays))
    return out


def _sigmoid(v):
    # 1 / (1 + exp(-v)); for v < 0 the same number as exp(v) / (1 + exp(v)), which cannot overflow
    return 1 / (1 + math.exp(-v)) if v >= 0 else math.exp(v) / (1 + math.exp(v))


def sigmoid_forward(x):
    """``y = 1 / (1 + exp(-x))``."""
    return _elementwise(_sigmoid, x), x


def sigmoid_backward(dy, x):
    """``dx = dy * sigmoid(x) * (1 - sigmoid(x))``, with ``1 - sigmoid(x) = sigmoid(-x)``."""
    return _elementwise(lambda g, v: g * _sigmoid(v) * _sigmoid(-v), dy, x)


def tanh_forward(x):
    """``y = tanh(x)``."""
    return _elementwise(math.tanh, x), x


def tanh_backward(dy, x):
    """``dx = dy * (1 - tanh(x)^2) = dy / cosh(x)^2`` (the second form keeps its digits where tanh is near
    1; ``cosh`` overflows beyond |x| = 710, where the derivative is below 1e-300 anyway: 0)."""
    return _elementwise(lambda g, v: g / math.cosh(v) / math.cosh(v) if abs(v) < 700 else 0.0, dy, x)


def elu_forward(x, alpha=1.0):
    """``y = x`` if ``x > 0`` else ``alpha * (exp(x) - 1)`` (``math.expm1(x)`` is ``exp(x) - 1`` exactly)."""
    return _elementwise(lambda v: v if v > 0 else alpha * math.expm1(v), x), (x, alpha)


def elu_backward(dy, cache):
    """``dx = dy`` if ``x > 0`` else ``dy * alpha * exp(x)``."""
    x, alpha = cache
    return _elementwise(lambda g, v: g if v > 0 else g * alpha * math.exp(v), dy, x)


def _normal_cdf(v):
    # Phi(v) = (1 + erf(v / sqrt 2)) / 2, written as erfc(-v / sqrt 2) / 2: no cancellation for v < 0
    return 0.5 * math.erfc(-v / math.sqrt(2))


def gelu_forward(x):
    """``y = x * Phi(x)``, ``Phi`` the standard normal CDF (Keras 3's default, exact form)."""
    return _elementwise(lambda v: v * _normal_cdf(v), x), x


def gelu_backward(dy, x):
    """``dx = dy * (Phi(x) + x * phi(x))``, ``phi(x) = exp(-x^2 / 2) / sqrt(2 pi)`` (product rule)."""
    density = lambda v: math.exp(-v * v / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    return _elementwise(lambda g, v: g * (_normal_cdf(v) + v * density(v)), dy, x)


def leaky_relu_forward(x, negative_slope=0.2):
    """``y = x`` if ``x > 0`` else ``negative_slope * x``."""
    return _elementwise(lambda v: v if v > 0 else negative_slope * v, x), (x, negative_slope)


def leaky_relu_backward(dy, cache):
    """``dx = dy`` if ``x > 0`` else ``negative_slope * dy``."""
    x, negative_slope = cache
    return _elementwise(lambda g, v: g if v > 0 else negative_slope * g, dy, x)


# --------------------------------------------------------------------------------------------
# Winograd F(2x2, 3x3) and F(4x4, 3x3) (Lavin & Gray 2016): a 3x3, stride-1 Conv2D computed tile by tile
# --------------------------------------------------------------------------------------------
# One (m+2)x(m+2) input tile d and one 3x3 filter g give the m x m outputs of the 'valid' correlation of d with
# g as
#
#     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A          (⊙: elementwise)
#
# F(2x2, 3x3): 4x4 tiles, 16 multiplications for 2*2*9 = 36. Every coefficient is 0, ±1 or ±1/2: exact in
# binary floating point.
WINOGRAD_BT = np.array([[1, 0, -1, 0],
                        [0, 1, 1, 0],
                        [0, -1, 1, 0],
                        [0, 1, 0, -1]], dtype=np.float64)  # input transform Bᵀ (4x4)
WINOGRAD_G = np.array([[1, 0, 0],
                       [0.5, 0.5, 0.5],
                       [0.5, -0.5, 0.5],
                       [0, 0, 1]], dtype=np.float64)      # filter transform G (4x3)
WINOGRAD_AT = np.array([[1, 1, 1, 0],
                        [0, 1, -1, -1]], dtype=np.float64)  # output transform Aᵀ (2x4)
# F(4x4, 3x3): 6x6 tiles, 36 multiplications for 4*4*9 = 144 (4x fewer), from the interpolation points
# 0, ±1, ±2 and ∞. The price: larger coefficients (up to 8 in Aᵀ, 5 in Bᵀ) and G's 1/6, 1/12, 1/24, which
# binary floating point cannot hold exactly, so its rounding error is larger (tests/test_winograd.py bounds it).
WINOGRAD4_BT = np.array([[4, 0, -5, 0, 1, 0],
                         [0, -4, -4, 1, 1, 0],
                         [0, 4, -4, -1, 1, 0],
                         [0, -2, -1, 2, 1, 0],
                         [0, 2, -1, -2, 1, 0],
                         [0, 4, 0, -5, 0, 1]], dtype=np.float64)  # input transform Bᵀ (6x6)
WINOGRAD4_G = np.array([[1 / 4, 0, 0],
                        [-1 / 6, -1 / 6, -1 / 6],
                        [-1 / 6, 1 / 6, -1 / 6],
                        [1 / 24, 1 / 12, 1 / 6],
                        [1 / 24, -1 / 12, 1 / 6],
                        [0, 0, 1]], dtype=np.float64)            # filter transform G (6x3)
WINOGRAD4_AT = np.array([[1, 1, 1, 1, 1, 0],
                         [0, 1, -1, 2, -2, 0],
                         [0, 1, 1, 4, 4, 0],
                         [0, 1, -1, 8, -8, 1]], dtype=np.float64)  # output transform Aᵀ (4x6)
# (Bᵀ, G, Aᵀ) by output tile size m
WINOGRAD_MATRICES = {2: (WINOGRAD_BT, WINOGRAD_G, WINOGRAD_AT), 4: (WINOGRAD4_BT, WINOGRAD4_G, WINOGRAD4_AT)}


def winograd_geometry(x_shape, padding, tile=2):
    """``(oh, ow, pads, th, tw)`` of a 3x3 stride-1 conv in ``tile`` x ``tile`` output tiles: ``th = ceil(oh /
    tile)`` tile rows, ``tw = ceil(ow / tile)`` tile columns. Tile ``(i, l)`` reads ``x_pad[m*i : m*i + m+2,
    m*l : m*l + m+2]`` and writes ``y[m*i : m*i + m, m*l : m*l + m]`` (m = ``tile``); ``x_pad`` is the padded
    input, extended with zeros to ``m*th + 2`` rows and ``m*tw + 2`` columns so that the last tiles are whole
    (their extra outputs are cut off)."""
    oh, ow, pads = conv2d_geometry(x_shape, (3, 3), (1, 1), padding)
    return oh, ow, pads, -(-oh // tile), -(-ow // tile)


def winograd_pad(x, pads, th, tw, tile=2):
    """``x`` with the conv's padding (top, left as ``pads``) and zeros to ``(N, m*th + 2, m*tw + 2, C)``."""
    top, _, left, _ = pads
    n_images, height, width, channels = x.shape
    x_pad = np.zeros((n_images, tile * th + 2, tile * tw + 2, channels), dtype=x.dtype)
    x_pad[:, top:top + height, left:left + width, :] = x
    return x_pad


def winograd_conv3x3_forward(x, w, b, padding="valid", tile=2):
    """The same numbers as ``conv2d_forward(x, w, b, (1, 1), padding)`` for a 3x3 kernel, up to rounding,
    computed with Winograd's F(m x m, 3x3) (m = ``tile``, 2 or 4) per tile and per pair of channels::

        U[k, j] = G w[:, :, k, j] Gᵀ                                (a = m+2: a x a, the transformed filter)
        V[k]    = Bᵀ x_pad[n, m*i : m*i + a, m*l : m*l + a, k] B      (a x a, the transformed tile)
        M[j]    = sum_k U[k, j] ⊙ V[k]
        y[n, m*i : m*i + m, m*l : m*l + m, j] = b[j] + Aᵀ M[j] A

    Shapes: x (N, H, W, C_in), w (3, 3, C_in, C_out), b (C_out,) -> y (N, OH, OW, C_out).
    """
    if w.shape[:2] != (3, 3):
        raise ValueError(f"Winograd F({tile}x{tile}, 3x3) needs a 3x3 kernel, got {w.shape[:2]}")
    n_images, _, _, c_in = x.shape
    c_out = w.shape[3]
    oh, ow, pads, th, tw = winograd_geometry(x.shape, padding, tile)
    x_pad = winograd_pad(x, pads, th, tw, tile)
    bt, g, at = (m.astype(x.dtype) for m in WINOGRAD_MATRICES[tile])
    m, a = tile, tile + 2
    y = np.zeros((n_images, m * th, m * tw, c_out), dtype=x.dtype)
    for n in range(n_images):
        for i in range(th):
            for l in range(tw):
                d = x_pad[n, m * i:m * i + a, m * l:m * l + a, :]  # (a, a, C_in)
                for j in range(c_out):
                    product_sum = np.zeros((a, a), dtype=x.dtype)
                    for k in range(c_in):
                        u = g @ w[:, :, k, j] @ g.T
                        v = bt @ d[:, :, k] @ bt.T
                        product_sum += u * v
                    y[n, m * i:m * i + m, m * l:m * l + m, j] = b[j] + at @ product_sum @ at.T
    return np.ascontiguousarray(y[:, :oh, :ow, :]), (x, w, pads, tile)


def winograd_conv3x3_backward(dy, cache, need_dx=True):
    """Both backward products of ``winograd_conv3x3_forward``: the forward is linear in the tile and in the
    filter, so its gradients are its steps transposed, in reverse order (``B = (Bᵀ)ᵀ``, ``A = (Aᵀ)ᵀ``)::

        dM[j]    = A dy[n, m*i : m*i + m, m*l : m*l + m, j] Aᵀ    (a x a; dy is 0 past the output's edge)
        dV[k]    = sum_j dM[j] ⊙ U[k, j]
        dx_pad[n, m*i : m*i + a, m*l : m*l + a, k] += B dV[k] Bᵀ  (neighbouring tiles overlap by 2: they add up)
        dU[k, j] = sum_{n, i, l} dM[j] ⊙ V[k]
        dw[:, :, k, j] = Gᵀ dU[k, j] G
        db[j]    = sum_{n, r, c} dy[n, r, c, j]

    then ``dx`` is ``dx_pad`` with the padding cut off. The same gradients as ``conv2d_backward`` up to
    rounding. Returns ``(dx, dw, db)`` (``dx`` None if not ``need_dx``).
    """
    x, w, pads, tile = cache
    c_in, c_out = w.shape[2:]
    n_images, height, width, _ = x.shape
    _, oh, ow, _ = dy.shape
    m, a = tile, tile + 2
    th, tw = -(-oh // m), -(-ow // m)
    x_pad = winograd_pad(x, pads, th, tw, tile)
    dy_tiles = np.zeros((n_images, m * th, m * tw, c_out), dtype=dy.dtype)
    dy_tiles[:, :oh, :ow, :] = dy
    bt, g, at = (matrix.astype(dy.dtype) for matrix in WINOGRAD_MATRICES[tile])
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    for k in range(c_in):
        for j in range(c_out):
            u = g @ w[:, :, k, j] @ g.T
            du = np.zeros((a, a), dtype=dy.dtype)
            for n in range(n_images):
                for i in range(th):
                    for l in range(tw):
                        dm = at.T @ dy_tiles[n, m * i:m * i + m, m * l:m * l + m, j] @ at
                        v = bt @ x_pad[n, m * i:m * i + a, m * l:m * l + a, k] @ bt.T
                        dx_pad[n, m * i:m * i + a, m * l:m * l + a, k] += bt.T @ (dm * u) @ bt
                        du += dm * v
            dw[:, :, k, j] = g.T @ du @ g
    db = np.sum(dy, axis=(0, 1, 2))
    if not need_dx:
        return None, dw, db
    top, _, left, _ = pads
    return np.ascontiguousarray(dx_pad[:, top:top + height, left:left + width, :]), dw, db


def _pieces_padding(x, w, padding):
    """``(x_pad, w_pad, (oh, ow), (top, left))`` for the 3x3 pieces: ``x`` with the conv's padding and zeros as far
    as the pieces reach; ``w`` padded with zeros to multiples of 3 rows and columns."""
    n_images, height, width, c_in = x.shape
    kh, kw, _, c_out = w.shape
    oh, ow, (top, _, left, _) = conv2d_geometry(x.shape, w.shape, (1, 1), padding)
    ph, pw = -(-kh // 3) * 3, -(-kw // 3) * 3
    rows, cols = max(oh + ph - 1, top + height), max(ow + pw - 1, left + width)
    x_pad = np.zeros((n_images, rows, cols, c_in), dtype=x.dtype)
    x_pad[:, top:top + height, left:left + width, :] = x
    w_pad = np.zeros((ph, pw, c_in, c_out), dtype=w.dtype)
    w_pad[:kh, :kw] = w
    return x_pad, w_pad, (oh, ow), (top, left)


def winograd_conv_by_pieces_forward(x, w, b, padding="valid"):
    """The same numbers as ``conv2d_forward(x, w, b, (1, 1), padding)`` for a kernel of any size, up to
    rounding: the kernel, padded with zeros to multiples of 3 rows and columns, is cut into 3x3 pieces
    ``w_pad[p:p+3, q:q+3]`` (p, q = 0, 3, ...), and each piece's convolution is one F(4x4, 3x3) on the padded
    input shifted by (p, q)::

        y = b + sum_{p, q} conv3x3_valid(x_pad[:, p : p + OH + 2, q : q + OW + 2], w_pad[p:p+3, q:q+3])

    (``x_pad``: ``x`` with the conv's padding, and zeros beyond it as far as the pieces reach.)"""
    x_pad, w_pad, (oh, ow), _ = _pieces_padding(x, w, padding)
    c_out = w.shape[3]
    y = np.broadcast_to(b, (len(x), oh, ow, c_out)).astype(x.dtype)
    for p in range(0, w_pad.shape[0], 3):
        for q in range(0, w_pad.shape[1], 3):
            piece, _ = winograd_conv3x3_forward(x_pad[:, p:p + oh + 2, q:q + ow + 2], w_pad[p:p + 3, q:q + 3],
                                                np.zeros(c_out, dtype=x.dtype), "valid", tile=4)
            y = y + piece
    return y


def winograd_conv_by_pieces_backward(dy, x, w, padding="valid", need_dx=True):
    """``(dx, dw, db)`` of ``winograd_conv_by_pieces_forward``: each piece's F(4x4, 3x3) backward
    (``winograd_conv3x3_backward``) on its shifted input, its ``dx`` added back at the piece's shift and its
    ``dw`` placed at the piece's rows and columns of the padded kernel::

        dx_pad[:, p : p + OH + 2, q : q + OW + 2] += dx of piece (p, q);   dw_pad[p:p+3, q:q+3] = dw of piece (p, q)

    then the padding is cut off both. ``dx`` is None if not ``need_dx``."""
    x_pad, w_pad, (oh, ow), (top, left) = _pieces_padding(x, w, padding)
    dx_pad, dw_pad = np.zeros_like(x_pad), np.zeros_like(w_pad)
    for p in range(0, w_pad.shape[0], 3):
        for q in range(0, w_pad.shape[1], 3):
            shifted = x_pad[:, p:p + oh + 2, q:q + ow + 2]
            dx_piece, dw_pad[p:p + 3, q:q + 3], _ = winograd_conv3x3_backward(
                dy, (shifted, w_pad[p:p + 3, q:q + 3], (0, 0, 0, 0), 4), need_dx)
            if need_dx:
                dx_pad[:, p:p + oh + 2, q:q + ow + 2] += dx_piece
    dw, db = np.ascontiguousarray(dw_pad[:w.shape[0], :w.shape[1]]), np.sum(dy, axis=(0, 1, 2))
    if not need_dx:
        return None, dw, db
    return np.ascontiguousarray(dx_pad[:, top:top + x.shape[1], left:left + x.shape[2]]), dw, db
