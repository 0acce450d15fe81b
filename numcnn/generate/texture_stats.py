"""Layout statistics for judging a synthesised texture: statistics the synthesis does **not** optimise.

``texture`` matches Gram matrices of random filters and the Fourier magnitudes of the exemplar. Judging it by
the same quantities would only say that the optimiser converged. A person judges a brick wall by its layout:
long mortar lines at a regular spacing, short joints between them, staggered from course to course. These
statistics measure that on the grey image, with nothing in common with the synthesis loss:

* **oriented edge maps** at scales ``σ`` (1, 2, 4 px): ``E_h = |σ ∂_y (G_σ * g)|`` (horizontal edges) and
  ``E_v = |σ ∂_x (G_σ * g)|`` (vertical edges), rectified, so their correlations are fourth-order statistics
  of the image, which a power spectrum (second order) does not fix;
* their **normalised auto- and cross-correlations** at every lag ``(dy, dx)`` with ``|dy|, |dx| <= max_lag``::

      R_ab(d) = mean over the overlap of â(p) b̂(p + d),    â = (a - mean a) / std a

  (``R_hh``, ``R_vv`` say how far and how regularly each kind of edge repeats; ``R_hv`` where horizontal edges
  sit relative to vertical ones: T-junctions of mortar);
* an **edge-orientation histogram per scale**: gradient angle ``θ = atan2(∂_y, ∂_x) mod π`` in ``bins`` bins,
  weighted by gradient magnitude, all scales in one distribution that sums to 1, so it also records how the
  edge energy is shared between scales (a blurred copy loses the fine one).

* a **sharpness** profile: the mean squared scale-normalised gradient ``E_σ`` of the standardised grey image
  per scale (a blurred copy has the layout but not the edges).

``layout_distance(a, b) = correlation + orientation + ½ sharpness`` with
``correlation`` = RMS over maps and lags of ``R_a - R_b`` (tolerant to shifts of a few lags, see
``tolerant_difference``), ``orientation = ½ Σ |h_a - h_b|`` (total variation, in [0, 1]) and
``sharpness = mean_σ |log(E_σ,a / E_σ,b)|``. The first two are higher than second order (rectified edges,
magnitude-weighted angles), so no power spectrum fixes them; the third is second order, kept with half weight
so that a blurred copy does not pass for the exemplar. Vertical streaks can match a brick wall's spectrum and
vertical-edge correlation; they have no horizontal edges, so their histogram and ``R_hh``, ``R_hv`` differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.signal import fftconvolve

SIGMAS = (1.0, 2.0, 4.0)


@dataclass(frozen=True)
class LayoutStatistics:
    """``correlations``: (maps, 2·max_lag+1, 2·max_lag+1), lag (0, 0) at the centre;
    ``histogram``: (scales, bins), sums to 1; ``energy``: (scales,) mean squared scale-normalised gradient."""
    correlations: np.ndarray
    histogram: np.ndarray
    energy: np.ndarray


def grey(image) -> np.ndarray:
    """(H, W) or (H, W, C) -> standardised grey (H, W): zero mean, unit variance (a constant image stays 0)."""
    image = np.asarray(image, dtype=np.float64)
    g = image.mean(-1) if image.ndim == 3 else image
    return (g - g.mean()) / (g.std() + 1e-12)


def oriented_gradients(image, sigmas=SIGMAS) -> list[tuple[np.ndarray, np.ndarray]]:
    """Scale-normalised derivatives ``(σ ∂_y, σ ∂_x)`` of the Gaussian-smoothed grey image, one pair per σ."""
    g = grey(image)
    return [(sigma * ndimage.gaussian_filter(g, sigma, order=(1, 0), mode="reflect"),
             sigma * ndimage.gaussian_filter(g, sigma, order=(0, 1), mode="reflect")) for sigma in sigmas]


def normalised_correlation(a: np.ndarray, b: np.ndarray, max_lag: int) -> np.ndarray:
    """``R_ab(d)`` for ``|dy|, |dx| <= max_lag``: standardised maps, mean product over each lag's overlap.
    Not circular (an FFT of zero-padded maps), so a pattern does not wrap around the border."""
    a = (a - a.mean()) / (a.std() + 1e-12)
    b = (b - b.mean()) / (b.std() + 1e-12)
    # correlation = convolution with the flipped map; "full" mode covers every lag
    products = fftconvolve(b, a[::-1, ::-1], mode="full")
    overlap = fftconvolve(np.ones_like(b), np.ones_like(a), mode="full")
    centre_y, centre_x = a.shape[0] - 1, a.shape[1] - 1
    window = (slice(centre_y - max_lag, centre_y + max_lag + 1), slice(centre_x - max_lag, centre_x + max_lag + 1))
    return products[window] / np.rint(overlap[window])


def orientation_histogram(gradients, bins: int = 8) -> np.ndarray:
    """Gradient-magnitude-weighted histogram of ``θ mod π`` per scale, (scales, bins), summing to 1 overall.

    Bin ``k`` is centred on ``θ = kπ/bins`` (bin 0 on vertical edges, whose gradient is horizontal), and each
    gradient is shared linearly between its two nearest bins: a wall leaning by a few degrees moves a little
    weight, not a whole bin's."""
    rows = []
    for dy, dx in gradients:
        position = np.mod(np.arctan2(dy, dx), np.pi) / np.pi * bins  # bin centres at integers
        lower = np.floor(position)
        upper_share = (position - lower).ravel()
        weight = np.hypot(dy, dx).ravel()
        lower = lower.astype(int).ravel() % bins
        rows.append(np.bincount(lower, weights=weight * (1 - upper_share), minlength=bins)
                    + np.bincount((lower + 1) % bins, weights=weight * upper_share, minlength=bins))
    histogram = np.array(rows)
    return histogram / (histogram.sum() + 1e-12)


def layout_statistics(image, max_lag: int = 40, sigmas=SIGMAS, bins: int = 8) -> LayoutStatistics:
    """Correlations of oriented edge maps and the orientation histograms of ``image`` (H, W[, C])."""
    image = np.asarray(image)
    if min(image.shape[:2]) <= 2 * max_lag:
        raise ValueError(f"image {image.shape[:2]} is too small for lags up to {max_lag} px")
    gradients = oriented_gradients(image, sigmas)
    maps = []
    for dy, dx in gradients:
        horizontal, vertical = np.abs(dy), np.abs(dx)
        maps += [normalised_correlation(horizontal, horizontal, max_lag),
                 normalised_correlation(vertical, vertical, max_lag),
                 normalised_correlation(horizontal, vertical, max_lag)]
    energy = np.array([np.mean(dy**2 + dx**2) for dy, dx in gradients]) + 1e-12
    return LayoutStatistics(np.array(maps), orientation_histogram(gradients, bins), energy)


def tolerant_difference(a: np.ndarray, b: np.ndarray, tolerance: int = 5) -> float:
    """RMS difference of correlation maps (maps, lags, lags) that forgives shifts up to ``tolerance`` lags.

    Two crops of one wall differ in perspective: their correlation ridges sit a few lags apart, and a plain
    pointwise difference would call them *more* different than a map with no ridges at all. Comparing the
    grey dilations (max filters) and erosions (min filters) over a (2·tolerance+1)² window keeps a shifted
    ridge close and a missing ridge far."""
    window = (1, 2 * tolerance + 1, 2 * tolerance + 1)
    high = ndimage.maximum_filter(a, size=window) - ndimage.maximum_filter(b, size=window)
    low = ndimage.minimum_filter(a, size=window) - ndimage.minimum_filter(b, size=window)
    return float(np.sqrt((np.mean(high**2) + np.mean(low**2)) / 2))


def layout_distance_terms(a, b, max_lag: int = 40) -> dict:
    """The three terms of ``layout_distance`` (see the module docstring), for reporting each alone."""
    a = a if isinstance(a, LayoutStatistics) else layout_statistics(a, max_lag)
    b = b if isinstance(b, LayoutStatistics) else layout_statistics(b, max_lag)
    return {"correlation": tolerant_difference(a.correlations, b.correlations),
            "orientation": 0.5 * float(np.abs(a.histogram - b.histogram).sum()),
            "sharpness": float(np.mean(np.abs(np.log(a.energy / b.energy))))}


def layout_distance(a, b, max_lag: int = 40) -> float:
    """``correlation + orientation + ½ sharpness`` between two images (or their ``LayoutStatistics``);
    0 for equal layouts. Calibrated on skimage's brick, gravel and grass (``benchmarks/texture_layout.py``):
    other crops of an exemplar land near it, shuffled pixels, blurred copies and streaks far."""
    terms = layout_distance_terms(a, b, max_lag)
    return terms["correlation"] + terms["orientation"] + 0.5 * terms["sharpness"]


def max_normalised_cross_correlation(image, exemplar, min_overlap: float = 0.25) -> float:
    """The largest Pearson correlation between the grey ``image`` and the grey ``exemplar`` over every shift
    whose overlap covers at least ``min_overlap`` of the smaller image: 1 for a (shifted) copy of a large piece.

        ρ(d) = Σ (a - ā_d)(b - b̄_d) / sqrt(Σ (a - ā_d)² Σ (b - b̄_d)²)   over the overlap at shift d

    The five sums per shift come from FFT correlations, so every shift costs the same few FFTs."""
    a, b = grey(image), grey(exemplar)
    ones_a, ones_b = np.ones_like(a), np.ones_like(b)
    correlate = lambda x, y: fftconvolve(x, y[::-1, ::-1], mode="full")  # noqa: E731  sums over each overlap
    count = np.rint(correlate(ones_a, ones_b))
    sum_a, sum_b = correlate(a, ones_b), correlate(ones_a, b)
    sum_aa, sum_bb = correlate(a * a, ones_b), correlate(ones_a, b * b)
    sum_ab = correlate(a, b)
    keep = count >= min_overlap * min(a.size, b.size)
    n = count[keep]
    covariance = sum_ab[keep] - sum_a[keep] * sum_b[keep] / n
    variance_a = np.maximum(sum_aa[keep] - sum_a[keep] ** 2 / n, 1e-12)
    variance_b = np.maximum(sum_bb[keep] - sum_b[keep] ** 2 / n, 1e-12)
    return float(np.max(covariance / np.sqrt(variance_a * variance_b)))


def quadrant_crop(image, quadrant: str, size: int = 128) -> np.ndarray:
    """One quadrant (``"top-left"``, ``"bottom-left"``, ...) of ``image`` (H, W[, C]), resized to ``size`` x ``size``
    with an anti-aliasing blur: disjoint crops of one exemplar, for calibrating ``layout_distance``."""
    image = np.asarray(image, dtype=np.float64)
    vertical, horizontal = quadrant.split("-")
    half_h, half_w = image.shape[0] // 2, image.shape[1] // 2
    rows = slice(0, half_h) if vertical == "top" else slice(image.shape[0] - half_h, None)
    cols = slice(0, half_w) if horizontal == "left" else slice(image.shape[1] - half_w, None)
    piece = image[rows, cols]
    factors = (size / piece.shape[0], size / piece.shape[1])
    sigma = [0.5 / f - 0.5 if f < 1 else 0 for f in factors] + [0] * (piece.ndim - 2)
    blurred = ndimage.gaussian_filter(piece, sigma)
    return ndimage.zoom(blurred, list(factors) + [1] * (piece.ndim - 2), order=1, grid_mode=True, mode="grid-mirror")
