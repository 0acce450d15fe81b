"""Fast Conv2DTranspose, built from the Conv2D kernels of ``conv.py`` (im2col, GEMM, col2im).

Same signatures and results as ``reference.conv2d_transpose_forward`` / ``conv2d_transpose_backward`` (read
those for the math). A transposed convolution is a Conv2D run backwards, so each of its passes is a pass
of Conv2D with the roles swapped — kernel ``w`` (KH, KW, F, C_in) read as a Conv2D kernel (HWIO with
I = F, O = C_in), ``y_full`` the padded Conv2D input:

* forward  = Conv2D's input gradient: ``cols = x_rows @ W2ᵀ`` (one GEMM), then col2im adds every entry of
  ``cols`` to the output pixel it belongs to (dropping those 'same' crops); add the bias;
* backward, ``dx`` = Conv2D's forward of ``dy``: im2col of the zero-padded ``dy``, ``dx_rows = cols @ W2``;
* backward, ``dw`` = Conv2D's weight gradient with the roles swapped: ``dW2 = colsᵀ @ x_rows``;

with ``W2 = w.reshape(KH*KW*F, C_in)`` (rows (p, q, j): the column order of im2col) and ``x_rows =
x.reshape(N*H*W, C_in)``. im2col/col2im are exact copies and adds, so the only rounding is in the GEMMs.
The batch goes through in chunks of about ``parallel.CHUNK_BYTES`` of ``cols`` on numcnn's threads, as in Conv2D.
"""

from __future__ import annotations

import numpy as np

from .conv import col2im_for, conv_chunks, im2col_chunks
from .parallel import image_chunks, run_chunks
from .reference import conv2d_transpose_geometry


def conv2d_transpose_forward(x, w, b, strides=(1, 1), padding="valid"):
    """``y_full[n, r*sh+p, c*sw+q, j] += x[n, r, c, k] w[p, q, j, k]``; ``y = crop(y_full) + b`` (GEMM + col2im,
    which adds straight into the cropped ``y``: ``y_full`` is never stored)."""
    x = np.ascontiguousarray(x)
    n_images, height, width, c_in = x.shape
    kh, kw, filters, _ = w.shape
    oh, ow, pads = conv2d_transpose_geometry(x.shape, w.shape, strides, padding)
    top, _, left, _ = pads
    y = np.zeros((n_images, oh, ow, filters), dtype=x.dtype)
    w2 = w.reshape(kh * kw * filters, c_in)
    chunks = image_chunks(n_images, height * width * kh * kw * filters * x.itemsize)
    col2im = col2im_for(kh, kw, filters)

    def work(share):
        for _, start, stop in share:
            cols = x[start:stop].reshape(-1, c_in) @ w2.T  # (rows (n, r, c), columns (p, q, j))
            col2im(cols, kh, kw, strides[0], strides[1], top, left, height, width, y[start:stop])

    run_chunks(chunks, work)
    y += b  # in place: the output keeps the input's dtype
    return y, (x, w, strides, pads)


def conv2d_transpose_backward(dy, cache, need_dx=True):
    """``dx = conv2d(pad(dy), w)``, ``dw = colsᵀ x_rows``, ``db = Σ dy`` (see the module docstring).

    With ``need_dx=False`` (a model's first layer during training) ``dx`` is skipped and returned as None."""
    x, w, strides, pads = cache
    n_images, height, width, c_in = x.shape
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    w2 = w.reshape(-1, c_in)
    chunks = conv_chunks(dy, w, height, width)
    dw_parts = np.empty((len(chunks), *w2.shape), dtype=w.dtype)  # one partial sum per chunk, added in order
    dx = np.empty_like(x) if need_dx else None

    def work(share):
        # im2col of dy padded by what 'same' cropped (zero taps: those outputs got no gradient)
        for i, start, stop, cols in im2col_chunks(dy, w, strides, pads, height, width, share):
            x_rows = x[start:stop].reshape(-1, c_in)
            np.matmul(cols.T, x_rows, out=dw_parts[i])
            if need_dx:
                np.matmul(cols, w2, out=dx[start:stop].reshape(-1, c_in))

    run_chunks(chunks, work)
    dw = dw_parts.sum(axis=0)
    db = dy.reshape(-1, dy.shape[-1]).sum(axis=0)
    return dx, dw.reshape(w.shape), db
