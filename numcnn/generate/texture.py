"""Texture "artwork": Gram-matrix texture synthesis (Gatys et al. 2015) and style transfer.

A texture is described by the correlations between feature channels, not by where things are. For a layer's
activations ``F`` reshaped to (M = H·W positions, C channels), the Gram matrix is ``G = Fᵀ F / M``. Starting
from seeded noise, the image is optimised (L-BFGS-B, pixels bounded to the data range) so that its Gram
matrices match the exemplar's::

    L = Σ_l Σ_ij (G_l - Ĝ_l)_ij² / C_l²        dL/dF_l = 4 F_l (G_l - Ĝ_l) / (M_l C_l²)

and ``dL/dx`` comes from numcnn's own backward pass through the feature network. The features can be a
trained model's conv layers or a **seeded bank of random filters**: random shallow networks of several
scales synthesise good textures (Ustyuzhaninov et al. 2016), and need no training.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from .activations import forward_activations, objective_input_gradient


def random_filter_bank(seed: int = 0, channels: int = 3, widths=(48, 64, 64), dtype="float64"):
    """A seeded random feature network: three ReLU conv layers with growing receptive fields
    (5x5, then 5x5 stride 2, then 5x5 stride 2: about 5, 13 and 29 pixels)."""
    from ..layers import Conv2D, Input
    from ..model import Sequential

    return Sequential([
        Input((8, 8, channels)),  # the build size only: conv layers then run on images of any size
        Conv2D(widths[0], 5, padding="same", activation="relu", kernel_initializer="he_normal"),
        Conv2D(widths[1], 5, strides=2, padding="same", activation="relu", kernel_initializer="he_normal"),
        Conv2D(widths[2], 5, strides=2, padding="same", activation="relu", kernel_initializer="he_normal"),
    ], seed=seed, dtype=dtype, name=f"random_filter_bank_{seed}")


def gram(features: np.ndarray) -> np.ndarray:
    """``G = Fᵀ F / M`` of activations (1, H, W, C) -> (C, C)."""
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    return flat.T @ flat / len(flat)


def _gram_objective(target):
    def objective(activation):
        flat = activation.reshape(-1, activation.shape[-1]).astype(np.float64)
        positions, channels = flat.shape
        diff = flat.T @ flat / positions - target
        value = float(np.sum(diff**2)) / channels**2
        grad = 4 * flat @ diff / (positions * channels**2)
        return value, grad.reshape(activation.shape).astype(activation.dtype)
    return objective


def gram_targets(network, image, layers=None) -> dict:
    layers = layers if layers is not None else list(range(len(network.layers)))
    outputs = forward_activations(network, np.asarray(image)[None], max(layers))
    return {index: gram(outputs[index]) for index in layers}


def gram_loss(network, image, targets: dict) -> float:
    """Σ over layers of ``Σ (G - Ĝ)² / C²`` for ``image`` (H, W, C)."""
    values, _ = objective_input_gradient(network, np.asarray(image, network.dtype)[None],
                                         {i: _gram_objective(t) for i, t in targets.items()})
    return float(sum(values.values()))


def texture(exemplar, seed: int = 0, size=(128, 128), network=None, layers=None, steps: int = 300,
            value_range=(0.0, 1.0), content=None, content_weight: float = 0.0, progress=False, history=None):
    """Synthesise a ``size`` texture (H, W, C) with the exemplar's Gram statistics, from seeded noise.

    ``network``: a numcnn model whose layers give the features (default: ``random_filter_bank(seed)``).
    With ``content`` and ``content_weight > 0`` this becomes style transfer: the deepest layer's activations
    are also pulled towards the content image's."""
    from tqdm.auto import tqdm

    exemplar = np.asarray(exemplar, dtype=np.float64)
    network = network or random_filter_bank(seed, channels=exemplar.shape[-1])
    targets = gram_targets(network, exemplar, layers)
    objectives = {i: _gram_objective(t) for i, t in targets.items()}
    if content is not None and content_weight > 0:
        deepest = max(objectives)
        objectives[deepest] = _with_content(objectives[deepest], network, content, deepest, content_weight)
    rng = np.random.default_rng(seed)
    low, high = value_range
    shape = (*size, exemplar.shape[-1])
    start = (content if content is not None else low + (high - low) * rng.random(shape)).astype(np.float64)
    bar = tqdm(total=steps, desc="texture", disable=not progress, leave=False)

    def loss_and_gradient(flat):
        values, grad = objective_input_gradient(network, flat.reshape(1, *shape).astype(network.dtype), objectives)
        loss = float(sum(values.values()))
        if history is not None:
            history.append(loss)
        bar.update()
        return loss, grad.astype(np.float64).ravel()

    result = optimize.minimize(loss_and_gradient, start.ravel(), jac=True, method="L-BFGS-B",
                               bounds=[(low, high)] * start.size, options={"maxiter": steps, "maxfun": 2 * steps, "ftol": 0.0, "gtol": 0.0})
    bar.close()
    return result.x.reshape(shape).astype(np.float32)


def _with_content(style_objective, network, content, index, weight):
    target = forward_activations(network, np.asarray(content)[None], index)[index].astype(np.float64)

    def objective(activation):
        value, grad = style_objective(activation)
        diff = activation.astype(np.float64) - target
        return value + weight * float(np.mean(diff**2)), grad + (2 * weight * diff / diff.size).astype(grad.dtype)
    return objective


def style_transfer(content, style, seed: int = 0, content_weight: float = 1.0, steps: int = 300, network=None,
                   progress=False):
    """The content image's layout with the style image's textures (Gatys et al. 2016), same machinery."""
    content = np.asarray(content, dtype=np.float64)
    return texture(style, seed=seed, size=content.shape[:2], network=network, steps=steps, content=content,
                   content_weight=content_weight, progress=progress)
