"""Texture "artwork": Gram-matrix texture synthesis (Gatys et al. 2015), at large scale, and style transfer.

A texture is described by the correlations between feature channels, not by where things are. For a layer's
activations ``F`` reshaped to (M = H·W positions, C channels), the Gram matrix is ``G = Fᵀ F / M``. Starting
from seeded noise, the image is optimised (L-BFGS-B, pixels bounded to the data range) so that its Gram
matrices match the exemplar's::

    L = Σ_l Σ_ij (G_l - Ĝ_l)_ij² / C_l²        dL/dF_l = 4 F_l (G_l - Ĝ_l) / (M_l C_l²)

and ``dL/dx`` comes from numcnn's own backward pass through the feature network. The features can be a
trained model's conv layers or a **seeded bank of random filters**: random networks synthesise good textures
(Ustyuzhaninov et al. 2016), and need no training.

**Large scale.** A Gram loss only constrains structures its filters can see: three 5x5 layers see ~29 pixels,
so brick courses 30-60 px apart come out as short mortar segments in no particular order. Four remedies,
all on by default (``scales=3``, ``multiscale_filter_bank``, ``spectrum_weight``):

* ``multiscale_filter_bank``: 3x3 ReLU convolutions with 2x2 **average** pooling between them (Gatys et al.
  use average pooling: its gradient reaches every pixel, max pooling's only one per window); the fifth
  layer sees ~78 pixels;
* a Gaussian pyramid, coarse to fine (Snelgrove 2017): synthesise at 1/4 size first, where the same filters
  cover 4x as much of the exemplar, then upsample the result as the start of the next, finer level;
* centred, relative Gram losses: the filters see ``x - mean colour of the exemplar`` and each layer's loss is
  ``||G - Ĝ||² / ||Ĝ||²``. Uncentred, the random filters' Gram matrices are dominated by mean brightness and
  streaky noise matches them; with 16-32 channels per layer there are also fewer Gram entries than pixels.
  Measured on a 128x128 crop of skimage's brick: before, vertical streaks (``layout_distance`` 0.48 to the
  exemplar, about that of a blurred copy); centred, relative and 32-128 channels wide, bricks in staggered
  columns (0.26, nearer than another crop of the same wall; ``benchmarks/texture_layout.py``);
* a spectrum term (Liu et al. 2016): ``L_s = w · ||x - P(x)||² / N`` where ``P(x)`` keeps the phase of each
  channel's Fourier transform and takes the exemplar's magnitudes; ``P(x)`` is held fixed when
  differentiating, so ``dL_s/dx = 2 w (x - P(x)) / N``. It fixes the spacing of periodic structure.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, optimize

from .activations import forward_activations, layer_index, objective_input_gradient


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


def multiscale_filter_bank(seed: int = 0, channels: int = 3, widths=(32, 64, 96, 128, 128), dtype="float64"):
    """A seeded random network for large-scale texture: ``len(widths)`` 3x3 ReLU conv layers with 2x2 average
    pooling between them. Receptive fields of the conv layers: 3, 8, 18, 38 and 78 pixels. The pooling
    quarters the positions at every level, so the deep layers cost little. Width matters: a layer's Gram
    matrix gives C(C+1)/2 constraints, and with (16, 24, 32, 32, 32) channels these are fewer than a 32x32x3
    image's pixels, so noise satisfies them (measured: streaky noise instead of bricks)."""
    from ..layers import AveragePooling2D, Conv2D, Input
    from ..model import Sequential

    layers = [Input((32, 32, channels))]
    for depth, width in enumerate(widths):
        if depth:
            layers.append(AveragePooling2D(2, padding="same"))
        layers.append(Conv2D(width, 3, padding="same", activation="relu", kernel_initializer="he_normal"))
    return Sequential(layers, seed=seed, dtype=dtype, name=f"multiscale_filter_bank_{seed}")


def conv_layer_indices(network) -> list[int]:
    """The layers whose Gram matrices describe a texture by default: every conv layer (all layers if none)."""
    from ..layers import Conv2D

    indices = [i for i, layer in enumerate(network.layers) if isinstance(layer, Conv2D)]
    return indices or list(range(len(network.layers)))


def resolve_layers(network, layers) -> list[int]:
    """Layer names or indices (or one of them) -> sorted indices; ``None`` -> every conv layer."""
    if layers is None:
        return conv_layer_indices(network)
    if isinstance(layers, (str, int, np.integer)):
        layers = [layers]
    return sorted({layer_index(network, layer) for layer in layers})


def gram(features: np.ndarray) -> np.ndarray:
    """``G = Fᵀ F / M`` of activations (1, H, W, C) -> (C, C)."""
    flat = features.reshape(-1, features.shape[-1]).astype(np.float64)
    return flat.T @ flat / len(flat)


def _gram_objective(target, scale=None):
    """``Σ (G - Ĝ)² / scale`` and its gradient; ``scale`` defaults to ``C²``."""
    def objective(activation):
        flat = activation.reshape(-1, activation.shape[-1]).astype(np.float64)
        positions, channels = flat.shape
        norm = channels**2 if scale is None else scale
        diff = flat.T @ flat / positions - target
        value = float(np.sum(diff**2)) / norm
        grad = 4 * flat @ diff / (positions * norm)
        return value, grad.reshape(activation.shape).astype(activation.dtype)
    return objective


def gram_targets(network, image, layers=None) -> dict:
    """``{layer index: Gram matrix of image}`` for ``layers`` (names or indices; default every conv layer)."""
    indices = resolve_layers(network, layers)
    outputs = forward_activations(network, np.asarray(image, network.dtype)[None], max(indices))
    return {index: gram(outputs[index]) for index in indices}


def gram_loss(network, image, targets: dict) -> float:
    """Σ over layers of ``Σ (G - Ĝ)² / C²`` for ``image`` (H, W, C)."""
    values, _ = objective_input_gradient(network, np.asarray(image, network.dtype)[None],
                                         {i: _gram_objective(t) for i, t in targets.items()})
    return float(sum(values.values()))


def spectrum_projection(image: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """``P(x)``: each channel keeps its Fourier phase and takes ``magnitude`` (the exemplar's |FFT|)."""
    spectrum = np.fft.fft2(image, axes=(0, 1))
    phase = spectrum / (np.abs(spectrum) + 1e-12)
    return np.real(np.fft.ifft2(phase * magnitude, axes=(0, 1)))


def exemplar_magnitude(exemplar: np.ndarray, shape) -> np.ndarray:
    """The exemplar's per-channel |FFT| at the output's size (the exemplar is resized to it first)."""
    resized = resize(exemplar, shape[:2])
    return np.abs(np.fft.fft2(resized, axes=(0, 1)))


def resize(image: np.ndarray, size) -> np.ndarray:
    """Linear resize of (H, W, C) to ``size`` (H', W'), with a Gaussian pre-blur when shrinking (no aliasing)."""
    image = np.asarray(image, dtype=np.float64)
    factors = (size[0] / image.shape[0], size[1] / image.shape[1])
    if tuple(size) == image.shape[:2]:
        return image.copy()
    if min(factors) < 1:
        image = ndimage.gaussian_filter(image, sigma=(0.5 / factors[0] - 0.5 if factors[0] < 1 else 0,
                                                      0.5 / factors[1] - 0.5 if factors[1] < 1 else 0, 0))
    return ndimage.zoom(image, (*factors, 1), order=1, grid_mode=True, mode="grid-mirror")


def pyramid_sizes(size, scales: int) -> list[tuple[int, int]]:
    """Sizes of the Gaussian pyramid, coarsest first: ``size / 2^(scales-1)`` ... ``size``."""
    return [tuple(max(8, int(round(d / 2 ** k))) for d in size) for k in range(scales - 1, -1, -1)]


def texture(exemplar, seed: int = 0, size=(128, 128), network=None, layers=None, steps: int = 300,
            value_range=(0.0, 1.0), content=None, content_weight: float = 0.0, progress=False, history=None,
            scales: int = 3, spectrum_weight: float = 1.0):
    """Synthesise a ``size`` texture (H, W, C) with the exemplar's Gram statistics, from seeded noise.

    ``network``: a numcnn model whose layers give the features (default: ``multiscale_filter_bank(seed)``);
    ``layers``: names or indices of the layers whose Gram matrices to match (default: every conv layer).
    ``scales``: levels of the coarse-to-fine pyramid (1: the single-scale synthesis of Gatys et al.); the
    ``steps`` L-BFGS iterations are split between them, half at the finest level.
    ``spectrum_weight``: weight of the Fourier-magnitude term (0: Gram matrices only).
    With ``content`` and ``content_weight > 0`` this becomes style transfer: the deepest chosen layer's
    activations are also pulled towards the content image's. ``history`` collects every loss evaluated."""
    exemplar = np.asarray(exemplar, dtype=np.float64)
    if exemplar.ndim != 3:
        raise ValueError(f"exemplar must be an image (H, W, C), got shape {exemplar.shape}")
    if scales < 1 or steps < 1:
        raise ValueError(f"scales and steps must be >= 1, got scales={scales}, steps={steps}")
    network = network or multiscale_filter_bank(seed, channels=exemplar.shape[-1])
    indices = resolve_layers(network, layers)
    rng = np.random.default_rng(seed)
    low, high = value_range
    sizes = pyramid_sizes(size, scales)
    x = low + (high - low) * rng.random((*sizes[0], exemplar.shape[-1]))
    for level, level_size in enumerate(sizes):
        # the exemplar is seen at the same relative scale as the output at every level
        factor = level_size[0] / size[0]
        level_exemplar = resize(exemplar, [max(8, int(round(d * factor))) for d in exemplar.shape[:2]])
        level_content = None if content is None else resize(content, level_size)
        if level:
            x = np.clip(resize(x, level_size), low, high)
        elif content is not None:
            x = level_content.copy()
        level_steps = steps - steps // 2 if level == len(sizes) - 1 else max(1, steps // (2 * (len(sizes) - 1)))
        x = _synthesise(network, indices, level_exemplar, x, level_steps, value_range, level_content, content_weight,
                        spectrum_weight, progress, history)
    return x.astype(np.float32)


def _synthesise(network, indices, exemplar, start, steps, value_range, content, content_weight, spectrum_weight,
                progress, history):
    """One pyramid level: L-BFGS-B from ``start`` on the Gram (+ spectrum, + content) loss."""
    from tqdm.auto import tqdm

    # The filters see the image minus the exemplar's mean colour: a random filter's weights do not sum to zero,
    # so on raw pixels in [0, 1] its response, and the Gram matrix, is dominated by the mean brightness; noise
    # with the right mean then matches the Gram matrices to 1e-6 and L-BFGS stops with noise. Centred, the
    # features respond to structure.
    offset = exemplar.mean(axis=(0, 1))
    targets = gram_targets(network, exemplar - offset, indices)
    # each layer's loss relative to its target's size, ||G - Ĝ||² / ||Ĝ||²: every layer counts alike
    objectives = {i: _gram_objective(t, float(np.sum(t**2))) for i, t in targets.items()}
    if content is not None and content_weight > 0:
        deepest = max(objectives)
        objectives[deepest] = _with_content(objectives[deepest], network, content - offset, deepest,
                                           content_weight)
    shape = start.shape
    magnitude = exemplar_magnitude(exemplar, shape) if spectrum_weight > 0 else None
    bar = tqdm(total=steps, desc=f"texture {shape[0]}x{shape[1]}", disable=not progress, leave=False)

    def loss_and_gradient(flat):
        image = flat.reshape(shape)
        values, grad = objective_input_gradient(network, (image - offset)[None].astype(network.dtype), objectives)
        loss, grad = float(sum(values.values())), grad[0].astype(np.float64)
        if magnitude is not None:
            residual = image - spectrum_projection(image, magnitude)
            loss += spectrum_weight * float(np.mean(residual**2))
            grad += 2 * spectrum_weight * residual / residual.size
        if history is not None:
            history.append(loss)
        bar.update()
        return loss, grad.ravel()

    low, high = value_range
    result = optimize.minimize(loss_and_gradient, start.ravel(), jac=True, method="L-BFGS-B",
                               bounds=[(low, high)] * start.size,
                               options={"maxiter": steps, "maxfun": 2 * steps, "ftol": 0.0, "gtol": 0.0})
    bar.close()
    return result.x.reshape(shape)


def _with_content(style_objective, network, content, index, weight):
    target = forward_activations(network, np.asarray(content, network.dtype)[None], index)[index].astype(np.float64)

    def objective(activation):
        value, grad = style_objective(activation)
        diff = activation.astype(np.float64) - target
        return value + weight * float(np.mean(diff**2)), grad + (2 * weight * diff / diff.size).astype(grad.dtype)
    return objective


def style_transfer(content, style, seed: int = 0, content_weight: float = 1.0, steps: int = 300, network=None,
                   layers=None, scales: int = 2, spectrum_weight: float = 0.0, progress=False):
    """The content image's layout with the style image's textures (Gatys et al. 2016), same machinery.
    No spectrum term by default: the content's layout, not the style's, should decide where things are."""
    content = np.asarray(content, dtype=np.float64)
    return texture(style, seed=seed, size=content.shape[:2], network=network, layers=layers, steps=steps,
                   content=content, content_weight=content_weight, scales=scales,
                   spectrum_weight=spectrum_weight, progress=progress)
