"""Explanations from the input gradient: which pixels make the model say ``target``?

All methods explain the target **logit** ``z_t`` (the score before the softmax), via numcnn's own backward:

* ``gradient``:              ``S = ∂z_t/∂x``                                         (Simonyan et al. 2013)
* ``gradient_x_input``:      ``S = x · ∂z_t/∂x``
* ``smoothgrad``:            ``S = mean_k ∂z_t/∂x (x + ε_k)``, ε_k ~ N(0, σ²)        (Smilkov et al. 2017)
* ``integrated_gradients``:  ``S = (x - x₀) · mean_{k=1..n} ∂z_t/∂x (x₀ + k/n (x - x₀))`` with a zero
  baseline x₀; completeness says ``Σ S ≈ z_t(x) - z_t(x₀)``; the error is returned (Sundararajan et al. 2017)
* ``gradcam``:               weights ``α_c = mean_{r,c} ∂z_t/∂A_c`` of the last conv layer's activations
  ``A``; map ``ReLU(Σ_c α_c A_c)`` upsampled to the input size                 (Selvaraju et al. 2017)
* ``occlusion``:             the drop in ``z_t`` when a patch is covered with the baseline (no gradients)

Every map has the input's spatial shape (H, W); channels are summed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .generate.activations import forward_activations

METHODS = ("gradient", "gradient_x_input", "smoothgrad", "integrated_gradients", "gradcam", "occlusion")


def logit_gradient(model, x, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of a batch ``x`` and ``∂z_target/∂x`` for every image of the batch."""
    logits = model.forward_logits(x)
    dz = np.zeros_like(logits)
    dz[:, target] = 1
    return logits, model.backward_from_logits(dz)


def _batched_gradient(model, images, target, batch_size=64):
    grads = [logit_gradient(model, images[i:i + batch_size], target)[1] for i in range(0, len(images), batch_size)]
    return np.concatenate(grads)


def saliency(model, x, target: int, method: str = "gradient", seed: int = 0, samples: int = 32, noise: float = 0.15,
             steps: int = 50, patch: int = 4, baseline: float = 0.0, value_range=(0.0, 1.0), layer=None):
    """Saliency map (H, W) of one image ``x`` (H, W, C) for class ``target``.

    ``layer`` (a name or an index) is the layer Grad-CAM looks at (default: the last Conv2D layer).

    ``integrated_gradients`` returns ``(map, completeness_error)`` where the error is
    ``|Σ map - (z_t(x) - z_t(baseline))| / |z_t(x) - z_t(baseline)|``."""
    x = np.asarray(x, dtype=model.dtype)
    if x.shape != model.input_shape:
        raise ValueError(f"saliency expects one image of shape {model.input_shape}, got {x.shape}")
    if method == "gradient":
        return logit_gradient(model, x[None], target)[1][0].sum(axis=-1)
    if method == "gradient_x_input":
        return (x * logit_gradient(model, x[None], target)[1][0]).sum(axis=-1)
    if method == "smoothgrad":
        rng = np.random.default_rng(seed)
        sigma = noise * (value_range[1] - value_range[0])
        noisy = x[None] + rng.normal(scale=sigma, size=(samples, *x.shape)).astype(model.dtype)
        return _batched_gradient(model, noisy, target).mean(axis=0).sum(axis=-1)
    if method == "integrated_gradients":
        return integrated_gradients(model, x, target, steps, baseline)
    if method == "gradcam":
        return gradcam(model, x, target, layer)
    if method == "occlusion":
        return occlusion(model, x, target, patch, baseline)
    raise ValueError(f"unknown saliency method {method!r}; choose one of {METHODS}")


def integrated_gradients(model, x, target, steps=50, baseline=0.0):
    """Riemann (midpoint) sum of gradients along the straight path from the baseline to ``x``."""
    x0 = np.full_like(x, baseline)
    alphas = (np.arange(steps, dtype=np.float64) + 0.5) / steps
    path = (x0[None] + alphas[:, None, None, None] * (x - x0)[None]).astype(model.dtype)
    grads = _batched_gradient(model, path, target)
    attribution = ((x - x0) * grads.mean(axis=0)).sum(axis=-1)
    logits = model.forward_logits(np.stack([x, x0]))
    difference = float(logits[0, target] - logits[1, target])
    error = abs(float(attribution.sum()) - difference) / max(abs(difference), 1e-12)
    return attribution, error


def gradcam_layer_index(model, layer=None) -> int:
    """The layer Grad-CAM weighs: ``layer`` (name or index) if given, else the last Conv2D layer. It must
    produce a spatial map (H, W, C): a dense layer's output has no 'where'."""
    from .generate.activations import layer_index

    if layer is None:
        return last_conv_index(model)
    index = layer_index(model, layer)
    if len(model.layers[index].output_shape) != 3:
        raise ValueError(f"Grad-CAM needs a layer with a spatial output (H, W, C); {model.layers[index].name!r} "
                         f"outputs shape {model.layers[index].output_shape}")
    return index


def last_conv_index(model) -> int:
    from .layers import Conv2D

    indices = [i for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D)]
    if not indices:
        raise ValueError("Grad-CAM needs a model with a Conv2D layer")
    return indices[-1]


def gradcam(model, x, target, layer=None):
    """Grad-CAM on a layer's (post-activation) output, upsampled to the input size; ``layer`` is a name or
    an index of a layer with a spatial output (default: the last Conv2D layer)."""
    index = gradcam_layer_index(model, layer)
    # Layer by layer (not the model's fused forward), so every layer holds its own cache for the walk back.
    outputs = forward_activations(model, np.asarray(x, model.dtype)[None], len(model.layers) - 1)
    activations = outputs[index]                               # A: (1, h, w, C)
    dz = np.zeros_like(outputs[-1])                            # the logits have the output's shape
    dz[0, target] = 1
    # walk back from the logits to the output of layer `index`, keeping that gradient
    kind = model._softmax_output()
    last = len(model.layers) - 1
    if kind == "activation":
        grad = model.layers[last].backward_from_pre_activation(dz)
        stop = last
    elif kind == "layer":
        grad, stop = dz, last
    else:
        grad, stop = dz, last + 1
    for layer in reversed(model.layers[index + 1:stop]):
        grad = layer.backward(grad)  # now ∂z_t/∂A
    weights = grad[0].mean(axis=(0, 1))                        # α_c
    cam = np.maximum((activations[0] * weights).sum(axis=-1), 0)  # ReLU(Σ_c α_c A_c)
    factors = (model.input_shape[0] / cam.shape[0], model.input_shape[1] / cam.shape[1])
    return ndimage.zoom(cam, factors, order=1)


def occlusion(model, x, target, patch=4, baseline=0.0):
    """``S[r, c]`` = mean drop of ``z_t`` over the patches covering (r, c) when covered with ``baseline``."""
    height, width = model.input_shape[:2]
    covered = []
    positions = [(r, c) for r in range(0, height - patch + 1) for c in range(0, width - patch + 1)]
    for r, c in positions:
        image = x.copy()
        image[r:r + patch, c:c + patch] = baseline
        covered.append(image)
    logits = np.concatenate([model.forward_logits(np.stack(covered[i:i + 256])) for i in range(0, len(covered), 256)])
    original = model.forward_logits(x[None])[0, target]
    total, counts = np.zeros((height, width)), np.zeros((height, width))
    for (r, c), z in zip(positions, logits[:, target]):
        total[r:r + patch, c:c + patch] += original - z
        counts[r:r + patch, c:c + patch] += 1
    return total / np.maximum(counts, 1)


def filter_pictures(model, layer=None) -> np.ndarray:
    """A Conv2D layer's filters as pictures (n_filters, KH, KW), each scaled to [0, 1] (first conv by default;
    multi-channel filters are averaged over their input channels)."""
    from .generate.activations import layer_index

    index = layer_index(model, layer) if layer is not None else next(
        i for i, l in enumerate(model.layers) if "kernel" in l.params and l.params["kernel"].ndim == 4)
    kernel = model.layers[index].params["kernel"].mean(axis=2)  # (KH, KW, n_filters)
    pictures = np.moveaxis(kernel, -1, 0)
    low = pictures.min(axis=(1, 2), keepdims=True)
    return (pictures - low) / (pictures.max(axis=(1, 2), keepdims=True) - low + 1e-12)


def feature_maps(model, x, layer=None) -> dict:
    """Every (or one: a name or an index) layer's activations for one image:
    ``{layer name: array (H, W, C) or (units,)}``."""
    from .generate.activations import layer_index

    outputs = forward_activations(model, np.asarray(x)[None], len(model.layers) - 1)
    chosen = None if layer is None else layer_index(model, layer)
    return {l.name: out[0] for i, (l, out) in enumerate(zip(model.layers, outputs)) if chosen in (None, i)}
