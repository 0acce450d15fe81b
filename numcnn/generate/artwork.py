"""``generate_artwork(model, seed)``: a picture of a chosen class from a seed, by the artwork model's own gradient.

The source document's second example trains a 128x128x3 CNN on "artwork" and asks for ``generate_artwork(model,
seed)``. Here that is class-image optimisation (activation maximisation of the class **logit**, as in
``class_images.py``), tuned for colour pictures instead of 28x28 digits. From a seeded start ``x``, repeat::

    x_t  = T(x)                                   a random shift of up to ``jitter`` px, rotation, zoom
    g    = blur_σ(T⁻¹( ∂ z_label(x_t) / ∂x_t ))     the logit's input gradient, mapped back, low-passed,
    g    = g / mean|g|                              ... and scaled to unit mean size
    d    = g - tv·∇TV(x) - 2·l2·(x - ½)  [+ diversity term]
    d    = lum(d) + chroma·(d - lum(d))          lum(d): the mean over the colour channels, per pixel
    x   += step · d / mean|d|;   x = blur(x) every ``blur_every`` steps;   x = clip(x, 0, 1)

Why these choices for 128x128 colour images:

* the logit gradient is normalised *before* the prior is added, so ``tv`` and ``l2`` mean the same for any
  model (a deep model's raw input gradients can be 1e-4 or 1e2 per pixel);
* the decay pulls towards mid-grey ½, not towards black: the classes are photographs, and a dark image is
  itself a strong cue (the deep field class is mostly black);
* a large jitter (8 px, the artwork model's pooled cells are 8 px apart), a random zoom of ±15% (so no
  fixed 8-px period fits every step), a low-passed gradient
  (``grad_sigma``: the exact gradient with respect to ``y`` when ``x = blur(y)``, since a Gaussian blur is its
  own adjoint) and a slight blur of the image weaken the pixel-period patterns a plain ascent builds
  (Mordvintsev et al. 2015; Olah et al. 2017);
* colour moves slower than brightness (``chroma`` < 1, a fixed colour preconditioner in the spirit of
  Olah et al. 2017's decorrelated colour space): without it the ascent paints saturated red, green and cyan
  dots into every class, greyscale ones included, which the model scores highly and no person would (with
  ``chroma=0.1`` the greyscale classes still come out faintly tinted);
* the start is **multi-scale seeded noise** (``seeded_start``): smooth blobs at 4 scales, so different seeds
  begin with different layouts. On the artwork CNN that alone is not enough: its Flatten + Dense head is tied
  to positions, so the seeds converge to near copies; ``artwork_grid`` therefore turns ``diversity`` on.
  ``start=`` also takes an image
  (or one per seed), e.g. a photo to turn towards a class; ``diversity`` (Olah et al. 2017's diversity term,
  ``class_images.diversity_gradient``) pushes the seeds of one label apart within a batch.

Randomness: the start and the transformations of each picture come from generators seeded by ``(seed,
label)`` (``class_images.image_rng``), so the same seed and arguments give bit-identical pictures.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from .class_images import _affine, diversity_gradient, image_rng, start_array, total_variation_gradient


def seeded_start(shape, rng: np.random.Generator, scales: int = 4, contrast: float = 0.25,
                 chroma: float = 0.3) -> np.ndarray:
    """Multi-scale noise (H, W, C) around mid-grey: Gaussian noise at 1/2, 1/4, ... of the size, upsampled
    bilinearly and summed with equal weight, its colour part scaled by ``chroma``, then scaled to standard
    deviation ``contrast``, plus ½."""
    height, width, channels = shape
    total = np.zeros(shape, dtype=np.float64)
    for level in range(1, scales + 1):
        coarse = (max(1, height >> level), max(1, width >> level), channels)
        noise = rng.standard_normal(coarse)
        total += ndimage.zoom(noise, (height / coarse[0], width / coarse[1], 1), order=1, mode="nearest")
    total = damp_chroma(total, chroma)
    total *= contrast / (total.std() + 1e-12)
    return np.clip(0.5 + total, 0.0, 1.0)


def damp_chroma(a: np.ndarray, chroma: float) -> np.ndarray:
    """Keep each pixel's mean over the colour channels (its brightness), scale the rest (its colour) by
    ``chroma``; works on (..., C) and leaves one-channel images as they are."""
    brightness = a.mean(axis=-1, keepdims=True)
    return brightness + chroma * (a - brightness)


def _start_batch(shape, rngs, start) -> np.ndarray:
    if isinstance(start, str):
        if start != "noise":
            raise ValueError(f"start must be 'noise' or an image array, got {start!r}")
        return np.stack([seeded_start(shape, rng) for rng in rngs])
    return start_array(start, shape, len(rngs))


def _transform(rng, jitter: int, rotate: float, scale: float):
    shift = tuple(int(v) for v in rng.integers(-jitter, jitter + 1, size=2)) if jitter else (0, 0)
    angle = float(rng.uniform(-rotate, rotate)) if rotate else 0.0
    zoom = float(rng.uniform(1 - scale, 1 + scale)) if scale else 1.0
    return angle, zoom, shift


def _mean_size(a) -> np.ndarray:
    return np.mean(np.abs(a), axis=(1, 2, 3), keepdims=True) + 1e-12


def generate_artworks(model, labels, seeds, steps: int = 200, step_size: float = 0.01, tv: float = 0.3,
                      l2: float = 0.1, blur_every: int = 4, blur_sigma: float = 0.8, jitter: int = 8,
                      rotate: float = 10.0, scale: float = 0.15, chroma: float = 0.1, grad_sigma: float = 2.0,
                      diversity: float = 0.0,
                      start="noise", progress: bool = False) -> np.ndarray:
    """Pictures ``(len(labels), H, W, C)`` in [0, 1], picture ``i`` of class ``labels[i]`` from ``seeds[i]``,
    optimised as one batch (see the module docstring for the update). Returns the model's dtype."""
    from tqdm.auto import tqdm

    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(seeds):
        raise ValueError(f"{len(labels)} labels but {len(seeds)} seeds")
    classes = model.output_shape[-1]
    if np.any((labels < 0) | (labels >= classes)):
        raise ValueError(f"labels must be in 0..{classes - 1}, got {labels.tolist()}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    start_rngs = [image_rng(seed, label) for seed, label in zip(seeds, labels)]
    step_rngs = [np.random.default_rng(np.random.SeedSequence([int(s), int(t), 1])) for s, t in zip(seeds, labels)]
    x = _start_batch(model.input_shape, start_rngs, start)
    rows = np.arange(len(labels))
    for step in tqdm(range(steps), desc="generating artwork", disable=not progress, leave=False):
        transforms = [_transform(rng, jitter, rotate, scale) for rng in step_rngs]
        x_t = np.stack([_affine(image, *t, inverse=False) for image, t in zip(x, transforms)])
        logits = model.forward_logits(x_t.astype(model.dtype))
        dz = np.zeros_like(logits)
        dz[rows, labels] = 1
        g_t = model.backward_from_logits(dz).astype(np.float64)
        grad = np.stack([_affine(g, *t, inverse=True) for g, t in zip(g_t, transforms)])
        if grad_sigma:
            grad = ndimage.gaussian_filter(grad, sigma=(0, grad_sigma, grad_sigma, 0))
        grad /= _mean_size(grad)  # unit mean size: the prior weights below mean the same for any model
        if diversity:
            repel = diversity_gradient(x, labels)
            grad += diversity * repel / _mean_size(repel)
        grad -= tv * total_variation_gradient(x) + 2 * l2 * (x - 0.5)
        grad = damp_chroma(grad, chroma)
        x += step_size * grad / _mean_size(grad)
        if blur_every and (step + 1) % blur_every == 0:
            x = ndimage.gaussian_filter(x, sigma=(0, blur_sigma, blur_sigma, 0))
        np.clip(x, 0.0, 1.0, out=x)
    return x.astype(model.dtype)


def generate_artwork(model, seed: int = 0, label: int | None = None, **options) -> np.ndarray:
    """One picture (H, W, C) of class ``label`` from ``seed`` (the source document's ``generate_artwork(model,
    seed)``). Without ``label`` the class is drawn from the seed (``default_rng(seed).integers(classes)``).
    ``options``: those of ``generate_artworks`` (steps, tv, jitter, start, ...). Same seed, same bits."""
    if label is None:
        label = int(np.random.default_rng(int(seed)).integers(model.output_shape[-1]))
    return generate_artworks(model, [label], [seed], **options)[0]


def artwork_grid(model, labels, seeds, **options) -> np.ndarray:
    """A grid ``(len(labels), len(seeds), H, W, C)``: every label from every seed, as one batch, with the
    diversity term on (``diversity=0.5`` unless given). Why: the artwork CNN ends in Flatten + Dense, a
    layer tied to *positions*, so its optimum for a class is nearly one fixed layout and different seeded
    starts alone converge to near copies; the term pushes the seeds of a class apart. So a cell of the grid
    depends on the grid's other seeds; ``diversity=0`` makes each cell ``generate_artwork(model, s, label)``
    up to float rounding."""
    options.setdefault("diversity", 0.5)
    pairs = [(label, seed) for label in labels for seed in seeds]
    images = generate_artworks(model, [p[0] for p in pairs], [p[1] for p in pairs], **options)
    return images.reshape(len(labels), len(seeds), *images.shape[1:])
