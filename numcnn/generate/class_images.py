"""Class images from a seed: activation maximisation of a class **logit** with an image prior.

What the source document's ``generate_digit(model, seed)`` promised, done for real with the network's own
hand-written backward pass. Starting from a seeded image ``x``, repeat (Simonyan et al. 2013; Yosinski et
al. 2015; Olah et al. 2017)::

    x_t  = T(x)                          a small random shift / rotation / scale (transformation robustness)
    g    = T⁻¹( ∂ z_target(x_t) / ∂x_t )  the logit's input gradient, mapped back (exact for shifts)
    g   += - 2·l2·x - l1·sign(x) - tv·∇TV(x)               the image prior: decay and smoothness
    x   += step · g / mean|g|            normalised gradient ascent
    x    = blur(x) every ``blur_every`` steps;  x = clip(x, data range)

Why the prior: plain ascent finds "fooling" patterns the network scores highly but no person would call a
digit (Nguyen et al. 2015). Decay, smoothness and robustness to small transformations push the optimum
towards images that look like the data. Why the logit and not the softmax probability: the probability can
rise by pushing the *other* classes down, which is not the same as looking more like the target.

Every image has its own ``numpy.random.Generator`` seeded from ``(seed, target)``, so the same seed and
arguments give a bit-identical image.

**Seeds that matter.** From dim uniform noise every seed climbs to nearly the same optimum. Two things make
the seed decide *which* digit comes out:

* ``start="strokes"`` (the default): the seed draws a few random smooth strokes (blurred random walks), a
  start that already has a shape of its own for the ascent to bend into the class;
* ``diversity`` (Olah et al. 2017, "Feature Visualization", the diversity objective): in a batch, images of
  the same target repel each other. With ``u_i = blur(x_i) - mean(blur(x_i))`` scaled to unit norm, the term
  ``D = -(1 / (K-1)) Σ_{j≠i} u_i · u_j`` (minus the mean cosine similarity to the other seeds) is added to the
  objective; its gradient ``-(1/(K-1)) Σ_{j≠i} (u_j - (u_i·u_j) u_i) / |blur(x_i) - mean|`` (through the
  linear blur) is rescaled to ``diversity`` times the mean size of the logit's gradient, so the weight means
  the same for any model. Measured on the seed model, 10 classes x 10 seeds, judged by the independent
  classifier of tests/test_generate.py: diversity 0 -> 100% recognised, seeds' spread 0.15 of real digits';
  0.15 -> 100%, 0.33; 0.3 -> 85%, 0.50 (a weight that fell to 0 over the steps let them converge again). A batch of one image has no partner, so ``class_image(model, t, seed)`` is
  ``class_images(model, [t], [seed])`` exactly; a cell of a larger grid depends on the grid's seeds.

**In a generator's latent space** (``generator=gen``; Nguyen et al. 2016, "Synthesizing the preferred
inputs for neurons via deep generator networks"). A conditional generator (``numcnn.generate.train_generator``)
draws digits, not arbitrary pixel patterns; the search then moves its latent vector ``z`` instead of pixels::

    x(z)  = decode([z, onehot(target)])        the generator's decoder, a numcnn Sequential
    J(z)  = z_target(classifier(x(z))) - latent_penalty · |z|²
    ∂J/∂z = [ decoder.backward( classifier.backward_from_logits(e_target) ) ]_{first latent_dim columns}
            - 2 · latent_penalty · z                                      (chain rule, both backward passes)
    z    += step · ∂J/∂z / rms(∂J/∂z)          normalised gradient ascent

starting from the seed's own latent vector ``latent_vector(latent_dim, seed)`` (so ``steps=0`` returns
``sample(gen, target, seed)``). The one-hot label is a constant input: the backward of the concatenation is a
slice. The seed decides the style (different seeds start in different places and stay near them), the decoder
keeps the image on the generator's "digit manifold" (no checkerboard: the decoder never drew one), and the
classifier's logit pushes the image towards what the classifier calls the target. Measured on the seed model
with the default conditional VAE (benchmarks/class_images.py, 10 classes x 10 seeds, the independent judge of
tests/test_generate.py): the VAE's own samples 98% recognised, seeds' spread 0.70 of real digits'; 5 steps
(the default) 100%, 0.63 (worst class 0.55); 15 steps 100%, 0.51 (0.38): more steps let the seeds meet
(``LATENT_STEPS``).

(In pixel space a total-variation weight of 0.5 left a faint checkerboard: normalised with the rest, its step
is an explicit diffusion step too large for the Nyquist frequency. The default ``tv=0.1`` has none: 99%,
spread 0.68; see ``Prior``.)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


PIXEL_STEPS = 256   # default steps of gradient ascent in pixel space
# ... and in a generator's latent space. More steps let the seeds of a class meet: measured with
# benchmarks/class_images.py on the default conditional VAE (seed 0), judge agreement / mean spread (worst
# class) of 10 x 10 images: 0 steps 98% / 0.70 (0.63), 3: 100% / 0.66 (0.60), 5: 100% / 0.63 (0.55),
# 8: 100% / 0.59 (0.48), 15: 100% / 0.51 (0.38). 5 keeps every class above half the spread of real digits.
LATENT_STEPS = 5
STEP_SIZE = 0.05    # default step of both, relative to the gradient's size (mean |g| in pixels, rms in latent)


@dataclass
class Prior:
    """Regulariser weights and transformation ranges (defaults tuned on the seed MNIST model, range [0, 1])."""

    l2: float = 0.02              # weight of ||x||²
    l1: float = 0.02              # weight of |x|
    # weight of the total variation Σ (∂x/∂row)² + (∂x/∂col)². 0.5 left a checkerboard (its normalised step is
    # an explicit diffusion step too large at Nyquist): measured with benchmarks/class_images.py --pixel, judge
    # / spread (worst class) / power near Nyquist vs real digits' — tv 0.5: 94% / 0.40 (0.27) / 14x; 0.1: 99% /
    # 0.68 (0.52) / 0.07x; 0: 95% / 0.89 (0.74) / 0.27x.
    tv: float = 0.1
    blur_every: int = 4           # Gaussian blur every N steps (0: never)
    blur_sigma: float = 0.5
    jitter: int = 2               # random shift of up to N pixels
    rotate: float = 5.0           # random rotation of up to N degrees
    scale: float = 0.05           # random zoom in [1 - s, 1 + s]
    clip: bool = True             # keep pixels in the data range

    @classmethod
    def off(cls) -> "Prior":
        """Plain gradient ascent, every regulariser off (clipping included): the fooling-image baseline."""
        return cls(l2=0.0, l1=0.0, tv=0.0, blur_every=0, jitter=0, rotate=0.0, scale=0.0, clip=False)


def image_rng(seed: int, target: int) -> np.random.Generator:
    """The generator of one image: independent streams for every (seed, target) pair."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(target)]))


def total_variation_gradient(x: np.ndarray) -> np.ndarray:
    """Gradient of ``TV(x) = Σ (x[r+1,c] - x[r,c])² + (x[r,c+1] - x[r,c])²`` over the spatial axes of (N, H, W, C)."""
    grad = np.zeros_like(x)
    d_rows = x[:, 1:] - x[:, :-1]
    d_cols = x[:, :, 1:] - x[:, :, :-1]
    grad[:, 1:] += 2 * d_rows
    grad[:, :-1] -= 2 * d_rows
    grad[:, :, 1:] += 2 * d_cols
    grad[:, :, :-1] -= 2 * d_cols
    return grad


def _affine(image: np.ndarray, angle: float, zoom: float, shift, inverse: bool) -> np.ndarray:
    """Rotate by ``angle`` degrees and zoom about the centre, then shift; ``inverse`` undoes it (H, W, C)."""
    if angle == 0 and zoom == 1 and shift == (0, 0):
        return image
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) / zoom
    centre = (np.array(image.shape[:2]) - 1) / 2
    shift = np.asarray(shift, dtype=float)
    if inverse:  # output pixel o reads input at R⁻¹ (o - centre) + centre + shift
        matrix = np.linalg.inv(rotation)
        offset = centre + shift - matrix @ centre
    else:        # output pixel o reads input at R (o - centre - shift) + centre
        matrix = rotation
        offset = centre - matrix @ (centre + shift)
    out = np.empty_like(image)
    for channel in range(image.shape[2]):
        out[..., channel] = ndimage.affine_transform(image[..., channel], matrix, offset=offset, order=1,
                                                     mode="constant", cval=0.0)
    return out


def _draw_transforms(rngs, prior: Prior):
    transforms = []
    for rng in rngs:
        shift = tuple(int(v) for v in rng.integers(-prior.jitter, prior.jitter + 1, size=2)) if prior.jitter else (0, 0)
        angle = float(rng.uniform(-prior.rotate, prior.rotate)) if prior.rotate else 0.0
        zoom = float(rng.uniform(1 - prior.scale, 1 + prior.scale)) if prior.scale else 1.0
        transforms.append((angle, zoom, shift))
    return transforms


def random_strokes(shape, rng, strokes: int = 3, length: int = 12, width: float = 1.2) -> np.ndarray:
    """A seeded start with a shape of its own: ``strokes`` random walks of ``length`` steps of about 1.5 px
    with a slowly turning direction, drawn on a blank (H, W, C) image and blurred to pen strokes; the peak is 1."""
    height, width_px = shape[:2]
    canvas = np.zeros((height, width_px))
    for _ in range(strokes):
        position = np.array([rng.uniform(0.25, 0.75) * height, rng.uniform(0.25, 0.75) * width_px])
        angle = rng.uniform(0, 2 * np.pi)
        for _ in range(length):
            angle += rng.normal(scale=0.5)  # a pen turns smoothly, it does not jump
            position = np.clip(position + 1.5 * np.array([np.sin(angle), np.cos(angle)]), 0, [height - 1, width_px - 1])
            canvas[int(position[0]), int(position[1])] = 1.0
    canvas = ndimage.gaussian_filter(canvas, width)
    canvas /= canvas.max() + 1e-12
    return np.repeat(canvas[..., None], shape[2], axis=-1)


def start_images(shape, rngs, start="strokes", value_range=(0.0, 1.0)) -> np.ndarray:
    """Seeded starting points: ``"strokes"`` (random pen strokes plus dim noise), ``"noise"`` (dim uniform
    noise), ``"zeros"``, or an array (one image or one per rng)."""
    low, high = value_range
    if isinstance(start, str):
        if start == "strokes":
            return np.stack([low + (high - low) * (0.6 * random_strokes(shape, rng) + 0.1 * rng.random(shape))
                             for rng in rngs])
        if start == "noise":
            return np.stack([low + (high - low) * 0.2 * rng.random(shape) for rng in rngs])
        if start == "zeros":
            return np.full((len(rngs), *shape), low, dtype=np.float64)
        raise ValueError(f"start must be 'strokes', 'noise', 'zeros' or an image array, got {start!r}")
    return start_array(start, shape, len(rngs))


def start_array(start, shape, count: int) -> np.ndarray:
    """A given start as ``count`` float64 images: one image (repeated) or one per image already."""
    start = np.asarray(start, dtype=np.float64)
    if start.shape == tuple(shape):
        return np.repeat(start[None], count, axis=0)
    if start.shape == (count, *shape):
        return start.copy()
    raise ValueError(f"start image must have shape {tuple(shape)} or {(count, *shape)}, got {start.shape}")


def diversity_gradient(x, targets, sigma: float = 1.0) -> np.ndarray:
    """Gradient of ``D = -mean_{j≠i, same target} cos(blur(x_i) - mean, blur(x_j) - mean)`` for every image
    of the batch (N, H, W, C); zero for an image with no partner of its target."""
    blurred = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0))
    centred = blurred - blurred.mean(axis=(1, 2, 3), keepdims=True)
    norms = np.sqrt(np.sum(centred**2, axis=(1, 2, 3), keepdims=True)) + 1e-12
    unit = centred / norms
    grad = np.zeros_like(x)
    for target in np.unique(targets):
        members = np.flatnonzero(targets == target)
        if len(members) < 2:
            continue
        u = unit[members].reshape(len(members), -1)
        cos = u @ u.T
        np.fill_diagonal(cos, 0)
        # d cos(u_i, u_j) / d centred_i = (u_j - cos_ij u_i) / |centred_i|; the mean removal is absorbed
        # because u_j has zero mean and the blur is symmetric (its adjoint is itself)
        others = (np.ones_like(cos) - np.eye(len(members))) @ u          # Σ_{j≠i} u_j
        d_cos = (others - cos.sum(1, keepdims=True) * u) / norms[members].reshape(-1, 1)
        grad[members] = -d_cos.reshape(-1, *x.shape[1:]) / (len(members) - 1)
    return ndimage.gaussian_filter(grad, sigma=(0, sigma, sigma, 0))


def maximise_logits(model, targets, rngs, steps=PIXEL_STEPS, step_size=STEP_SIZE, prior: Prior | None = None,
                    start="strokes", value_range=(0.0, 1.0), progress=False, history=None,
                    diversity: float = 0.2) -> np.ndarray:
    """The batched optimisation behind ``class_image``/``class_images`` (see the module docstring)."""
    from tqdm.auto import tqdm

    prior = prior or Prior()
    targets = np.asarray(targets, dtype=np.int64)
    x = start_images(model.input_shape, rngs, start, value_range)
    rows = np.arange(len(targets))
    for step in tqdm(range(steps), desc="generating", disable=not progress, leave=False):
        transforms = _draw_transforms(rngs, prior)
        x_t = np.stack([_affine(image, *t, inverse=False) for image, t in zip(x, transforms)])
        logits = model.forward_logits(x_t.astype(model.dtype))
        dz = np.zeros_like(logits)
        dz[rows, targets] = 1  # d(sum of the target logits)/dz
        g_t = model.backward_from_logits(dz).astype(np.float64)
        grad = np.stack([_affine(g, *t, inverse=True) for g, t in zip(g_t, transforms)])
        if diversity:
            repel = diversity_gradient(x, targets)
            size = np.mean(np.abs(grad), axis=(1, 2, 3), keepdims=True)
            grad += diversity * size * repel / (np.mean(np.abs(repel), axis=(1, 2, 3), keepdims=True) + 1e-12)
        grad -= 2 * prior.l2 * x + prior.l1 * np.sign(x) + prior.tv * total_variation_gradient(x)
        scale = np.mean(np.abs(grad), axis=(1, 2, 3), keepdims=True) + 1e-12
        x += step_size * grad / scale
        if prior.blur_every and (step + 1) % prior.blur_every == 0:
            x = ndimage.gaussian_filter(x, sigma=(0, prior.blur_sigma, prior.blur_sigma, 0))
        if prior.clip:
            np.clip(x, *value_range, out=x)
        if history is not None:
            history.append({"step": step, "target_logit": float(np.mean(logits[rows, targets])),
                            "l2": float(np.mean(np.sum(x**2, axis=(1, 2, 3)))),
                            "tv": float(np.mean(np.sum(np.diff(x, axis=1) ** 2, axis=(1, 2, 3))))})
    return x.astype(model.dtype)


def class_image(model, target: int, seed: int = 0, steps: int | None = None, step_size: float | None = None,
                prior: Prior | None = None, start="strokes", value_range=(0.0, 1.0), progress=False,
                generator=None, latent_penalty: float = 0.01, **prior_weights):
    """One image (H, W, C) that model scores as ``target``, from ``seed``. ``prior_weights`` override
    fields of ``Prior`` (e.g. ``tv=1.0``, ``jitter=0``); ``prior=Prior.off()`` disables the image prior.

    ``generator``: search a conditional generator's latent space instead of pixels (``maximise_latent``;
    ``prior``, ``start`` and ``value_range`` are then unused). ``steps`` / ``step_size`` default to ``PIXEL_STEPS``
    (256) / ``STEP_SIZE`` (0.05) in pixel space and ``LATENT_STEPS`` (5) / ``STEP_SIZE`` in latent space."""
    if generator is not None:
        return class_images(model, [target], [seed], steps, step_size, progress=progress, generator=generator,
                            latent_penalty=latent_penalty)[0, 0]
    steps, step_size = PIXEL_STEPS if steps is None else steps, STEP_SIZE if step_size is None else step_size
    prior = Prior(**{**asdict(prior or Prior()), **prior_weights})
    return maximise_logits(model, [target], [image_rng(seed, target)], steps, step_size, prior, start,
                           value_range, progress)[0]


def class_images(model, targets, seeds, steps: int | None = None, step_size: float | None = None,
                 prior: Prior | None = None, start="strokes", value_range=(0.0, 1.0), progress=False,
                 diversity: float = 0.2, generator=None, latent_penalty: float = 0.01, **prior_weights):
    """A grid of class images, shape (len(targets), len(seeds), H, W, C), optimised as one batch.

    ``diversity``: weight of the term that pushes the seeds of one class apart (0: independent images).
    With ``diversity=0``, image ``[i, j]`` equals ``class_image(model, targets[i], seeds[j])`` up to float
    rounding (a batch is summed in a different order). The grid is bit-identical from call to call.

    ``generator``: a conditional generator (``train_generator`` / ``load_generator``) whose latent space is
    searched instead of pixels (``maximise_latent``, penalty ``latent_penalty·|z|²``); every image then
    depends on its own seed only (the diversity term is not used: the seeds' latent vectors differ)."""
    pairs = [(t, s) for t in targets for s in seeds]
    step_size = STEP_SIZE if step_size is None else step_size
    if generator is not None:
        images = maximise_latent(model, generator, [t for t, _ in pairs], [s for _, s in pairs],
                                 LATENT_STEPS if steps is None else steps, step_size, latent_penalty, progress)
        return images.reshape(len(targets), len(seeds), *images.shape[1:])
    steps = PIXEL_STEPS if steps is None else steps
    prior = Prior(**{**asdict(prior or Prior()), **prior_weights})
    images = maximise_logits(model, [t for t, _ in pairs], [image_rng(s, t) for t, s in pairs], steps, step_size,
                             prior, start, value_range, progress, diversity=diversity)
    return images.reshape(len(targets), len(seeds), *images.shape[1:])


# ----------------------------------------------------------------------------------------------
# In a generator's latent space (Nguyen et al. 2016)
# ----------------------------------------------------------------------------------------------
def latent_starts(generator, seeds) -> np.ndarray:
    """The seeds' latent vectors (N, latent_dim) float64: ``sample(gen, label, seed)``'s own ``z``."""
    from .generative import check_seed, latent_vector

    return np.stack([latent_vector(generator.latent_dim, check_seed(s)).astype(np.float64) for s in seeds])


def check_generator(model, generator) -> None:
    """The generator must draw what the classifier reads: same image shape, one label per class."""
    if tuple(generator.image_shape) != tuple(model.input_shape):
        raise ValueError(f"the generator draws images of shape {tuple(generator.image_shape)}, the model reads "
                         f"{tuple(model.input_shape)}")
    if generator.num_classes != model.output_shape[-1]:
        raise ValueError(f"the generator knows {generator.num_classes} labels, the model {model.output_shape[-1]} "
                         f"classes")


def latent_objective_and_gradient(model, generator, z, targets, latent_penalty: float = 0.0):
    """``J_n(z_n) = logit_{target_n}(model(decode(z_n, target_n))) - latent_penalty·|z_n|²`` and ``∂J_n/∂z_n``.

    Returns ``(J (N,), dJ/dz (N, latent_dim) float64, images (N, H, W, C))``. The gradient is the classifier's
    logit input gradient carried back through the decoder by its own ``backward``; the decoder's input is
    ``[z, onehot]``, so ``dJ/dz`` is the first ``latent_dim`` columns of ``dJ/d(input)``."""
    from .generative import one_hot

    decoder = generator.decode_network()
    targets = np.asarray(targets, dtype=np.int64)
    inputs = np.concatenate([z, one_hot(targets, generator.num_classes, np.float64)], axis=1)
    images = decoder.forward(inputs.astype(decoder.dtype), training=False)
    logits = model.forward_logits(images.astype(model.dtype))
    rows = np.arange(len(targets))
    d_logits = np.zeros_like(logits)
    d_logits[rows, targets] = 1  # d(sum of the target logits)/d(logits); each image only sees its own
    d_images = model.backward_from_logits(d_logits)
    d_inputs = decoder.backward(d_images.astype(decoder.dtype))
    gradient = d_inputs[:, :generator.latent_dim].astype(np.float64) - 2 * latent_penalty * z
    objective = logits[rows, targets].astype(np.float64) - latent_penalty * np.sum(z**2, axis=1)
    return objective, gradient, images


def maximise_latent(model, generator, targets, seeds, steps=LATENT_STEPS, step_size=STEP_SIZE, latent_penalty=0.01,
                    progress=False, history=None) -> np.ndarray:
    """Gradient ascent of ``J`` over the latent vectors, from the seeds' own (see the module docstring).

    Each step moves every ``z_n`` by ``step_size · sqrt(latent_dim)`` in length along its gradient (the step is
    normalised by the gradient's root mean square). Returns the decoded images (N, H, W, C) float32 of the
    final ``z`` (``generator.decode``: what ``sample`` would draw from them)."""
    from tqdm.auto import tqdm

    from .generative import check_label

    check_generator(model, generator)
    targets = np.array([check_label(generator, t) for t in targets], dtype=np.int64)
    z = latent_starts(generator, seeds)
    for step in tqdm(range(steps), desc="generating", disable=not progress, leave=False):
        objective, gradient, _ = latent_objective_and_gradient(model, generator, z, targets, latent_penalty)
        rms = np.sqrt(np.mean(gradient**2, axis=1, keepdims=True)) + 1e-12
        z += step_size * gradient / rms
        if history is not None:
            history.append({"step": step, "objective": float(np.mean(objective)),
                            "latent_norm": float(np.mean(np.linalg.norm(z, axis=1)))})
    return generator.decode(z.astype(np.float32), targets).astype(model.dtype)
