"""Judging a conditional generator with an independent classifier (the "judge"), as MNIST papers do.

* ``judge_network`` + ``train_judge``: a small CNN with an architecture of its own (5x5 convolutions and
  max-pooling, unlike the generators' and the discriminator's stride-2 3x3/4x4 layers), trained on real
  images the generator never saw.
* ``agreement``: the fraction of a ``labels x seeds`` grid the judge classifies as the conditioned label.
* ``diversity``: per class, the mean pairwise distance between the images of different seeds divided by the
  mean pairwise distance between real images of that class (1 = as varied as real data; 0 = one picture).
* ``frechet_distance``: the Fréchet distance between Gaussians fitted to the judge's penultimate features of
  two image sets (FID with the judge in place of Inception); report it beside the real-vs-real figure
  (two disjoint sets of real images), which is what "close to real" means at that sample size.
"""

from __future__ import annotations

import numpy as np


def judge_network(image_shape, num_classes=10, seed=0):
    from ..layers import Conv2D, Dense, Flatten, Input, MaxPooling2D
    from ..model import Sequential

    return Sequential([
        Input(tuple(image_shape)),
        Conv2D(16, 5, padding="same", activation="relu"), MaxPooling2D(2),
        Conv2D(32, 5, padding="same", activation="relu"), MaxPooling2D(2),
        Flatten(), Dense(64, activation="relu"), Dense(num_classes, activation="softmax"),
    ], name="judge", seed=seed)


def train_judge(x, y, epochs=8, seed=0, num_classes=None):
    """The judge, trained on real ``(x, y)`` with Adam; returns the compiled model."""
    judge = judge_network(x.shape[1:], int(y.max()) + 1 if num_classes is None else num_classes, seed)
    judge.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    judge.fit(x, y, epochs=epochs, batch_size=32, seed=seed, verbose=0)
    return judge


def features(judge, x, batch_size=256) -> np.ndarray:
    """The judge's penultimate activations (the Dense(64) layer), float64 (N, 64)."""
    out = []
    for start in range(0, len(x), batch_size):
        h = np.asarray(x[start:start + batch_size], judge.dtype)
        for layer in judge.layers[:-1]:
            h = layer.forward(h)
        out.append(h.astype(np.float64))
    return np.concatenate(out)


def agreement(judge, grid, labels) -> float:
    """Fraction of ``grid`` (len(labels), S, H, W, C) that the judge assigns to its row's label."""
    rows, seeds = grid.shape[:2]
    predicted = np.argmax(judge.predict(grid.reshape(rows * seeds, *grid.shape[2:]), batch_size=256, verbose=0), axis=1)
    return float(np.mean(predicted.reshape(rows, seeds) == np.asarray(labels)[:, None]))


def mean_pairwise_distance(images) -> float:
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    squared = np.sum(flat * flat, axis=1)
    distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * flat @ flat.T, 0))
    n = len(flat)
    return float(distances.sum() / (n * (n - 1)))


def diversity(grid, labels, x_real, y_real, real_per_class=50) -> float:
    """Mean over the rows of ``grid`` of (pairwise distance across seeds) / (pairwise distance between
    ``real_per_class`` real images of that label)."""
    ratios = []
    for row, label in enumerate(labels):
        real = x_real[y_real == label][:real_per_class]
        ratios.append(mean_pairwise_distance(grid[row]) / mean_pairwise_distance(real))
    return float(np.mean(ratios))


def frechet_distance(features_a, features_b) -> float:
    """``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``; the trace of the square root from the
    eigenvalues of ``S_a S_b`` (real and non-negative up to rounding)."""
    mu_a, mu_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    eigenvalues = np.linalg.eigvals(cov_a @ cov_b)
    trace_sqrt = np.sum(np.sqrt(np.maximum(eigenvalues.real, 0)))
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def judge_generator(gen, judge, x_real, y_real, labels=range(10), seeds=range(10), fid_per_class=50):
    """``{"agreement", "diversity", "frechet", "frechet_real_vs_real"}`` for ``gen`` against held-out real
    ``(x_real, y_real)`` (which the judge may have trained on, the generator must not have). The Fréchet sets:
    ``fid_per_class`` generated images per label (seeds 1000, 1001, ...) against the first half of the real
    images; real-vs-real compares the two halves (sets of the same size)."""
    from .generative import sample_grid

    labels = list(labels)
    grid = sample_grid(gen, labels, seeds)
    result = {"agreement": agreement(judge, grid, labels), "diversity": diversity(grid, labels, x_real, y_real)}
    half = len(x_real) // 2
    n_generated = min(half, fid_per_class * len(labels))
    per_class = max(1, n_generated // len(labels))
    generated = sample_grid(gen, labels, range(1000, 1000 + per_class)).reshape(-1, *gen.image_shape)
    real_a, real_b = features(judge, x_real[:half]), features(judge, x_real[half:2 * half])
    result["frechet"] = frechet_distance(features(judge, generated), real_a)
    result["frechet_real_vs_real"] = frechet_distance(real_b[:len(generated)], real_a)
    return result
