"""Class images in a generator's latent space (Nguyen et al. 2016): the z-gradient, determinism, seeds that matter.

The full measurement (10 classes x 10 seeds, the independent judge of tests/test_generate.py, the seeds'
spread): benchmarks/class_images.py and the README.
"""

import numba
import numpy as np
import pytest

import numcnn
from numcnn.generate import class_image, class_images, sample, sample_grid, train_generator
from numcnn.generate.class_images import latent_objective_and_gradient, latent_starts
from numcnn.generate.gan import ConditionalGAN
from numcnn.generate.vae import ConditionalVAE
from numcnn.layers import Conv2D, Dense, Flatten, Input
from tests.gradcheck import numerical_gradient, relative_error

IMAGE_SHAPE, NUM_CLASSES, LATENT_DIM = (8, 8, 1), 3, 4


def tiny_classifier(seed=1, dtype="float64"):
    """Images (8, 8, 1) -> 3 classes; tanh, so no ReLU kink can spoil a central difference."""
    return numcnn.Sequential([Input(IMAGE_SHAPE), Conv2D(2, 3, padding="same", activation="tanh"), Flatten(),
                              Dense(NUM_CLASSES, activation="softmax")], seed=seed, dtype=dtype)


def tiny_generator(kind, seed=0, dtype="float64"):
    """A real conditional VAE or GAN (the GAN's decoder has BatchNormalization) with 2-3 filters."""
    if kind == "vae":
        gen = ConditionalVAE(IMAGE_SHAPE, NUM_CLASSES, LATENT_DIM, filters=(2, 3), hidden=4, seed=seed, dtype=dtype)
    else:
        gen = ConditionalGAN(IMAGE_SHAPE, NUM_CLASSES, LATENT_DIM, filters=(2, 3), seed=seed, dtype=dtype)
    # random biases, gammas, betas and moving statistics (they start at 0 / 1): no ReLU input sits exactly on
    # its kink, and BatchNormalization's inference branch is exercised with statistics that are not (0, 1)
    rng = np.random.default_rng(seed + 10)
    network = gen.decode_network()
    network.set_weights([w + 0.1 * rng.standard_normal(w.shape) if w.ndim == 1 else w
                         for w in network.get_weights()])
    for layer in network.layers:
        if hasattr(layer, "moving_variance"):
            layer.moving_variance[...] = np.abs(layer.moving_variance) + 0.5
    return gen


@pytest.mark.parametrize("kind", ["vae", "gan"])
@pytest.mark.parametrize("latent_penalty", [0.0, 0.3])
def test_latent_gradient_matches_finite_differences(kind, latent_penalty):
    """``dJ/dz`` through classifier and decoder backward passes == central differences of ``J`` (float64)."""
    model, gen = tiny_classifier(), tiny_generator(kind)
    targets = np.array([0, 2, 1])
    z = np.random.default_rng(3).standard_normal((len(targets), LATENT_DIM))
    _, gradient, _ = latent_objective_and_gradient(model, gen, z, targets, latent_penalty)

    def objective():  # the sum over the batch: each image's J depends on its own z only
        return float(np.sum(latent_objective_and_gradient(model, gen, z, targets, latent_penalty)[0]))

    numerical = numerical_gradient(objective, z, eps=1e-6)
    assert relative_error(numerical, gradient) < 1e-6
    assert np.linalg.norm(gradient) > 1e-3  # not a vacuous agreement of two zeros


def test_zero_steps_is_the_generators_sample_and_ascent_raises_the_logit():
    model, gen = tiny_classifier(dtype="float32"), tiny_generator("vae", dtype="float32")
    np.testing.assert_array_equal(class_image(model, 2, seed=5, steps=0, generator=gen), sample(gen, 2, 5))
    z0 = latent_starts(gen, [5, 6])
    before = latent_objective_and_gradient(model, gen, z0, [2, 2])[0]
    history = []
    from numcnn.generate.class_images import maximise_latent

    maximise_latent(model, gen, [2, 2], [5, 6], steps=15, latent_penalty=0.0, history=history)
    objectives = [entry["objective"] for entry in history]  # J before each step
    assert objectives[0] == pytest.approx(np.mean(before), rel=1e-5)
    assert np.all(np.diff(objectives) > 0)  # small steps along the gradient: every one goes uphill


def test_generator_path_refuses_a_generator_that_does_not_fit_the_model():
    model = tiny_classifier(dtype="float32")
    wrong = ConditionalVAE((12, 12, 1), NUM_CLASSES, LATENT_DIM, filters=(2, 3), hidden=4)
    with pytest.raises(ValueError, match="shape"):
        class_images(model, [0], [0], steps=1, generator=wrong)


@pytest.fixture(scope="module")
def digits():
    """A briefly trained VAE (1,000 embedded digits, 3 epochs) and a briefly trained seed-model classifier."""
    from numcnn.datasets import load_embedded_mnist
    from numcnn.preprocessing import images_to_input

    (x, y), _ = load_embedded_mnist()
    order = np.random.default_rng(0).permutation(len(x))[:1000]
    x, y = images_to_input(x[order]), y[order].astype(np.int64)
    gen = train_generator(x, y, kind="vae", epochs=3, seed=0, progress=False)
    model = numcnn.seed_mnist_model(seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=32, seed=0, verbose=0)
    return model, gen, x, y


def mean_pairwise_distance(images):
    flat = images.reshape(len(images), -1).astype(np.float64)
    distances = np.sqrt(((flat[:, None] - flat[None]) ** 2).sum(-1))
    return distances[np.triu_indices(len(flat), 1)].mean()


def test_seeds_give_different_digits_that_the_classifier_scores_higher(digits):
    model, gen, x, y = digits
    targets, seeds = [1, 4, 7], list(range(5))
    images = class_images(model, targets, seeds, steps=10, generator=gen)
    assert images.shape == (3, 5, 28, 28, 1) and images.min() >= 0 and images.max() <= 1
    # the seeds of a class stay apart: every class keeps at least half the spread of the generator's own samples
    # of it (a grid that converged to one picture per class would keep 0)
    start = sample_grid(gen, targets, seeds)
    for i in range(len(targets)):
        assert mean_pairwise_distance(images[i]) >= 0.5 * mean_pairwise_distance(start[i])
    # and the ascent did its job: every image's target logit rose above that of the generator's own sample
    rows = np.repeat(targets, len(seeds))
    logit = lambda im: model.forward_logits(im.reshape(-1, 28, 28, 1))[np.arange(len(rows)), rows]  # noqa: E731
    assert np.all(logit(images) > logit(start))


def test_generator_grid_is_bit_identical_with_one_and_two_threads(digits):
    model, gen, _, _ = digits
    a = class_images(model, [3, 8], [0, 1, 2], steps=5, generator=gen)
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        b = class_images(model, [3, 8], [0, 1, 2], steps=5, generator=gen)
    finally:
        numba.set_num_threads(previous)
    np.testing.assert_array_equal(a, b)
    # a cell depends on its own seed only: class_image gives the grid's cell (up to batch-order rounding)
    np.testing.assert_allclose(class_image(model, 8, seed=2, steps=5, generator=gen), a[1, 2], atol=1e-4)


def test_cli_generate_with_a_generator(digits, tmp_path, capsys):
    from numcnn.cli import main

    model, gen, _, _ = digits
    model.save(tmp_path / "model.npz")
    gen.save(tmp_path / "gen.npz")
    out = tmp_path / "grid.png"
    assert main(["generate", "--model", str(tmp_path / "model.npz"), "--generator", str(tmp_path / "gen.npz"),
                 "--target", "3", "--seeds", "0-2", "--steps", "3", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
