"""Class images judged as issue 16 asks: 10 classes x 10 seeds, in pixel space and in a generator's latent space.

    python benchmarks/class_images.py                                   # trains the VAE it needs (minutes)
    python benchmarks/class_images.py --generator /tmp/numcnn_vae_mnist-5k.npz   # or reuse one
    python benchmarks/class_images.py --pixel                           # also the pixel-space variants

The classifier is the seed model and the judge the independent classifier of tests/test_generate.py (another
architecture and seed, with an 11th "not a digit" class), both trained here exactly as the tests train them.
Three figures per configuration:

* **agreement**: the fraction of the 100 images the judge labels as their target;
* **spread**: per class, the mean pairwise L2 distance of its 10 seeds' images over that of 50 real digits of
  the class (1 = as varied as real digits; 0 = one picture); the mean and the worst class are printed;
* **checkerboard**: the fraction of the mean-free image's power in the corner of its 2-D spectrum where both
  frequencies are within 2 bins of Nyquist (|kx|, |ky| >= 12 of 14 on 28 x 28: a pattern of period ~2 along both
  axes), relative to the same fraction for real digits (1 = as much as real digits; a faint checkerboard > 10).
  (Sharp edges alone do not raise it much: a straight edge puts its power along one axis, not in the corner.)

Writes docs/images/class_images_generator.png (the 10 x 10 grid in the generator's latent space) and, with
``--pixel``, docs/images/class_images_pixel.png (the pixel-space grid with the defaults). Threads: as
benchmarks/generation_quality.py, run with NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def checkerboard_energy(images, band: int = 2) -> float:
    """Mean over images (N, H, W, 1) of the share of ``|FFT(x - mean x)|²`` at ``|kx| >= W/2 - band`` and
    ``|ky| >= H/2 - band`` (integer frequencies; H/2 is Nyquist)."""
    x = np.asarray(images, dtype=np.float64)[..., 0]
    power = np.abs(np.fft.fft2(x - x.mean(axis=(1, 2), keepdims=True))) ** 2
    rows, cols = (np.abs(np.fft.fftfreq(n) * n) for n in x.shape[1:])
    corner = (rows[:, None] >= x.shape[1] / 2 - band) & (cols[None, :] >= x.shape[2] / 2 - band)
    return float(np.mean(power[:, corner].sum(axis=1) / (power.sum(axis=(1, 2)) + 1e-300)))


def measure(grid, judge, x, y) -> dict:
    """Agreement, per-class spread and checkerboard of a (10, seeds, 28, 28, 1) grid (see the docstring)."""
    from tests.test_generate import judged_accuracy, mean_pairwise_distance

    spread = [mean_pairwise_distance(grid[c]) / mean_pairwise_distance(x[y == c][:50]) for c in range(len(grid))]
    return {"agreement": judged_accuracy(judge, grid), "spread_mean": float(np.mean(spread)),
            "spread_min": float(np.min(spread)),
            "checkerboard": checkerboard_energy(grid.reshape(-1, *grid.shape[2:])) / checkerboard_energy(x[:1000])}


def report(name, figures, seconds):
    print(f"{name}: judge agreement {figures['agreement']:.0%}; spread {figures['spread_mean']:.2f} of real digits' "
          f"(worst class {figures['spread_min']:.2f}); checkerboard {figures['checkerboard']:.2f} x real digits'; "
          f"{seconds:.0f} s (load average {os.getloadavg()[0]:.1f})", flush=True)


def main(argv=None) -> int:
    import run

    from numcnn.datasets import load_dataset
    from numcnn.generate import Prior, class_images, load_generator, train_generator
    from numcnn.generate.cli import image_grid
    from numcnn.preprocessing import images_to_input
    from tests.test_generate import train_judge, train_seed_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--generator", help="a saved generator (default: train a VAE with its defaults, seed 0)")
    parser.add_argument("--pixel", action="store_true", help="also measure the pixel-space path and its variants")
    parser.add_argument("--steps", type=int, help="latent steps (default: class_images' default)")
    parser.add_argument("--latent-penalty", type=float, default=0.01)
    parser.add_argument("--images", default=str(ROOT / "docs" / "images"))
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_dataset("mnist-5k")
    mnist = (images_to_input(x_train), y_train.astype(np.int64)), (images_to_input(x_test), y_test.astype(np.int64))
    (x, y), _ = mnist
    import numba

    print(f"CPU: {run.cpu_name()}; Numba threads {numba.get_num_threads()}; load average {os.getloadavg()[0]:.1f}",
          flush=True)
    start = time.perf_counter()
    model, judge = train_seed_model(mnist), train_judge(mnist)
    print(f"seed model and judge trained in {time.perf_counter() - start:.0f} s", flush=True)
    if args.generator:
        gen = load_generator(args.generator)
    else:
        start = time.perf_counter()
        gen = train_generator(x[:4000], y[:4000], kind="vae", seed=0, progress=False)
        gen.save("/tmp/numcnn_class_images_vae.npz")
        print(f"VAE trained (defaults, seed 0) in {time.perf_counter() - start:.0f} s", flush=True)
    targets, seeds = range(10), range(10)
    print(f"real digits: {checkerboard_energy(x[:1000]):.5f} of their power near Nyquist (the unit below)")

    runs = [("generator's own samples (steps=0)", {"generator": gen, "steps": 0}),
            (f"latent space ({gen.kind}, steps {args.steps or 'default'}, penalty {args.latent_penalty})",
             {"generator": gen, "steps": args.steps, "latent_penalty": args.latent_penalty})]
    if args.pixel:
        # tv: the checkerboard comes from the total-variation term: its gradient step, normalised with the
        # rest, is an explicit Euler step of diffusion, unstable at Nyquist when too large
        runs += [(f"pixel space (defaults, tv {Prior().tv})", {}),
                 ("pixel space, tv 0.5", {"prior": Prior(tv=0.5)}),
                 ("pixel space, tv 0", {"prior": Prior(tv=0.0)})]
    for name, options in runs:
        start = time.perf_counter()
        grid = class_images(model, targets, seeds, **options)
        figures = measure(grid, judge, x, y)
        report(name, figures, time.perf_counter() - start)
        if name.startswith("latent space") or name.startswith("pixel space (defaults"):
            np.testing.assert_array_equal(grid, class_images(model, targets, seeds, **options))  # same bits
            latent = name.startswith("latent space")
            image_grid(grid, [f"class {t}" for t in targets], [f"seed {s}" for s in seeds],
                       Path(args.images) / ("class_images_generator.png" if latent else "class_images_pixel.png"),
                       title=f"class_images(model{f', generator={gen.kind.upper()}' if latent else ''}): judge "
                             f"{figures['agreement']:.0%}, spread {figures['spread_mean']:.2f} of real digits'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
