"""``BatchNormalization``: normalise each channel with the batch's statistics (training) or running ones.

Per channel ``c`` (the last axis: the channels of an (N, H, W, C) image batch after Conv2D, the features of
(N, F) after Dense), over the ``M`` values of that channel in the batch (``M = N*H*W``, or ``N``)::

    training (forward(x, training=True)):
        mean = (1/M) sum x          var = (1/M) sum (x - mean)^2        (biased: Keras and TF divide by M)
        moving_mean     = moving_mean * momentum     + mean * (1 - momentum)     (once per training forward)
        moving_variance = moving_variance * momentum + var  * (1 - momentum)
    inference (training=False):
        mean = moving_mean          var = moving_variance
    both:
        xhat = (x - mean) / sqrt(var + eps)          y = gamma * xhat + beta

Backward, with ``s = sqrt(var + eps)`` and sums over the ``M`` values of a channel::

    dbeta  = sum dy                         dgamma = sum dy * xhat
    training:   dx = gamma / s * (dy - mean(dy) - xhat * mean(dy * xhat))
    inference:  dx = gamma / s * dy         (the moving statistics are constants: y is affine in x)

Why the training ``dx`` has two more terms: ``mean`` and ``var`` are functions of every ``x`` in the batch.
With ``g = dL/dxhat = gamma * dy``, the chain rule through ``xhat = (x - mean) / s`` gives
``dL/dvar = -1/2 sum g (x - mean) / s^3`` and ``dL/dmean = -sum g / s`` (its ``dvar/dmean`` term is zero because
``sum (x - mean) = 0``), and ``dx = g / s + dL/dvar * 2 (x - mean) / M + dL/dmean / M``, which simplifies to
the line above. Leaving those terms out (``dx = gamma / s * dy`` in training, a classic from-scratch bug)
fails the finite-difference test (``tests/test_layers_normalization.py`` shows it).

Frozen layers: as in Keras, a layer with ``trainable = False`` runs in inference mode even when training (it
neither uses nor updates batch statistics). The moving statistics are never trainable: they are weights (in
``get_weights``, saved and restored) that only ``forward`` changes.

Shapes: x (N, ..., C) -> y the same; gamma, beta, moving_mean, moving_variance (C,). Weights in Keras order
``[gamma, beta, moving_mean, moving_variance]``; ``scale=False`` drops gamma (it is then 1) and ``center=False``
drops beta (0), exactly as Keras's ``get_weights`` does. Only ``axis=-1`` is supported.
"""

from __future__ import annotations

import numpy as np

from .. import initializers, kernels
from ..errors import ShapeError
from .base import Layer


class BatchNormalization(Layer):
    non_trainable_keys = ("moving_mean", "moving_variance")

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 name: str | None = None, input_shape=None, trainable: bool = True):
        super().__init__(name=name, input_shape=input_shape, trainable=trainable)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"BatchNormalization axis must be an int (only -1, the last axis, is supported), "
                             f"got {axis!r}")
        if not _is_number(momentum) or not 0 <= momentum <= 1:
            raise ValueError(f"BatchNormalization momentum must be a number in [0, 1], got {momentum!r}")
        if not _is_number(epsilon) or not epsilon > 0:
            raise ValueError(f"BatchNormalization epsilon must be a positive number, got {epsilon!r}")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = beta_initializer
        self.gamma_initializer = gamma_initializer
        self.moving_mean_initializer = moving_mean_initializer
        self.moving_variance_initializer = moving_variance_initializer
        for initializer in (beta_initializer, gamma_initializer, moving_mean_initializer,
                            moving_variance_initializer):
            initializers.get(initializer)  # an unknown name fails here, not at build time

    # --- building ---------------------------------------------------------------------------
    def compute_output_shape(self, input_shape):
        self._check_axis(input_shape)
        return tuple(input_shape)

    def _check_axis(self, input_shape) -> None:
        """Keras counts ``axis`` with the batch axis: for inputs (N, H, W, C) the last axis is -1 or 3."""
        if self.axis not in (-1, len(input_shape)):
            shown = ", ".join(map(str, input_shape))
            raise ValueError(f"BatchNormalization {self.name!r} supports only axis=-1 (the channels of (N, H, W, C), "
                             f"the features of (N, F)); got axis={self.axis} for inputs (N, {shown})")

    def create_params(self, rng):
        self._check_axis(self.input_shape)
        shape = (self.input_shape[-1],)
        params = {}
        if self.scale:
            params["gamma"] = initializers.get(self.gamma_initializer)(shape, rng, dtype=self.dtype)
        if self.center:
            params["beta"] = initializers.get(self.beta_initializer)(shape, rng, dtype=self.dtype)
        params["moving_mean"] = initializers.get(self.moving_mean_initializer)(shape, rng, dtype=self.dtype)
        params["moving_variance"] = initializers.get(self.moving_variance_initializer)(shape, rng, dtype=self.dtype)
        self.params = params

    # --- the math -----------------------------------------------------------------------------
    def _check_input(self, x) -> None:
        if "moving_mean" not in self.params:
            raise RuntimeError(f"BatchNormalization {self.name!r} is not built: add it to a model (or call build)")
        channels = self.params["moving_mean"].shape[0]
        if x.ndim != len(self.input_shape) + 1 or x.shape[-1] != channels:
            shown = ", ".join(["?"] * (len(self.input_shape) - 1) + [str(channels)])
            raise ShapeError(f"layer {self.name!r} (BatchNormalization) expects input (N, {shown}), got {x.shape}")

    def _gamma_beta(self, dtype):
        channels = self.params["moving_mean"].shape[0]
        gamma = self.params["gamma"] if self.scale else np.ones(channels, dtype)
        beta = self.params["beta"] if self.center else np.zeros(channels, dtype)
        return gamma, beta

    def inference_terms(self, dtype):
        """``(gamma, beta, mean, inv_std)`` of the inference-mode normalization (the moving statistics), as
        ``kernels.normalize_rows`` takes them: a Conv2D applies this layer to each chunk of its output
        (``Conv2D.forward_normalized``) with exactly the operations of ``forward``."""
        gamma, beta = self._gamma_beta(dtype)
        return kernels.batchnorm_terms(dtype, gamma, beta, self.params["moving_mean"],
                                       self.params["moving_variance"], self.epsilon)

    def keep_inference_input(self, x, terms) -> None:
        """Keep what ``backward`` needs after an inference-mode forward of ``x`` computed by the layer before
        (``Conv2D.forward_normalized``), as ``forward(x, training=False)`` would have kept it."""
        self._check_input(x)
        self._cache = kernels.batchnorm_cache(x.reshape(-1, x.shape[-1]), x.shape, terms)

    def forward(self, x, training=False):
        return self._forward(x, training, relu=False)

    def fuses_relu(self, following) -> bool:
        """Whether ``Sequential`` may run this layer and ``following`` (a ReLU) as one step
        (``forward_relu``). Not where this instance's ``forward`` was replaced (``numcnn.distributed``
        synchronises the batch statistics that way): the replacement must run."""
        from .activations import Activation

        return isinstance(following, Activation) and following.is_relu() and "forward" not in vars(self)

    def forward_relu(self, x, relu, training=False):
        """``relu.forward(self.forward(x, training))`` in one pass over memory, the same bits. Each layer keeps
        what its own ``backward`` needs, the ReLU its output instead of its input: its derivative
        ``[input > 0]`` is ``[output > 0]`` (NaN included: ReLU maps it to 0)."""
        y = self._forward(x, training, relu=True)
        relu.keep_input(y)
        return y

    def _forward(self, x, training, relu):
        x = np.asarray(x)
        self._check_input(x)
        gamma, beta = self._gamma_beta(x.dtype)
        batch_statistics = bool(training) and self.trainable  # Keras: a frozen layer normalises as at inference
        if batch_statistics:
            mean, var = kernels.batchnorm_moments(x)
            self._update_moving_statistics(mean, var)
        else:
            mean, var = self.params["moving_mean"], self.params["moving_variance"]
        y, self._cache = kernels.batchnorm_forward(x, gamma, beta, mean, var, self.epsilon, batch_statistics, relu)
        return y

    def _update_moving_statistics(self, mean, var) -> None:
        """``moving = moving * momentum + stat * (1 - momentum)``, in place (``model.weights`` holds these
        arrays), with Keras's operations: both factors rounded to the weights' dtype, ``1 - momentum`` first
        computed in Python (float64) as Keras does."""
        for key, statistic in (("moving_mean", mean), ("moving_variance", var)):
            moving = self.params[key]
            dtype = moving.dtype.type
            moving[...] = moving * dtype(self.momentum) + statistic.astype(moving.dtype) * dtype(1.0 - self.momentum)

    def backward(self, dy):
        if self._cache is None:
            raise RuntimeError(f"BatchNormalization {self.name!r}: call forward before backward")
        dx, dgamma, dbeta = kernels.batchnorm_backward(dy, self._cache)
        self.grads = {}
        if self.scale:
            self.grads["gamma"] = dgamma
        if self.center:
            self.grads["beta"] = dbeta
        return dx

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": self.beta_initializer,
            "gamma_initializer": self.gamma_initializer,
            "moving_mean_initializer": self.moving_mean_initializer,
            "moving_variance_initializer": self.moving_variance_initializer,
        }


def _is_number(value) -> bool:
    numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    return numeric and bool(np.isfinite(value))
