"""Explanations: gradients against finite differences, completeness of integrated gradients, a deletion
test, and the weight-randomisation sanity check (Adebayo et al. 2018)."""

import numpy as np
import pytest
from scipy import stats

import numcnn
from numcnn import explain
from numcnn.datasets import load_dataset
from numcnn.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
from numcnn.preprocessing import images_to_input
from tests.gradcheck import check_gradient


@pytest.fixture(scope="module")
def data():
    (x_train, y_train), (x_test, y_test) = load_dataset("mnist-5k")
    return images_to_input(x_train), y_train.astype(np.int64), images_to_input(x_test), y_test.astype(np.int64)


@pytest.fixture(scope="module")
def trained(data):
    x, y, _, _ = data
    model = numcnn.seed_mnist_model(seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=32, seed=0, verbose=0)
    return model


@pytest.mark.parametrize("method", ["gradient", "gradient_x_input"])
def test_saliency_gradients_match_finite_differences(method):
    model = numcnn.Sequential([Input((8, 8, 1)), Conv2D(3, 3, padding="same", activation="relu"), MaxPooling2D(2),
                               Flatten(), Dense(4, activation="softmax")], seed=1, dtype="float64")
    x = np.random.default_rng(0).random((8, 8, 1))
    target = 2
    logit = lambda: float(model.forward_logits(x[None])[0, target])  # noqa: E731
    grad = explain.saliency(model, x, target, method="gradient")[..., None]
    assert check_gradient(logit, x, grad) < 1e-6
    if method == "gradient_x_input":
        np.testing.assert_allclose(explain.saliency(model, x, target, method=method), (x * grad)[..., 0])


def test_integrated_gradients_are_complete(trained, data):
    _, _, x_test, y_test = data
    for image, label in zip(x_test[:10], y_test[:10]):
        _, error = explain.saliency(trained, image, int(label), method="integrated_gradients", steps=50)
        assert error <= 0.01


def test_deleting_salient_pixels_hurts_more_than_random(trained, data):
    _, _, x_test, y_test = data
    rng = np.random.default_rng(0)
    wins, n = 0, 30
    for image, label in zip(x_test[:n], y_test[:n]):
        s = explain.saliency(trained, image, int(label), method="gradient_x_input")
        k = int(0.1 * s.size)
        top = np.argsort(s.ravel())[::-1][:k]
        random = rng.choice(s.size, size=k, replace=False)
        deleted = []
        for pixels in (top, random):
            copy = image.copy().reshape(-1)
            copy[pixels] = 0
            deleted.append(copy.reshape(image.shape))
        logits = trained.forward_logits(np.stack([image, *deleted]))[:, label]
        wins += (logits[0] - logits[1]) > (logits[0] - logits[2])
    assert wins / n >= 0.9


def test_saliency_of_a_randomised_model_differs(trained, data):
    """Signed gradients of a trained and a randomly initialised model are nearly unrelated (measured: rank
    correlation 0.04). Their *absolute values* correlate at 0.72: |gradient| keeps the imprint of the
    architecture (border pixels feed fewer windows), which is Adebayo et al.'s warning about |saliency| maps."""
    _, _, x_test, y_test = data
    random_model = numcnn.seed_mnist_model(seed=99)
    correlations = []
    for image, label in zip(x_test[:10], y_test[:10]):
        ours = explain.saliency(trained, image, int(label), method="gradient")
        theirs = explain.saliency(random_model, image, int(label), method="gradient")
        correlations.append(stats.spearmanr(ours.ravel(), theirs.ravel())[0])
    assert np.mean(correlations) < 0.5


@pytest.mark.parametrize("method", ["smoothgrad", "gradcam", "occlusion"])
def test_other_methods_point_at_the_digit(trained, data, method):
    """The mean |map| on the digit's strokes exceeds that on the empty background."""
    _, _, x_test, y_test = data
    image, label = x_test[0], int(y_test[0])
    heat = np.abs(explain.saliency(trained, image, label, method=method))
    assert heat.shape == (28, 28)
    strokes = image[..., 0] > 0.5
    assert heat[strokes].mean() > heat[~strokes].mean()


def test_feature_maps_have_layer_shapes(trained, data):
    maps = explain.feature_maps(trained, data[2][0])
    assert maps["conv2d"].shape == (26, 26, 32) and maps["dense_1"].shape == (10,)


def test_unknown_method_is_a_clear_error(trained, data):
    with pytest.raises(ValueError, match="unknown saliency method"):
        explain.saliency(trained, data[2][0], 0, method="magic")


def test_filter_pictures_are_the_scaled_first_layer_kernels(trained):
    pictures = explain.filter_pictures(trained)
    kernel = trained.layers[0].params["kernel"][:, :, 0, :]
    assert pictures.shape == (32, 3, 3) and pictures.min() == 0 and np.allclose(pictures.max(axis=(1, 2)), 1)
    # a per-filter affine rescaling keeps the order of the weights
    assert np.array_equal(np.argsort(pictures[5].ravel()), np.argsort(kernel[:, :, 5].ravel()))
