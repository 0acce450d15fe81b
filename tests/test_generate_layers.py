"""DeepDream on every layer, layer names wherever a layer is named, multi-scale texture and style on the CLI.

These use small untrained models: what is checked is shapes, names and the clamping of octaves, not beauty."""

import warnings

import numpy as np
import pytest

import numcnn
from numcnn import explain
from numcnn.generate import deep_dream, multiscale_filter_bank, random_filter_bank, texture
from numcnn.generate.dream import layer_sees, usable_octaves
from numcnn.generate.texture import gram_targets, spectrum_projection


@pytest.fixture(scope="module")
def model():
    """The seed MNIST architecture, untrained: conv, pool, conv, pool, conv (3x3 at the end), flatten, dense."""
    return numcnn.seed_mnist_model(seed=0)


@pytest.fixture(scope="module")
def digit():
    return np.random.default_rng(0).random((28, 28, 1)).astype(np.float32)


def test_deep_dream_runs_on_every_layer_with_the_defaults(model, digit):
    for layer in model.layers:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            dream = deep_dream(model, digit, layer.name, steps=2)
        assert dream.shape == digit.shape and dream.dtype == model.dtype and not np.array_equal(dream, digit)


def test_octaves_too_small_for_a_layer_are_dropped_with_a_warning_naming_it(model, digit):
    # conv2d_2 needs 3x3 at its input: 28 px and 20 px inputs give that, 14 px does not (4 -> 2 after pooling)
    assert layer_sees(model, 4, (20, 20)) and not layer_sees(model, 4, (14, 14))
    with pytest.warns(UserWarning, match="'conv2d_2'.*2 octave"):
        deep_dream(model, digit, ["conv2d_2"], octaves=3, steps=1)
    # after a Flatten only the model's input size works
    assert usable_octaves(model, ["conv2d_2", "dense"], (28, 28), octaves=3) == [(28, 28)]
    with pytest.raises(ValueError, match="'dense'"):
        deep_dream(model, digit, ["conv2d_2", "dense"], octaves=3, steps=1, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # conv2d sees every octave: nothing to say
        deep_dream(model, digit, "conv2d", octaves=3, steps=1)


def test_layers_are_named_or_indexed_everywhere(model, digit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_name = deep_dream(model, digit, ["conv2d_1"], octaves=1, steps=2)
        by_index = deep_dream(model, digit, [2], octaves=1, steps=2)
    np.testing.assert_array_equal(by_name, by_index)
    bank = random_filter_bank(seed=1)
    exemplar = np.random.default_rng(1).random((16, 16, 3))
    names = [layer.name for layer in bank.layers]
    assert gram_targets(bank, exemplar, [names[1]]).keys() == gram_targets(bank, exemplar, [1]).keys() == {1}
    a = texture(exemplar, seed=0, size=(16, 16), network=bank, layers=[names[0], names[1]], steps=3, scales=1)
    b = texture(exemplar, seed=0, size=(16, 16), network=bank, layers=[0, 1], steps=3, scales=1)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="no layer named 'conv9'"):
        texture(exemplar, network=bank, layers=["conv9"], steps=1)
    np.testing.assert_allclose(explain.gradcam(model, digit, 3, layer="conv2d_1"), explain.gradcam(model, digit, 3, 2))
    with pytest.raises(ValueError, match="spatial output"):
        explain.gradcam(model, digit, 3, layer="dense")
    assert list(explain.feature_maps(model, digit, layer=-1)) == ["dense_1"]


def test_spectrum_projection_takes_the_exemplars_magnitudes_and_keeps_the_phase():
    rng = np.random.default_rng(2)
    image, exemplar = rng.random((16, 12, 3)), rng.random((16, 12, 3))
    magnitude = np.abs(np.fft.fft2(exemplar, axes=(0, 1)))
    projected = spectrum_projection(image, magnitude)
    np.testing.assert_allclose(np.abs(np.fft.fft2(projected, axes=(0, 1))), magnitude, atol=1e-9)
    phase = lambda a: np.angle(np.fft.fft2(a, axes=(0, 1)))  # noqa: E731
    np.testing.assert_allclose(np.cos(phase(projected) - phase(image)), 1, atol=1e-6)


def test_multiscale_bank_sees_far_and_texture_is_seeded():
    bank = multiscale_filter_bank(seed=0)
    # one bright pixel moves the deepest layer's output over a 64 px wide span (4 cells of 16 px) each way
    base = np.zeros((1, 128, 128, 3))
    poked = base.copy()
    poked[0, 64, 64] = 1.0
    from numcnn.generate.activations import forward_activations

    deepest = len(bank.layers) - 1
    a, b = forward_activations(bank, base, deepest)[-1], forward_activations(bank, poked, deepest)[-1]
    changed = np.argwhere(np.abs(a - b)[0].sum(-1) > 0)
    assert (changed.max(0) - changed.min(0) + 1).min() * 16 >= 64  # output cells are 16 px apart
    exemplar = np.random.default_rng(3).random((32, 32, 3))
    first = texture(exemplar, seed=4, size=(32, 32), steps=6, scales=2)
    np.testing.assert_array_equal(first, texture(exemplar, seed=4, size=(32, 32), steps=6, scales=2))
    assert first.shape == (32, 32, 3) and first.dtype == np.float32 and 0 <= first.min() and first.max() <= 1


def test_cli_dream_on_every_layer_style_and_explain_name_layers(model, digit, tmp_path, capsys):
    from PIL import Image

    from numcnn.cli import main

    model_path = tmp_path / "model.keras"
    model.save(model_path)
    image = tmp_path / "digit.png"
    Image.fromarray((digit[..., 0] * 255).astype(np.uint8)).save(image)
    assert main(["dream", "--model", str(model_path), "--image", str(image), "--layers", "conv2d_2,dense",
                 "--octaves", "3", "--steps", "1", "--out", str(tmp_path / "d.png")]) == 0
    assert "'dense'" in capsys.readouterr().err and (tmp_path / "d.png").exists()
    assert main(["dream", "--model", str(model_path), "--image", str(image), "--layers", "dense_1",
                 "--steps", "1", "--out", str(tmp_path / "d1.png")]) == 0
    assert main(["explain", "--model", str(model_path), "--image", str(image), "--layer", "conv2d_1",
                 "--out", str(tmp_path / "e.png")]) == 0
    colour = tmp_path / "colour.png"
    Image.fromarray((np.random.default_rng(0).random((24, 24, 3)) * 255).astype(np.uint8)).save(colour)
    assert main(["style", "--content", str(image), "--style", str(colour), "--size", "24", "--style-size", "24",
                 "--steps", "3", "--out", str(tmp_path / "s.png")]) == 0
    assert Image.open(tmp_path / "s.png").size == (24, 24)
