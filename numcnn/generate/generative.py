"""Generative CNNs trained by hand: a seed and a label become a new image (``generate_digit(model, seed)``).

The source document's ``generate_digit(model, seed)`` is, in numcnn::

    gen = train_generator(x, y, kind="vae")          # or kind="gan"; x float32 (N, H, W, C) in [0, 1]
    image = sample(gen, label=3, seed=7)             # (H, W, C) float32 in [0, 1]: a new 3
    grid = sample_grid(gen, labels=range(10), seeds=range(10))     # (10, 10, H, W, C)
    walk = interpolate(gen, 3, seed_a=0, seed_b=1, steps=8)        # (8, H, W, C): a walk in latent space
    gen.save("digits.vae.npz"); gen = load_generator("digits.vae.npz")

Two models, both made of ordinary ``Sequential`` networks with numcnn's hand-written backward passes:

* ``kind="vae"``: a conditional convolutional variational autoencoder (``numcnn.generate.vae``);
* ``kind="gan"``: a conditional DCGAN with an auxiliary classifier on the discriminator
  (``numcnn.generate.gan``).

**What the seed and the label do.** The seed alone picks the latent vector ``z = N(0, I)`` drawn from
``numpy.random.default_rng(seed)``; the label is a one-hot vector concatenated to ``z`` (the decoder's or
generator's input is ``[z, onehot(label)]``). So the same seed with another label keeps the *style* (slant,
thickness: what ``z`` encodes) and changes the class, and the same seed and label give the same image, bit
for bit (one image per forward pass: no batch-size-dependent arithmetic).

Files: ``save`` writes numcnn's safe format (``numcnn.io.write_arrays_file``: JSON header + ``.npz`` arrays,
checksummed, no pickle): the header names the kind, its settings, each network's config and the training
history; the arrays are each network's weights, ``<network>/weight_<i>``.
"""

from __future__ import annotations

import numpy as np

GENERATOR_CONTENTS = "numcnn-generator"  # the header's "contents" key: tells a generator from a model file


# ----------------------------------------------------------------------------------------------
# Shared math (vectorised NumPy; the models' layers do the heavy work)
# ----------------------------------------------------------------------------------------------
def one_hot(labels, num_classes: int, dtype=np.float32) -> np.ndarray:
    """``(N,)`` integer labels -> ``(N, num_classes)`` one-hot rows."""
    labels = np.asarray(labels)
    out = np.zeros((labels.size, num_classes), dtype=dtype)
    out[np.arange(labels.size), labels.reshape(-1)] = 1
    return out


def label_planes(x: np.ndarray, labels, num_classes: int) -> np.ndarray:
    """``x`` (N, H, W, C) with ``num_classes`` constant planes appended: (N, H, W, C + K), plane ``y`` all ones.

    How a Sequential convolutional network is conditioned on a label: the label becomes extra input channels."""
    n, h, w, _ = x.shape
    planes = np.broadcast_to(one_hot(labels, num_classes, x.dtype)[:, None, None, :], (n, h, w, num_classes))
    return np.concatenate([x, planes], axis=-1)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-z))`` without overflow for large ``|z|`` (same dtype as ``z``)."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def bce_from_logits(z: np.ndarray, target) -> np.ndarray:
    """Element-wise binary cross-entropy of logits ``z`` against targets in [0, 1], in the stable form Keras
    uses: ``max(z, 0) - z * t + log(1 + exp(-|z|))``. Its derivative is ``dL/dz = sigmoid(z) - t``."""
    return np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))


def softmax_cross_entropy(logits: np.ndarray, labels) -> tuple[np.ndarray, np.ndarray]:
    """Per-row ``-log softmax(logits)[label]`` and ``dL/dlogits = softmax(logits) - onehot(label)`` (per row)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probabilities = shifted - log_norm
    rows = np.arange(len(logits))
    loss = -log_probabilities[rows, labels]
    gradient = np.exp(log_probabilities)
    gradient[rows, labels] -= 1
    return loss, gradient


def latent_vector(latent_dim: int, seed: int, dtype=np.float32) -> np.ndarray:
    """The latent vector of a seed: ``latent_dim`` standard normal draws of ``default_rng(seed)``."""
    return np.random.default_rng(seed).standard_normal(latent_dim).astype(dtype)


# ----------------------------------------------------------------------------------------------
# Arguments
# ----------------------------------------------------------------------------------------------
def check_training_data(x, y, num_classes=None):
    """``x`` float (N, H, W, C) in [0, 1] with H, W divisible by 4; ``y`` N integer labels. Returns
    ``(x float32, y int64, num_classes)``; anything else raises ValueError naming the problem."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be images (N, H, W, C), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"x must be floats in [0, 1] (e.g. numcnn.preprocessing.images_to_input), got {x.dtype}")
    if x.shape[1] % 4 or x.shape[2] % 4:
        raise ValueError(f"image height and width must be multiples of 4 (two stride-2 upsamplings), got "
                         f"{x.shape[1:3]}")
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 1:
        raise ValueError("x must hold finite values in [0, 1]")
    y = np.asarray(y)
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must be {len(x)} integer labels, got shape {y.shape} and dtype {y.dtype}")
    if y.min() < 0:
        raise ValueError(f"labels must be >= 0, got {y.min()}")
    num_classes = int(y.max()) + 1 if num_classes is None else int(num_classes)
    if y.max() >= num_classes:
        raise ValueError(f"label {y.max()} does not fit num_classes={num_classes}")
    return x.astype(np.float32, copy=False), y.astype(np.int64), num_classes


def check_label(gen, label) -> int:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or not 0 <= label < gen.num_classes:
        raise ValueError(f"label must be an integer in [0, {gen.num_classes}), got {label!r}")
    return int(label)


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


# ----------------------------------------------------------------------------------------------
# The common generator interface
# ----------------------------------------------------------------------------------------------
class Generator:
    """What ``sample`` and friends need: ``decode(z, labels)`` -> images in [0, 1], ``latent_dim``,
    ``num_classes``, ``image_shape``, the networks by name (``networks()``) and ``save``. ``history``: the
    loss curves of training, one value per epoch per name."""

    kind = ""

    def __init__(self, image_shape, num_classes: int, latent_dim: int):
        self.image_shape = tuple(int(d) for d in image_shape)
        self.num_classes = int(num_classes)
        self.latent_dim = int(latent_dim)
        self.history: dict[str, list[float]] = {}

    def networks(self) -> dict:
        raise NotImplementedError

    def settings(self) -> dict:
        """The constructor's keyword arguments (what ``from_settings`` needs besides the weights)."""
        raise NotImplementedError

    def decode_network(self):
        raise NotImplementedError

    def decode(self, z, labels) -> np.ndarray:
        """Images (N, H, W, C) float32 in [0, 1] for latent vectors ``z`` (N, latent_dim) and ``labels`` (N,),
        in inference mode (BatchNormalization on its moving statistics, no dropout)."""
        network = self.decode_network()
        z = np.asarray(z, dtype=network.dtype)
        inputs = np.concatenate([z, one_hot(labels, self.num_classes, network.dtype)], axis=1)
        return network.forward(inputs, training=False).astype(np.float32)

    def save(self, path) -> None:
        """Write the generator to ``path`` (numcnn's safe ``.npz`` format: no pickle, checksummed, atomic)."""
        from ..io import write_arrays_file

        networks = self.networks()
        arrays = {f"{name}/weight_{i}": w for name, net in networks.items() for i, w in enumerate(net.get_weights())}
        header = {"contents": GENERATOR_CONTENTS, "kind": self.kind, "settings": self.settings(),
                  "networks": {name: {"config": net.get_config(), "n_weights": len(net.get_weights())}
                               for name, net in networks.items()},
                  "history": self.history}
        write_arrays_file(path, header, arrays)

    def __repr__(self):
        return (f"{type(self).__name__}(image_shape={self.image_shape}, num_classes={self.num_classes}, "
                f"latent_dim={self.latent_dim})")


def _generator_classes() -> dict:
    from .gan import ConditionalGAN
    from .vae import ConditionalVAE

    return {"vae": ConditionalVAE, "gan": ConditionalGAN}


def load_generator(path) -> Generator:
    """Read a generator written by ``Generator.save``; a damaged or foreign file raises ``ModelFileError``."""
    from ..errors import ModelFileError
    from ..io import read_arrays_file
    from ..model import Sequential

    header, arrays = read_arrays_file(path)
    if header.get("contents") != GENERATOR_CONTENTS:
        raise ModelFileError(f"{path}: a numcnn model file, not a generator (use numcnn.load_model for models)")
    classes = _generator_classes()
    if header.get("kind") not in classes:
        raise ModelFileError(f"{path}: unknown generator kind {header.get('kind')!r}")
    try:
        networks = {}
        for name, entry in header["networks"].items():
            network = Sequential.from_config(entry["config"])
            network.set_weights([arrays[f"{name}/weight_{i}"] for i in range(int(entry["n_weights"]))])
            networks[name] = network
        gen = classes[header["kind"]].from_networks(networks, **header["settings"])
    except ModelFileError:
        raise
    except Exception as error:  # a checksum-valid file whose contents do not fit together
        raise ModelFileError(f"{path}: inconsistent generator file ({type(error).__name__}: {error})") from None
    gen.history = {key: [float(v) for v in values] for key, values in header.get("history", {}).items()}
    return gen


# ----------------------------------------------------------------------------------------------
# The contract: train, sample, grid, interpolate
# ----------------------------------------------------------------------------------------------
def train_generator(x, y, kind: str = "vae", epochs: int | None = None, seed: int = 0, batch_size=None,
                    latent_dim=None, learning_rate=None, num_classes=None, progress: bool = True, **options):
    """Train a conditional generator on images ``x`` (float32 (N, H, W, C) in [0, 1]) with labels ``y``.

    ``kind``: ``"vae"`` or ``"gan"``; ``epochs``, ``batch_size``, ``latent_dim``, ``learning_rate``: ``None``
    takes the kind's defaults (``ConditionalVAE.DEFAULTS`` / ``ConditionalGAN.DEFAULTS``), chosen to train a
    good model on the embedded 4,000 MNIST training digits in minutes on 2 CPU cores. ``seed`` fixes the
    weights, the shuffling and every noise draw: the same seed trains the same generator, bit for bit.
    ``options``: the kind's other settings (e.g. ``filters``, ``dropout``). Returns the trained generator,
    with ``gen.history`` (loss curves, one value per epoch)."""
    classes = _generator_classes()
    if kind not in classes:
        raise ValueError(f"kind must be 'vae' or 'gan', got {kind!r}")
    x, y, num_classes = check_training_data(x, y, num_classes)
    cls = classes[kind]
    settings = {"latent_dim": latent_dim, **options}
    settings = {key: value for key, value in settings.items() if value is not None}
    gen = cls(image_shape=x.shape[1:], num_classes=num_classes, seed=seed, **settings)
    fit = {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate}
    gen.fit(x, y, seed=seed, progress=progress, **{k: v for k, v in fit.items() if v is not None})
    return gen


def sample(gen: Generator, label: int, seed: int) -> np.ndarray:
    """One image (H, W, C) float32 in [0, 1] of class ``label`` from ``seed``: ``generate_digit(model, seed)``."""
    z = latent_vector(gen.latent_dim, check_seed(seed))
    return gen.decode(z[None], [check_label(gen, label)])[0]


def sample_grid(gen: Generator, labels, seeds) -> np.ndarray:
    """``(len(labels), len(seeds), H, W, C)``: row = label, column = seed. Entry ``[i, j]`` is bit-identical to
    ``sample(gen, labels[i], seeds[j])`` (each image is its own forward pass). Along a column the seed, and so
    the style, stays; along a row the class stays and the style varies."""
    labels, seeds = list(labels), list(seeds)
    grid = np.empty((len(labels), len(seeds), *gen.image_shape), dtype=np.float32)
    for i, label in enumerate(labels):
        for j, seed in enumerate(seeds):
            grid[i, j] = sample(gen, label, seed)
    return grid


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation: keeps the norm of Gaussian latent vectors typical (a straight line between two
    draws passes through the low-norm centre, which the decoder rarely saw in training)."""
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    angle = np.arccos(np.clip(cos, -1.0, 1.0))
    if angle < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * angle) * a + np.sin(t * angle) * b) / np.sin(angle)


def interpolate(gen: Generator, label: int, seed_a: int, seed_b: int, steps: int = 8) -> np.ndarray:
    """``steps`` images (steps, H, W, C) walking through latent space from ``seed_a``'s image to ``seed_b``'s
    (spherical interpolation), all of class ``label``: the first and last are ``sample(gen, label, seed_a/b)``."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"steps must be an integer >= 2, got {steps!r}")
    label = check_label(gen, label)
    a = latent_vector(gen.latent_dim, check_seed(seed_a)).astype(np.float64)
    b = latent_vector(gen.latent_dim, check_seed(seed_b)).astype(np.float64)
    images = []
    for t in np.linspace(0.0, 1.0, steps):
        z = a if t == 0 else b if t == 1 else slerp(a, b, t)
        images.append(gen.decode(z.astype(np.float32)[None], [label])[0])
    return np.stack(images)


def restyle(gen: Generator, seed: int, labels) -> np.ndarray:
    """The same style (seed) as every class in ``labels``: (len(labels), H, W, C) — ``sample_grid``'s column."""
    return sample_grid(gen, labels, [seed])[:, 0]
