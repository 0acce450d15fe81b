"""MNIST and Fashion-MNIST, read from wherever they already are, downloaded with checks, or embedded.

``load_mnist()`` / ``load_fashion_mnist()`` return ``(x_train, y_train), (x_test, y_test)`` like
``keras.datasets``: images uint8 (N, 28, 28), labels uint8 (N,).

Where they look, in order: an explicit ``path=`` (a folder of IDX files or a Keras ``mnist.npz``), the folder in
``$NUMCNN_DATA``, numcnn's cache (``$NUMCNN_CACHE_DIR`` or ``~/.cache/numcnn/<name>``), Keras's
``~/.keras/datasets``, and for Fashion-MNIST the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``). If nothing is found they download from the canonical mirror into the
cache (checked against a SHA-256, written atomically), and MNIST finally falls back to the **embedded sample**:
5,000 real MNIST images shipped in ``numcnn/data/mnist_5k.npz`` (4,000 train / 1,000 test).

File formats are parsed here with ``np.frombuffer`` (IDX) or ``np.load(allow_pickle=False)`` (npz): nothing in a
data file is ever executed.

``load_artwork()`` builds the 10-class 128x128x3 "artwork" set of the source document's second example from
photographs and textures that ship with scikit-image (see its docstring for each image and its license).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .errors import NumcnnError
from .io import atomic_write_bytes

EMBEDDED_MNIST = Path(__file__).parent / "data" / "mnist_5k.npz"
EMBEDDED_TRAIN_SIZE = 4000
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# Download sources. Each file is checked against a SHA-256 before it is kept.
#  * MNIST: Keras's mnist.npz; digest from keras/src/datasets/mnist.py (file_hash).
#  * Fashion-MNIST: the four IDX .gz files of the project's own mirror. The digests are of the *decompressed*
#    IDX bytes (the .gz bytes depend on the compressor; Debian re-compressed them), computed from Debian's
#    dataset-fashion-mnist package, whose content is the Zalando originals (60,000 / 10,000 images).
MIRRORS = {
    "mnist": "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}
CHECKSUMS = {
    "mnist": {"mnist.npz": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"},
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
DOWNLOAD_TIMEOUT_SECONDS = 10


class DatasetError(NumcnnError, ValueError):
    """A data file is missing, malformed, or failed its checksum."""


_NOTICES_SHOWN: set[str] = set()


def notice(message: str, once: str | None = None) -> None:
    """One line on stderr; with ``once`` (a key), at most once per process: an offline user calling
    ``load_mnist()`` in a loop needs to hear that the download failed once, not on every call."""
    if once is not None:
        if once in _NOTICES_SHOWN:
            return
        _NOTICES_SHOWN.add(once)
    print(f"numcnn: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# File formats
# ----------------------------------------------------------------------------------------------
def read_idx(path) -> np.ndarray:
    """Parse an IDX file (optionally gzipped): magic ``0x0000 <dtype> <ndim>``, big-endian uint32 sizes, data.

    Only unsigned bytes (dtype code 0x08) occur in (Fashion-)MNIST and only those are accepted.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: cannot read ({error})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise DatasetError(f"{path}: IDX element type 0x{data[2]:02x} is not unsigned bytes (0x08)")
    ndim = data[3]
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(data) < header_size:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header_size + int(np.prod(shape))
    if len(data) != expected:
        raise DatasetError(f"{path}: IDX payload is {len(data) - header_size} bytes, shape {shape} needs "
                           f"{expected - header_size} (truncated or corrupted)")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape).copy()


def _find_idx(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    # Some distributions name them train-images.idx3-ubyte
    dotted = folder / stem.replace("-idx", ".idx")
    return dotted if dotted.is_file() else None


def read_idx_folder(folder) -> tuple | None:
    """The four standard IDX files of ``folder`` as ``(x_train, y_train), (x_test, y_test)``, or None."""
    folder = Path(folder)
    paths = {key: _find_idx(folder, stem) for key, stem in IDX_FILES.items()}
    if not all(paths.values()):
        return None
    arrays = {key: read_idx(path) for key, path in paths.items()}
    return _checked_split(arrays, folder)


def read_keras_npz(path) -> tuple:
    """Keras's ``mnist.npz`` (keys x_train, y_train, x_test, y_test)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in IDX_FILES}
    except (KeyError, ValueError, OSError, EOFError) as error:
        raise DatasetError(f"{path}: not a Keras-style dataset .npz ({error})") from None
    return _checked_split(arrays, path)


def _checked_split(arrays: dict, source) -> tuple:
    for part in ("train", "test"):
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(f"{source}: {part} images {x.shape} and labels {y.shape} do not match")
    return (arrays["x_train"].astype(np.uint8), arrays["y_train"].astype(np.uint8)), (
        arrays["x_test"].astype(np.uint8), arrays["y_test"].astype(np.uint8))


def read_path(path) -> tuple:
    """An explicit ``path``: a folder of IDX files or a ``.npz`` file."""
    path = Path(path).expanduser()
    if path.is_file() and path.suffix == ".npz":
        return read_keras_npz(path)
    if path.is_dir():
        for candidate in (path, path / "raw"):
            found = read_idx_folder(candidate)
            if found is not None:
                return found
        if (path / "mnist.npz").is_file():
            return read_keras_npz(path / "mnist.npz")
    raise DatasetError(f"{path}: expected a folder with the four *-ubyte(.gz) IDX files or a Keras .npz file")


# ----------------------------------------------------------------------------------------------
# Download
# ----------------------------------------------------------------------------------------------
def cache_dir(name: str) -> Path:
    root = os.environ.get("NUMCNN_CACHE_DIR") or Path.home() / ".cache" / "numcnn"
    return Path(root) / name


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_file(url: str, target: Path, expected_sha256: str, decompress: bool = False) -> Path:
    """Fetch ``url``, check the SHA-256 (of the decompressed bytes if ``decompress``), write ``target``
    atomically. A wrong checksum raises ``DatasetError`` and leaves nothing behind."""
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            data = response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise DatasetError(f"cannot download {url} ({error})") from None
    if decompress:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise DatasetError(f"{url}: not a valid gzip file ({error})") from None
    digest = _sha256(data)
    if digest != expected_sha256:
        raise DatasetError(f"{url}: SHA-256 {digest} does not match the expected {expected_sha256}")
    atomic_write_bytes(target, data)
    return target


def download(name: str, base_url: str | None = None, checksums: dict | None = None, directory=None) -> tuple:
    """Download dataset ``name`` from its mirror into the cache (or ``directory``) and load it."""
    base_url = base_url or os.environ.get(f"NUMCNN_{name.upper().replace('-', '_')}_MIRROR") or MIRRORS[name]
    checksums = checksums or CHECKSUMS[name]
    directory = Path(directory) if directory else cache_dir(name)
    if name == "mnist":
        target = download_file(base_url + "mnist.npz", directory / "mnist.npz", checksums["mnist.npz"])
        return read_keras_npz(target)
    for stem in IDX_FILES.values():
        if not (directory / stem).is_file():
            download_file(f"{base_url}{stem}.gz", directory / stem, checksums[stem], decompress=True)
    return read_idx_folder(directory)


# ----------------------------------------------------------------------------------------------
# Public loaders
# ----------------------------------------------------------------------------------------------
def load_embedded_mnist() -> tuple:
    """The embedded sample: 5,000 real MNIST images, the first 4,000 for training, the last 1,000 for test."""
    with np.load(EMBEDDED_MNIST, allow_pickle=False) as archive:
        x, y = archive["x"], archive["y"]
    n = EMBEDDED_TRAIN_SIZE
    return (x[:n], y[:n]), (x[n:], y[n:])


def _local_sources(name: str, path) -> list[Path]:
    sources = []
    if path is not None:
        sources.append(Path(path))
    if os.environ.get("NUMCNN_DATA"):
        sources.append(Path(os.environ["NUMCNN_DATA"]))
    sources.append(cache_dir(name))
    keras_dir = Path.home() / ".keras" / "datasets"
    sources += [keras_dir / "mnist.npz"] if name == "mnist" else [keras_dir / "fashion-mnist"]
    if name == "fashion-mnist":
        sources.append(DEBIAN_FASHION_MNIST)
    return sources


def _load(name: str, path=None, download_missing: bool = True, base_url: str | None = None):
    if path is not None:
        return read_path(path)
    for source in _local_sources(name, None):
        if source.exists():
            try:
                return read_path(source)
            except DatasetError:
                continue  # an unrelated folder or an incomplete cache: keep looking
    if download_missing:
        try:
            return download(name, base_url=base_url)
        except DatasetError as error:
            notice(f"{name}: download failed: {error}", once=f"{name} download failed")
    return None


def load_mnist(path=None, download: bool = True, base_url: str | None = None, verbose: bool = True) -> tuple:
    """MNIST: the full 60,000/10,000 set if found or downloadable, else the embedded 5,000-image sample."""
    found = _load("mnist", path, download, base_url)
    if found is not None:
        return found
    if verbose:
        notice("MNIST not found locally or online; using the embedded 5,000-image sample "
               "(4,000 train / 1,000 test)", once="mnist embedded fallback")
    return load_embedded_mnist()


def load_fashion_mnist(path=None, download: bool = True, base_url: str | None = None) -> tuple:
    """Fashion-MNIST (Zalando, MIT license): 60,000 train / 10,000 test images of 10 clothing classes."""
    found = _load("fashion-mnist", path, download, base_url)
    if found is None:
        raise DatasetError("Fashion-MNIST not found: install the Debian package dataset-fashion-mnist, set "
                           "NUMCNN_DATA to a folder with its IDX files, or allow the download")
    return found


def load_dataset(name_or_path: str) -> tuple:
    """``"mnist-5k"``/``"embedded"`` (offline sample), ``"mnist"``, ``"fashion-mnist"``, ``"artwork"``
    (``load_artwork()`` with its defaults), or a path."""
    key = str(name_or_path).lower()
    if key in ("mnist-5k", "embedded"):
        return load_embedded_mnist()
    if key == "artwork":
        return load_artwork()
    if key == "mnist":
        return load_mnist()
    if key in ("fashion-mnist", "fashion_mnist"):
        return load_fashion_mnist()
    path = Path(name_or_path).expanduser()
    if path.exists():
        return read_path(path)
    if _looks_like_path(str(name_or_path)):
        raise DatasetError(f"dataset path {name_or_path} was not found (expected a folder with the four "
                           f"*-ubyte(.gz) IDX files or a Keras-style .npz file)")
    raise DatasetError(f"unknown dataset {name_or_path!r}: use mnist-5k, mnist, fashion-mnist, artwork, or the path of a "
                       f"folder of IDX files or a .npz file")


def _looks_like_path(text: str) -> bool:
    """``/data/mnist``, ``./x``, ``~/x``, ``x/y``, ``mnist.npz``: meant as a path, not a dataset's name."""
    return os.sep in text or "/" in text or text.startswith(("~", ".")) or Path(text).suffix in (".npz", ".gz")


# ----------------------------------------------------------------------------------------------
# The "artwork" set: 10 classes of 128x128x3 patches cut from images that ship with scikit-image
# ----------------------------------------------------------------------------------------------
ARTWORK_SIZE = 128
ARTWORK_CROP_SCALE = (0.87, 1.15)   # a training crop's side is 128·s before it is resized to 128
ARTWORK_BRIGHTNESS = (0.9, 1.1)     # a training patch's pixels are multiplied by b (then clipped)
ARTWORK_HELD_OUT_FRACTION = 0.3     # share of each source image's longer side kept for held-out patches

# (class name, skimage.data function, zoom applied first, held-out band: "right" or "bottom" edge, license as
# scikit-image's docstrings state it). The astronaut's right edge is a different scene (a shuttle model), so its
# band is the bottom one (more of the orange suit): held-out patches should be new views of the same class.
ARTWORK_SOURCES = (
    ("brick", "brick", 1.0, "right", "CC0 (CC0Textures, Bricks25)"),
    ("gravel", "gravel", 1.0, "right", "CC0 (CC0Textures, Gravel04)"),
    ("grass", "grass", 1.0, "right", "CC0 (DeviantArt, linolafett)"),
    ("coins", "coins", 1.0, "right", "no known copyright restrictions (Brooklyn Museum)"),
    ("coffee", "coffee", 1.0, "right", "CC0 (photographer Rachel Michetti)"),
    ("cat", "chelsea", 1.0, "right", "CC0 (photographer Stefan van der Walt)"),
    ("astronaut", "astronaut", 1.0, "bottom", "public domain (NASA)"),
    ("rocket", "rocket", 1.0, "right", "public domain (SpaceX)"),
    ("deep field", "hubble_deep_field", 0.5, "right", "public domain (NASA, HubbleSite)"),
    ("tissue", "immunohistochemistry", 1.0, "right", "no known copyright restrictions (CMMI)"),
)
ARTWORK_CLASSES = tuple(name for name, *_ in ARTWORK_SOURCES)


def artwork_source_image(skimage_name: str, zoom: float = 1.0) -> np.ndarray:
    """One scikit-image sample image as uint8 (H, W, 3): greyscale repeated to RGB, ``zoom`` applied first."""
    try:
        from skimage import data
    except ModuleNotFoundError:
        raise DatasetError("the artwork data set is cut from scikit-image's sample images: "
                           "pip install scikit-image (or pip install -e '.[artwork]' in a numcnn checkout)") from None
    image = np.asarray(getattr(data, skimage_name)())
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if zoom != 1.0:
        height, width = (int(round(d * zoom)) for d in image.shape[:2])
        image = resize_bilinear(image, height, width)
    return image


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of uint8 (H, W, C) with pixel centres aligned (output pixel i samples the input at
    ``(i + ½)·H/height - ½``, clamped to the edges); vectorised gathers, no loop over pixels."""
    def axis_weights(n_in, n_out):
        position = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (position - low).astype(np.float32)

    rows_low, rows_high, row_t = axis_weights(image.shape[0], height)
    cols_low, cols_high, col_t = axis_weights(image.shape[1], width)
    x = image.astype(np.float32)
    top, bottom = x[rows_low], x[rows_high]
    rows = top + (bottom - top) * row_t[:, None, None]
    left, right = rows[:, cols_low], rows[:, cols_high]
    out = left + (right - left) * col_t[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def artwork_regions(image_shape, max_crop: int, held_out: str = "right") -> dict[str, tuple[slice, slice]]:
    """Disjoint train and held-out regions of one source image: a band along its ``"right"`` or ``"bottom"``
    edge, ``ARTWORK_HELD_OUT_FRACTION`` of that side (at least ``max_crop`` pixels), is held out, the rest is for
    training. A patch lies wholly inside one region, so no source pixel appears in both splits."""
    if held_out not in ("right", "bottom"):
        raise ValueError(f"held_out must be 'right' or 'bottom', got {held_out!r}")
    height, width = image_shape[:2]
    along_width = held_out == "right"
    length = width if along_width else height
    held = max(int(np.ceil(ARTWORK_HELD_OUT_FRACTION * length)), max_crop)
    if length - held < max_crop or min(height, width) < max_crop:
        raise DatasetError(f"a source image of {height}x{width} pixels is too small for two regions of "
                           f"{max_crop}-pixel crops")
    cut = length - held
    everything = slice(0, height if along_width else width)
    if along_width:
        return {"train": (everything, slice(0, cut)), "test": (everything, slice(cut, width))}
    return {"train": (slice(0, cut), everything), "test": (slice(cut, height), everything)}


def artwork_patches(region: np.ndarray, count: int, rng: np.random.Generator, size: int = ARTWORK_SIZE,
                    augment: bool = True) -> np.ndarray:
    """``count`` patches (count, size, size, 3) uint8 from ``region`` (H, W, 3).

    ``augment=True`` (training): a crop of side ``round(128·s)``, ``s ~ U(ARTWORK_CROP_SCALE)``, at a uniform
    position, resized to ``size``; flipped left-right with probability ½; pixels times ``b ~ U(ARTWORK_BRIGHTNESS)``.
    ``augment=False`` (held out): a plain 128x128 crop at a uniform position, resized to ``size`` if it differs."""
    patches = np.empty((count, size, size, 3), dtype=np.uint8)
    for k in range(count):
        side = int(round(ARTWORK_SIZE * rng.uniform(*ARTWORK_CROP_SCALE))) if augment else ARTWORK_SIZE
        top = int(rng.integers(0, region.shape[0] - side + 1))
        left = int(rng.integers(0, region.shape[1] - side + 1))
        patch = region[top:top + side, left:left + side]
        if side != size:
            patch = resize_bilinear(patch, size, size)
        if augment:
            if rng.random() < 0.5:
                patch = patch[:, ::-1]
            brightness = rng.uniform(*ARTWORK_BRIGHTNESS)
            patch = np.clip(np.rint(patch.astype(np.float32) * np.float32(brightness)), 0, 255).astype(np.uint8)
        patches[k] = patch
    return patches


def load_artwork(n_per_class: int = 200, n_test_per_class: int = 50, seed: int = 0, size: int = ARTWORK_SIZE,
                 classes=None) -> tuple:
    """The 10-class "artwork" set: ``(x_train, y_train), (x_test, y_test)``, images uint8 (N, size, size, 3),
    labels uint8, ``n_per_class`` / ``n_test_per_class`` patches of every class, in a seeded random order.

    Each class is one image shipped with scikit-image (``pip install scikit-image``; no download). Licenses as
    scikit-image's own docstrings of ``skimage.data`` state them:

    =====  ==========  ==========================  ===================================================
    label  class       ``skimage.data`` function   license
    =====  ==========  ==========================  ===================================================
    0      brick       ``brick()`` (grey)          CC0 (CC0Textures, Bricks25)
    1      gravel      ``gravel()`` (grey)         CC0 (CC0Textures, Gravel04)
    2      grass       ``grass()`` (grey)          CC0 (DeviantArt, linolafett)
    3      coins       ``coins()`` (grey)          no known copyright restrictions (Brooklyn Museum)
    4      coffee      ``coffee()``                CC0 (photographer Rachel Michetti)
    5      cat         ``chelsea()``               CC0 (photographer Stefan van der Walt)
    6      astronaut   ``astronaut()``             public domain (NASA)
    7      rocket      ``rocket()``                public domain (SpaceX)
    8      deep field  ``hubble_deep_field()``     public domain (NASA, HubbleSite); halved first
    9      tissue      ``immunohistochemistry()``  no known copyright restrictions (CMMI)
    =====  ==========  ==========================  ===================================================

    Greyscale images are repeated to three channels. No leakage: a band of 30% along each image's right edge
    (the astronaut's bottom edge) is the held-out region (``artwork_regions``) and only held-out patches come
    from it. Training patches are
    augmented (crop scale 0.87-1.15, left-right flips, brightness 0.9-1.1: ``artwork_patches``); held-out
    patches are plain 128x128 crops. ``size`` < 128 resizes the same crops (a cheaper variant for quick tests).
    ``classes``: indices of a subset of the classes (labels stay the indices above). Randomness: one
    ``numpy.random.Generator`` per (seed, class, split), so the same seed gives the same bits.
    """
    chosen = range(len(ARTWORK_SOURCES)) if classes is None else [int(c) for c in classes]
    max_crop = int(round(ARTWORK_SIZE * ARTWORK_CROP_SCALE[1]))
    splits = {"train": ([], [], n_per_class, True), "test": ([], [], n_test_per_class, False)}
    for label in chosen:
        _, skimage_name, zoom, held_out, _ = ARTWORK_SOURCES[label]
        image = artwork_source_image(skimage_name, zoom)
        regions = artwork_regions(image.shape, max_crop, held_out)
        for split_id, (split, (images, labels, count, augment)) in enumerate(splits.items()):
            rows, cols = regions[split]
            rng = np.random.default_rng(np.random.SeedSequence([int(seed), label, split_id]))
            images.append(artwork_patches(image[rows, cols], count, rng, size, augment))
            labels.append(np.full(count, label, dtype=np.uint8))
    result = []
    for split_id, (images, labels, _, _) in enumerate(splits.values()):
        x, y = np.concatenate(images), np.concatenate(labels)
        order = np.random.default_rng(np.random.SeedSequence([int(seed), 1000 + split_id])).permutation(len(y))
        result.append((x[order], y[order]))
    return tuple(result)
