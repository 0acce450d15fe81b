"""Generation: class images judged by an independent classifier, texture statistics, DeepDream, determinism."""

import numba
import numpy as np
import pytest

import numcnn
from numcnn.datasets import load_dataset
from numcnn.generate import Prior, class_image, class_images, deep_dream, random_filter_bank, texture
from numcnn.generate.texture import gram_loss, gram_targets
from numcnn.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from numcnn.preprocessing import images_to_input

NOT_A_DIGIT = 10


@pytest.fixture(scope="module")
def mnist():
    (x_train, y_train), (x_test, y_test) = load_dataset("mnist-5k")
    return (images_to_input(x_train), y_train.astype(np.int64)), (images_to_input(x_test), y_test.astype(np.int64))


@pytest.fixture(scope="module")
def seed_model(mnist):
    return train_seed_model(mnist)


def train_seed_model(mnist):
    """The seed model trained as ``numcnn train`` trains it: embedded sample, 5 epochs, batch 32, seed 0."""
    (x, y), _ = mnist
    model = numcnn.seed_mnist_model(seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=32, seed=0, verbose=0)
    return model


def noise_images(rng, n):
    """'Not a digit': uniform noise, blurred noise blobs, salt-and-pepper, and scrambled digits' pixels."""
    from scipy import ndimage

    kinds = []
    for i in range(n):
        kind = i % 3
        if kind == 0:
            image = rng.random((28, 28)) * rng.uniform(0.2, 1)
        elif kind == 1:
            image = ndimage.gaussian_filter(rng.random((28, 28)), rng.uniform(1, 3))
            image = (image - image.min()) / (np.ptp(image) + 1e-9)
        else:
            image = (rng.random((28, 28)) < rng.uniform(0.05, 0.4)).astype(float)
        kinds.append(image)
    return np.stack(kinds)[..., None].astype(np.float32)


def shuffle_patches(image, rng, patch=7):
    """A digit cut into 7x7 tiles put back in random order: real strokes that form no digit."""
    tiles = [image[r:r + patch, c:c + patch] for r in range(0, 28, patch) for c in range(0, 28, patch)]
    order = rng.permutation(len(tiles))
    rows = [np.concatenate([tiles[order[4 * i + j]] for j in range(4)], axis=1) for i in range(4)]
    return np.concatenate(rows, axis=0)


@pytest.fixture(scope="module")
def judge(mnist):
    return train_judge(mnist)


def train_judge(mnist):
    """An independent classifier: another architecture and seed, trained with noise augmentation and an
    11th class of noise images ("not a digit"). (A plain function too: benchmarks/class_images.py uses it.)"""
    (x, y), (x_test, y_test) = mnist
    rng = np.random.default_rng(123)
    noise = noise_images(rng, 1200)
    scrambled = np.stack([rng.permutation(img.ravel()).reshape(28, 28, 1) for img in x[:400]])
    fragments = np.stack([shuffle_patches(img, rng) for img in x[400:1200]])  # strokes, but no digit
    x_all = np.concatenate([x, noise, scrambled, fragments])
    y_all = np.concatenate([y, np.full(len(noise) + len(scrambled) + len(fragments), NOT_A_DIGIT)])
    x_all = np.clip(x_all + rng.normal(scale=0.1, size=x_all.shape).astype(np.float32), 0, 1)  # noise augmentation
    model = numcnn.Sequential([
        Input((28, 28, 1)),
        Conv2D(16, 5, padding="same", activation="relu"), MaxPooling2D(2),
        Conv2D(32, 5, padding="same", activation="relu"), MaxPooling2D(2),
        Flatten(), Dense(128, activation="relu"), Dense(11, activation="softmax"),
    ], seed=2024)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_all, y_all, epochs=4, batch_size=64, seed=7, verbose=0)
    assert model.evaluate(x_test, y_test, verbose=0)[1] > 0.93  # a competent judge of real digits
    assert np.mean(np.argmax(model.predict(noise_images(np.random.default_rng(5), 60), verbose=0), 1) == NOT_A_DIGIT) > 0.9
    return model


def judged_accuracy(judge, images):
    targets = np.repeat(np.arange(images.shape[0]), images.shape[1])
    # the judge knows images in the data range only: show it what a screen would show
    labels = np.argmax(judge.predict(np.clip(images.reshape(-1, 28, 28, 1), 0, 1), verbose=0), axis=1)
    return float(np.mean(labels == targets))


def mean_pairwise_distance(images):
    flat = images.reshape(len(images), -1).astype(np.float64)
    distances = np.sqrt(((flat[:, None] - flat[None]) ** 2).sum(-1))
    return distances[np.triu_indices(len(flat), 1)].mean()


def test_class_images_are_recognisable_diverse_and_the_prior_matters(seed_model, judge, mnist):
    (x, y), _ = mnist
    seeds = list(range(10))
    with_prior = class_images(seed_model, range(10), seeds)
    without = class_images(seed_model, range(10), seeds, prior=Prior.off())
    score, baseline = judged_accuracy(judge, with_prior), judged_accuracy(judge, without)
    # how far apart the seeds of a class are, relative to 50 real digits of that class (measured: 0.39 with
    # the default diversity=0.2, 0.15 with diversity=0, where the seeds converge to one picture)
    spread = [mean_pairwise_distance(with_prior[c]) / mean_pairwise_distance(x[y == c][:50]) for c in range(10)]
    print(f"independent judge: {score:.0%} with the image prior, {baseline:.0%} without; "
          f"seeds' spread {np.round(spread, 2)} of real digits'")
    assert score >= 0.90
    assert score - baseline >= 0.30
    assert np.mean(spread) >= 0.3


def test_class_images_grid_is_bit_identical(seed_model):
    a = class_images(seed_model, [2, 5], [0, 1, 2], steps=20)
    np.testing.assert_array_equal(a, class_images(seed_model, [2, 5], [0, 1, 2], steps=20))
    # a batch of one has no partner to repel: class_image is that batch
    np.testing.assert_allclose(class_images(seed_model, [5], [1], steps=20)[0, 0], class_image(seed_model, 5, 1, steps=20))


def test_same_seed_same_image_and_different_seeds_differ(seed_model):
    a = class_image(seed_model, 3, seed=1, steps=30)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        b = class_image(seed_model, 3, seed=1, steps=30)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, class_image(seed_model, 3, seed=2, steps=30))
    assert a.shape == (28, 28, 1) and a.min() >= 0 and a.max() <= 1


def test_generation_raises_the_target_logit(seed_model):
    start = np.full((28, 28, 1), 0.1, np.float32)
    image = class_image(seed_model, 7, seed=0, steps=60)
    before, after = seed_model.forward_logits(np.stack([start, image]))[:, 7]
    assert after > before + 5


def test_deep_dream_amplifies_the_chosen_layer(seed_model, mnist):
    (x, _), _ = mnist
    image = x[0]
    dream = deep_dream(seed_model, image, ["conv2d_1"], seed=0, octaves=1, steps=10)
    activation = lambda im: float(np.mean(seed_model.layers[2].forward(  # noqa: E731
        seed_model.layers[1].forward(seed_model.layers[0].forward(im[None]))) ** 2))
    assert activation(dream) > 1.5 * activation(image)
    np.testing.assert_array_equal(dream, deep_dream(seed_model, image, ["conv2d_1"], seed=0, octaves=1, steps=10))


@pytest.fixture(scope="module")
def exemplar():
    from skimage import data, transform

    brick = transform.resize(data.brick(), (128, 128), anti_aliasing=True)
    return np.stack([brick * 0.9 + 0.05, brick * 0.6 + 0.1, brick * 0.4 + 0.05], axis=-1)  # an RGB brick wall


def test_texture_matches_gram_statistics_without_copying(exemplar):
    from skimage import transform

    small = transform.resize(exemplar, (64, 64), anti_aliasing=True)
    history = []
    result = texture(small, seed=0, size=(64, 64), steps=60, scales=2, history=history)
    assert result.shape == (64, 64, 3)
    assert history[-1] <= 0.05 * history[0]
    # judged by an independent random filter bank (another architecture and seed): the statistics moved
    independent = random_filter_bank(seed=123)
    targets = gram_targets(independent, small)
    start = np.random.default_rng(0).random(small.shape)
    assert gram_loss(independent, result, targets) <= 0.5 * gram_loss(independent, start, targets)
    # not a copy: the normalised cross-correlation with the exemplar stays well below 1 at every shift
    from scipy.signal import fftconvolve

    a = (result.mean(-1) - result.mean()) / result.std()
    b = (small.mean(-1) - small.mean()) / small.std()
    correlation = fftconvolve(a, b[::-1, ::-1], mode="same") / a.size
    assert np.max(np.abs(correlation)) < 0.9
    np.testing.assert_array_equal(result, texture(small, seed=0, size=(64, 64), steps=60, scales=2))


def test_fgsm_examples_raise_the_loss(seed_model, mnist):
    """The input gradient points uphill: one signed step of 0.1 along it raises the loss of real digits."""
    (x, y), _ = mnist
    seed_model.compile("adam", "sparse_categorical_crossentropy")
    loss, dx = seed_model.loss_and_input_gradient(x[:64], y[:64])
    adversarial = np.clip(x[:64] + 0.1 * np.sign(dx), 0, 1).astype(np.float32)
    assert seed_model.evaluate(adversarial, y[:64]) > 2 * loss


def test_robust_training_still_learns(mnist):
    from numcnn.generate import robust_fit

    (x, y), (x_test, y_test) = mnist
    model = numcnn.seed_mnist_model(seed=1)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    losses = robust_fit(model, x, y, epochs=2, seed=0)
    assert losses[1] < losses[0]
    assert model.evaluate(x_test, y_test)[1] > 0.9
