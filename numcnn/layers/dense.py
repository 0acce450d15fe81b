"""``Dense``: a fully connected layer.

Source document, section 3.3: ``y_j = f(sum_i x_i * w_ij + b_j)``, per image ``n``::

    y[n, j] = f( b[j] + sum_i x[n, i] * w[i, j] )        i.e.  Y = f(X W + b)

Backward, with ``dZ = dY * f'(Z)``:  ``dX = dZ Wᵀ``,  ``dW = Xᵀ dZ``,  ``db = sum_n dZ[n, :]``.

Shapes: x (N, I); kernel (I, J) as in Keras; bias (J,); y (N, J).
"""

from __future__ import annotations

from .. import kernels
from .base import AffineLayer


class Dense(AffineLayer):
    def __init__(self, units: int, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 name: str | None = None, input_shape=None):
        super().__init__(activation, use_bias, kernel_initializer, bias_initializer, name, input_shape)
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"Dense units must be a positive int, got {units!r}")
        self.units = units

    def kernel_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"Dense {self.name!r} expects flat inputs (features,), got shape {input_shape}; add Flatten() first"
            )
        return (input_shape[0], self.units)

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def affine_forward(self, x, w, b):
        return kernels.dense_forward(x, w, b)

    def affine_backward(self, dz, cache, need_dx=True):
        return kernels.dense_backward(dz, cache, need_dx)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
