"""DeepDream: amplify what chosen layers already see in an image (Mordvintsev et al. 2015).

Objective ``Σ_l mean(a_l²)`` over the chosen layers' activations ``a_l``; gradient ascent on the image with
normalised steps ``x += η · g / mean|g|``, a random shift (jitter) each step, from the coarsest of several
octaves (image scaled by 1/1.4 per octave) up to full size, re-injecting the detail lost by downscaling.

Octaves shrink the image, and not every layer can see a small image: a 3x3 'valid' convolution needs at least
3x3 pixels at its input, and anything after a ``Flatten`` (a dense layer on top of a conv stack) needs exactly
the model's input size. ``usable_octaves`` walks ``compute_output_shape`` down to the deepest chosen layer
for each octave's size and keeps only the octaves every chosen layer can see; ``deep_dream`` warns (or, with
``strict=True``, refuses) when that is fewer than asked for. So DeepDream runs on *every* layer of a model.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from .activations import layer_index, objective_input_gradient


def _mean_square(activation):
    value = float(np.mean(activation.astype(np.float64) ** 2))
    return value, (2 * activation / activation.size).astype(activation.dtype)


def _resize(image, shape):
    factors = (shape[0] / image.shape[0], shape[1] / image.shape[1], 1)
    return ndimage.zoom(image, factors, order=1)


def layer_sees(model, deepest: int, size) -> bool:
    """Can layers ``0..deepest`` run on an image of spatial ``size`` (H, W)? Layers that flatten or reshape
    their input tie everything after them to the model's own input size."""
    from ..layers import Flatten, Reshape

    if tuple(size) == tuple(model.input_shape[:2]):
        return True
    shape = (*size, model.input_shape[2])
    for layer in model.layers[:deepest + 1]:
        if isinstance(layer, (Flatten, Reshape)):
            return False
        try:
            shape = tuple(layer.compute_output_shape(shape))
        except ValueError:  # ShapeError is a ValueError: a window larger than its input
            return False
        if len(shape) == 3 and min(shape[:2]) < 1:
            return False
    return True


def octave_shapes(size, octaves: int, octave_scale: float) -> list[tuple[int, int]]:
    """Spatial sizes of ``octaves`` octaves, coarsest first, the last one ``size`` itself."""
    return [tuple(max(1, int(round(d / octave_scale ** k))) for d in size) for k in range(octaves - 1, -1, -1)]


def usable_octaves(model, layers, size, octaves: int = 3, octave_scale: float = 1.4) -> list[tuple[int, int]]:
    """The octave sizes (coarsest first) at which every layer of ``layers`` (names or indices) can run."""
    deepest = max(layer_index(model, layer) for layer in _as_list(layers))
    return [shape for shape in octave_shapes(size, octaves, octave_scale) if layer_sees(model, deepest, shape)]


def _as_list(layers):
    return [layers] if isinstance(layers, (str, int, np.integer)) else list(layers)


def deep_dream(model, image, layers, seed: int = 0, octaves: int = 3, octave_scale: float = 1.4, steps: int = 20,
               step_size: float = 0.02, jitter: int = 2, value_range=(0.0, 1.0), progress=False,
               strict: bool = False) -> np.ndarray:
    """Return ``image`` (H, W, C) with the patterns of ``layers`` (names or indices) amplified.

    Octaves too small for a chosen layer are dropped with a ``UserWarning`` that names the layer
    (``strict=True``: a ``ValueError`` instead); layers after a ``Flatten`` dream at full size only."""
    from tqdm.auto import tqdm

    if octaves < 1 or steps < 0:
        raise ValueError(f"octaves must be >= 1 and steps >= 0, got octaves={octaves}, steps={steps}")
    rng = np.random.default_rng(seed)
    chosen = _as_list(layers)
    if not chosen:
        raise ValueError("deep_dream needs at least one layer to dream on")
    indices = {layer_index(model, layer): _mean_square for layer in chosen}
    original = np.asarray(image, dtype=np.float64)
    shapes = usable_octaves(model, chosen, original.shape[:2], octaves, octave_scale)
    if not shapes:
        raise ValueError(f"layer {model.layers[max(indices)].name!r} cannot run on an image of size "
                         f"{original.shape[:2]}; the model takes {model.input_shape[:2]}")
    if len(shapes) < octaves:
        deepest = model.layers[max(indices)].name
        message = (f"layer {deepest!r} cannot see an image smaller than {shapes[0][0]}x{shapes[0][1]} pixels "
                   f"(layers after a Flatten need the model's input size): dreaming at {len(shapes)} "
                   f"octave(s) instead of {octaves}")
        if strict:
            raise ValueError(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    x = _resize(original, shapes[0])
    bar = tqdm(total=len(shapes) * steps, desc="dreaming", disable=not progress, leave=False)
    for level, shape in enumerate(shapes):
        if level:
            # upscale the dream, and add back the detail the downscaled original lost
            lost = _resize(original, shape) - _resize(_resize(original, shapes[level - 1]), shape)
            x = _resize(x, shape) + lost
        for _ in range(steps):
            x = _ascent_step(model, x, indices, rng, jitter, step_size, value_range)
            bar.update()
    bar.close()
    return x.astype(model.dtype)


def _ascent_step(model, x, objectives, rng, jitter, step_size, value_range):
    """One normalised ascent step on a randomly rolled copy of ``x`` (the roll is undone on the gradient)."""
    dy, dx = rng.integers(-jitter, jitter + 1, size=2) if jitter else (0, 0)
    shifted = np.roll(x, (dy, dx), axis=(0, 1))
    _, grad = objective_input_gradient(model, shifted[None].astype(model.dtype), objectives)
    grad = np.roll(grad[0].astype(np.float64), (-dy, -dx), axis=(0, 1))
    return np.clip(x + step_size * grad / (np.mean(np.abs(grad)) + 1e-12), *value_range)
