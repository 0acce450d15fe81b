"""DeepDream: amplify what chosen layers already see in an image (Mordvintsev et al. 2015).

Objective ``Σ_l mean(a_l²)`` over the chosen layers' activations ``a_l``; gradient ascent on the image with
normalised steps ``x += η · g / mean|g|``, a random shift (jitter) each step, from the coarsest of several
octaves (image scaled by 1/1.4 per octave) up to full size, re-injecting the detail lost by downscaling.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .activations import layer_index, objective_input_gradient


def _mean_square(activation):
    value = float(np.mean(activation.astype(np.float64) ** 2))
    return value, (2 * activation / activation.size).astype(activation.dtype)


def _resize(image, shape):
    factors = (shape[0] / image.shape[0], shape[1] / image.shape[1], 1)
    return ndimage.zoom(image, factors, order=1)


def deep_dream(model, image, layers, seed: int = 0, octaves: int = 3, octave_scale: float = 1.4, steps: int = 20,
               step_size: float = 0.02, jitter: int = 2, value_range=(0.0, 1.0), progress=False) -> np.ndarray:
    """Return ``image`` (H, W, C) with the patterns of ``layers`` (names or indices) amplified.

    Convolutional layers work on any image size; the model's dense layers need its input size, so dream on
    conv/pool layers when the octaves change the size."""
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    indices = {layer_index(model, layer): _mean_square for layer in ([layers] if isinstance(layers, (str, int)) else layers)}
    original = np.asarray(image, dtype=np.float64)
    shapes = [tuple(int(round(d / octave_scale ** k)) for d in original.shape[:2]) for k in range(octaves - 1, -1, -1)]
    x = _resize(original, shapes[0])
    bar = tqdm(total=octaves * steps, desc="dreaming", disable=not progress, leave=False)
    for level, shape in enumerate(shapes):
        if level:
            # upscale the dream, and add back the detail the downscaled original lost
            lost = _resize(original, shape) - _resize(_resize(original, shapes[level - 1]), shape)
            x = _resize(x, shape) + lost
        for _ in range(steps):
            dy, dx = rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0)
            shifted = np.roll(x, (dy, dx), axis=(0, 1))
            _, grad = objective_input_gradient(model, shifted[None], indices)  # conv/pool layers take any size
            grad = np.roll(grad[0].astype(np.float64), (-dy, -dx), axis=(0, 1))
            x = np.clip(x + step_size * grad / (np.mean(np.abs(grad)) + 1e-12), *value_range)
            bar.update()
    bar.close()
    return x.astype(model.dtype)
