"""Formula-literal reference kernels: slow, plain loops that read like the math. They are the spec.

Every function here has a fast twin with the same signature and the same results in
``numcnn.kernels`` (``conv.py``, ``pool.py``, ``dense.py``, ``activations.py``); the tests check that
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

import numpy as np

from .geometry import output_size_and_padding


# --------------------------------------------------------------------------------------------
# Convolution
# --------------------------------------------------------------------------------------------
def pad_nhwc(x: np.ndarray, pads: tuple[int, int, int, int], value: float = 0.0) -> np.ndarray:
    """Pad rows by ``(top, bottom)`` and columns by ``(left, right)``; ``pads = (top, bottom, left, right)``."""
    top, bottom, left, right = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def conv2d_geometry(x_shape, w_shape, strides, padding):
    """Output height/width and the ``(top, bottom, left, right)`` padding of a Conv2D or pooling window."""
    _, height, width, _ = x_shape
    kh, kw = w_shape[:2]
    sh, sw = strides
    oh, top, bottom = output_size_and_padding(height, kh, sh, padding)
    ow, left, right = output_size_and_padding(width, kw, sw, padding)
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
