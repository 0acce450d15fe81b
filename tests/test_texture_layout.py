"""Texture layout: a statistic the synthesis does not optimise, calibrated on skimage's brick, gravel and grass.

The statistic must put another crop of an exemplar near it and shuffled pixels, a blurred copy and vertical
streaks far: if it did not, it could not tell a brick wall from noise, and the benchmark's figures would mean
nothing. A small synthesis must not copy the exemplar and must be the same for the same seed."""

import numpy as np
import pytest
from scipy import ndimage

from numcnn.generate import texture
from numcnn.generate.texture_stats import (layout_distance, layout_statistics, max_normalised_cross_correlation,
                                           normalised_correlation, quadrant_crop, tolerant_difference)

skimage_data = pytest.importorskip("skimage.data")


def crops(name, size=128):
    """Top-left (the exemplar) and bottom-left (another crop) quadrants, tinted to RGB."""
    picture = getattr(skimage_data, name)().astype(np.float64) / 255
    tint = np.array([0.9, 0.6, 0.4])
    return [quadrant_crop(picture, q, size)[..., None] * tint + 0.05 for q in ("top-left", "bottom-left")]


@pytest.mark.parametrize("name", ["brick", "gravel", "grass"])
def test_another_crop_is_nearer_than_shuffled_blurred_or_streaks(name):
    exemplar, other = crops(name)
    reference = layout_statistics(exemplar)
    rng = np.random.default_rng(0)
    far = {"shuffled": rng.permutation(exemplar.reshape(-1, 3), axis=0).reshape(exemplar.shape),
           "blurred": ndimage.gaussian_filter(exemplar, (2, 2, 0)),
           "vertical streaks": np.broadcast_to(exemplar.mean(0, keepdims=True), exemplar.shape),
           "horizontal streaks": np.broadcast_to(exemplar.mean(1, keepdims=True), exemplar.shape)}
    near = layout_distance(other, reference)
    assert layout_distance(exemplar, reference) == 0
    for kind, image in far.items():
        assert near < 0.7 * layout_distance(image, reference), kind


def test_correlation_of_a_periodic_pattern_and_tolerance_to_small_shifts():
    # vertical lines every 8 px: the vertical-edge map repeats every 8 px across, not at all down
    x = np.arange(64)
    lines = np.broadcast_to((x % 8 == 0).astype(float), (64, 64))
    r = normalised_correlation(lines, lines, 16)
    assert r[16, 16] == pytest.approx(1) and r[16, 16 + 8] == pytest.approx(1, abs=0.05)
    assert r[16, 16 + 4] < 0 and r[16 + 5, 16] == pytest.approx(1, abs=0.05)
    # a ridge moved by 2 lags stays closer than a missing ridge, which a pointwise difference gets backwards
    ridge = np.zeros((1, 21, 21))
    ridge[0, :, 10] = 1
    moved, missing = np.roll(ridge, 2, axis=2), np.zeros_like(ridge)
    assert np.abs(moved - ridge).mean() > np.abs(missing - ridge).mean()
    assert tolerant_difference(moved, ridge, 3) < 0.8 * tolerant_difference(missing, ridge, 3)


def test_max_normalised_cross_correlation_finds_a_shifted_copy():
    exemplar, other = crops("gravel")
    shifted_copy = np.roll(exemplar, (17, -9), axis=(0, 1))[20:100, 20:100]  # a piece, moved
    assert max_normalised_cross_correlation(shifted_copy, exemplar) > 0.999
    assert max_normalised_cross_correlation(other, exemplar) < 0.5


def test_small_synthesis_is_no_copy_is_seeded_and_beats_shuffled_pixels():
    exemplar, _ = crops("brick", 64)
    result = texture(exemplar, seed=0, size=(64, 64), steps=40, scales=2)
    assert max_normalised_cross_correlation(result, exemplar) < 0.9
    np.testing.assert_array_equal(result, texture(exemplar, seed=0, size=(64, 64), steps=40, scales=2))
    shuffled = np.random.default_rng(1).permutation(exemplar.reshape(-1, 3), axis=0).reshape(exemplar.shape)
    assert layout_distance(result, exemplar, max_lag=20) < layout_distance(shuffled, exemplar, max_lag=20)
