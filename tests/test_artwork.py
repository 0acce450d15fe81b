"""The source document's second example end to end: the 128x128x3 "artwork" data set, its CNN, generate_artwork,
and DeepDream on it.

CI budget: 128x128x3 training is expensive (about 0.06 s per image per step on 2 cores), so the training test
is deliberately short: 30 patches per class, 2 epochs, held-out accuracy bound 0.3 (chance is 0.1; on a
200-patch held-out set that is 10 standard deviations above chance). The full-quality run and its figures
are in benchmarks/artwork.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("skimage", reason="the artwork data set is cut from scikit-image's sample images ('.[test]')")

from numcnn import datasets  # noqa: E402
from numcnn.datasets import ARTWORK_CLASSES, ARTWORK_SOURCES, load_artwork  # noqa: E402
from numcnn.generate import deep_dream, generate_artwork, generate_artworks  # noqa: E402
from numcnn.preprocessing import images_to_input  # noqa: E402
from numcnn.zoo import artwork_model, model_for_dataset  # noqa: E402


# ----------------------------------------------------------------------------------------------
# The data set
# ----------------------------------------------------------------------------------------------
def test_shapes_dtypes_and_balanced_labels():
    (x_train, y_train), (x_test, y_test) = load_artwork(n_per_class=4, n_test_per_class=2, seed=0)
    assert x_train.shape == (40, 128, 128, 3) and x_test.shape == (20, 128, 128, 3)
    assert x_train.dtype == x_test.dtype == y_train.dtype == np.uint8
    assert np.bincount(y_train, minlength=10).tolist() == [4] * 10
    assert np.bincount(y_test, minlength=10).tolist() == [2] * 10
    assert len(ARTWORK_CLASSES) == 10 and len(set(ARTWORK_CLASSES)) == 10
    # shuffled, not sorted by class (so a slice of the set is not one class)
    assert not np.all(np.diff(y_train.astype(int)) >= 0)


def test_same_seed_same_bits_other_seed_other_patches():
    first = load_artwork(n_per_class=3, n_test_per_class=2, seed=5)
    second = load_artwork(n_per_class=3, n_test_per_class=2, seed=5)
    other = load_artwork(n_per_class=3, n_test_per_class=2, seed=6)
    for a, b in zip(first, second):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(first[0][0], other[0][0])


def test_classes_are_distinct_images():
    """Each class comes from a different picture: the mean colours of two classes' patches differ."""
    (x, y), _ = load_artwork(n_per_class=8, n_test_per_class=1, seed=0)
    means = np.stack([x[y == k].reshape(-1, 3).mean(0) for k in range(10)])
    stds = np.stack([x[y == k].astype(float).std() for k in range(10)])
    signature = np.concatenate([means, stds[:, None]], axis=1)
    distances = np.linalg.norm(signature[:, None] - signature[None], axis=-1)
    assert distances[~np.eye(10, dtype=bool)].min() > 3


def test_no_train_held_out_leakage(monkeypatch):
    """Replace every source image by a marker image (the documented held-out band, the last 30% of the right
    edge, or the bottom edge for the astronaut, is bright, the rest dark). Then every training patch must be
    dark and every held-out patch bright: no training patch touched a held-out pixel, and vice versa."""
    size = 512
    band = size - int(np.ceil(0.3 * size))  # first row/column of the held-out band
    marker = np.full((size, size, 3), 40, dtype=np.uint8)
    marker[:, band:, 0] = 200  # red channel marks the right band
    marker[band:, :, 1] = 200  # green channel marks the bottom band
    monkeypatch.setattr(datasets, "artwork_source_image", lambda name, zoom=1.0: marker)
    (x_train, y_train), (x_test, y_test) = load_artwork(n_per_class=30, n_test_per_class=10, seed=0)
    for label, (_, _, _, held_out, _) in enumerate(ARTWORK_SOURCES):
        channel = 0 if held_out == "right" else 1
        train, test = x_train[y_train == label][..., channel], x_test[y_test == label][..., channel]
        assert train.max() <= 40 * 1.1 + 1, f"class {label}: a training patch reaches into the held-out band"
        assert test.min() == 200, f"class {label}: a held-out patch reaches into the training region"


def test_held_out_patches_are_real_crops_of_their_source():
    """A held-out patch of the brick class is found, pixel for pixel, in skimage.data.brick(), in its right band."""
    from numpy.lib.stride_tricks import sliding_window_view
    from skimage import data

    source = data.brick()
    _, (x_test, y_test) = load_artwork(n_per_class=1, n_test_per_class=3, seed=0, classes=[0])
    for patch in x_test:
        assert np.array_equal(patch[..., 0], patch[..., 2])  # greyscale repeated to RGB
        rows = sliding_window_view(source, 128, axis=1)  # (512, 385, 128): every 128-px row segment
        hits = np.argwhere(np.all(rows == patch[0, :, 0], axis=-1))
        located = [(r, c) for r, c in hits if np.array_equal(source[r:r + 128, c:c + 128], patch[..., 0])]
        assert located, "held-out patch is not a crop of its source image"
        assert all(c >= 512 - int(np.ceil(0.3 * 512)) for _, c in located)


# ----------------------------------------------------------------------------------------------
# Training, generation, DeepDream
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained():
    """The source document's artwork CNN after a short run (30 patches per class, 2 epochs; see the module
    docstring for why short), with its held-out accuracy."""
    (x_train, y_train), (x_test, y_test) = load_artwork(n_per_class=30, n_test_per_class=20, seed=0)
    model = artwork_model(seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images_to_input(x_train), y_train.astype(np.int64), epochs=2, batch_size=32, seed=0, verbose=0)
    _, accuracy = model.evaluate(images_to_input(x_test), y_test.astype(np.int64), batch_size=100)
    return model, accuracy, images_to_input(x_test[:1])[0]


def test_short_training_beats_chance_clearly(trained):
    _, accuracy, _ = trained
    assert accuracy >= 0.3, f"held-out accuracy {accuracy:.3f} after the short run (chance 0.1)"


def test_model_for_dataset_builds_the_artwork_cnn():
    model = model_for_dataset("artwork", seed=0, input_shape=(128, 128, 3), classes=10)
    assert model.name == "artwork_cnn" and model.count_params() == 3_305_930  # the source document's CNN
    assert [layer.name for layer in model.layers][-2:] == ["dense", "dense_1"]


def test_generate_artwork_shape_dtype_determinism(trained):
    model, _, _ = trained
    first = generate_artwork(model, seed=3, label=2, steps=4)
    again = generate_artwork(model, seed=3, label=2, steps=4)
    other = generate_artwork(model, seed=4, label=2, steps=4)
    assert first.shape == (128, 128, 3) and first.dtype == np.float32
    assert np.array_equal(first, again), "same seed, same bits"
    assert not np.allclose(first, other), "another seed starts elsewhere"
    assert 0 <= first.min() and first.max() <= 1
    # without a label the class is drawn from the seed, as documented
    drawn = int(np.random.default_rng(7).integers(10))
    assert np.array_equal(generate_artwork(model, seed=7, steps=2), generate_artwork(model, seed=7, label=drawn, steps=2))


def test_generation_raises_the_target_class(trained):
    """A few dozen steps already make the chosen class the model's top class, with a higher probability than
    at the start."""
    model, _, _ = trained
    labels, seeds = [1, 6], [0, 0]
    start = generate_artworks(model, labels, seeds, steps=0)
    result = generate_artworks(model, labels, seeds, steps=40)
    p_start, p_result = model.predict(start), model.predict(result)
    for i, label in enumerate(labels):
        assert p_result[i].argmax() == label and p_result[i, label] > p_start[i, label], (p_start[i], p_result[i])


def test_generate_artwork_float64_model():
    """float64 works too (a smaller input keeps it cheap); the picture has the model's dtype."""
    model = artwork_model(seed=0, input_shape=(32, 32, 3), dtype="float64")
    image = generate_artwork(model, seed=0, label=1, steps=2)
    assert image.shape == (32, 32, 3) and image.dtype == np.float64


def test_deep_dream_on_every_layer_of_the_artwork_model(trained):
    """DeepDream with its defaults on each layer of the artwork model (layers after the Flatten dream at full
    size only; deep_dream warns that it dropped the smaller octaves)."""
    model, _, image = trained
    for layer in model.layers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dream = deep_dream(model, image, layer.name)
        assert dream.shape == image.shape and np.all(np.isfinite(dream)), layer.name
        assert 0 <= dream.min() and dream.max() <= 1
        assert np.abs(dream - image).mean() > 1e-3, f"dreaming on {layer.name} changed nothing"


def test_cli_train_and_generate_on_artwork(tmp_path, monkeypatch, trained):
    """``numcnn train --dataset artwork`` trains the artwork CNN (on a tiny set here), and ``numcnn generate``
    makes colour pictures with a 3-channel model."""
    from numcnn.cli import main

    tiny = load_artwork(n_per_class=2, n_test_per_class=1, seed=0)
    monkeypatch.setattr(datasets, "load_artwork", lambda: tiny)
    assert main(["train", "--dataset", "artwork", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run")]) == 0
    from numcnn import load_model

    saved = load_model(tmp_path / "run" / "model.npz")
    assert saved.input_shape == (128, 128, 3) and saved.count_params() == 3_305_930

    model, _, _ = trained
    model.save(tmp_path / "artwork.npz")
    out = tmp_path / "grid.png"
    assert main(["generate", "--model", str(tmp_path / "artwork.npz"), "--target", "4", "--seeds", "0-1",
                 "--steps", "2", "--out", str(out), "--save-images", str(tmp_path / "each")]) == 0
    from PIL import Image

    with Image.open(tmp_path / "each" / "class4_seed0.png") as picture:
        assert picture.mode == "RGB" and picture.size == (128, 128)
