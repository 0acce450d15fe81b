"""Does texture synthesis reproduce an exemplar's *layout*? Judged by a statistic it does not optimise.

    python benchmarks/texture_layout.py            # three exemplars at 128x128, a few minutes
    python benchmarks/texture_layout.py --quick    # 64x64 exemplars, few steps: a smoke run

For skimage's brick (regular), gravel (irregular) and grass (fine, oriented): the exemplar is the top-left
quadrant of the 512x512 picture at half resolution (128x128), tinted to a colour. ``layout_distance``
(``numcnn/generate/texture_stats.py``) to the exemplar is printed for the synthesis and for references that
calibrate it: another crop (the bottom-left quadrant, disjoint; near), the exemplar's pixels shuffled, a copy
blurred by σ = 2 px and vertical streaks (each column's mean) (far). ``mncc`` is the largest normalised
cross-correlation between synthesis and exemplar over shifts overlapping >= 1/4: < 0.9 means no copy.
Writes docs/images/texture_layout.png (exemplar | another crop | synthesis, one row per exemplar).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from numcnn.generate import texture  # noqa: E402
from numcnn.generate.texture_stats import (layout_distance, layout_distance_terms,  # noqa: E402
                                           max_normalised_cross_correlation, quadrant_crop)

TINTS = {"brick": (0.9, 0.6, 0.4), "gravel": (0.8, 0.75, 0.7), "grass": (0.5, 0.8, 0.4)}


def exemplar_crops(name: str, size: int = 128):
    """(exemplar, another crop) of skimage.data.<name>, tinted to RGB in [0.05, 0.95]."""
    from skimage import data

    picture = getattr(data, name)().astype(np.float64) / 255
    tint = np.array(TINTS[name])
    return [np.clip(quadrant_crop(picture, q, size)[..., None] * tint + 0.05, 0, 1) for q in ("top-left", "bottom-left")]


def references(exemplar, other, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    flat = exemplar.reshape(-1, exemplar.shape[-1])
    return {"another crop": other,
            "shuffled": rng.permutation(flat, axis=0).reshape(exemplar.shape),
            "blurred": ndimage.gaussian_filter(exemplar, (2, 2, 0)),
            "streaks": np.broadcast_to(exemplar.mean(0, keepdims=True), exemplar.shape)}


def save_side_by_side(rows, path, scale: int = 2, gap: int = 4):
    from PIL import Image

    tiles = [np.concatenate([np.pad(im, ((0, 0), (0, gap), (0, 0)), constant_values=1) for im in row], 1)[:, :-gap]
             for row in rows]
    grid = np.concatenate([np.pad(t, ((0, gap), (0, 0), (0, 0)), constant_values=1) for t in tiles], 0)[:-gap]
    image = Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8))
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE.parent / "docs/images/texture_layout.png"))
    args = parser.parse_args()
    import run

    size, steps = (64, 40) if args.quick else (128, 300)
    max_lag = 20 if args.quick else 40
    print(f"CPU: {run.cpu_name()}; size {size}x{size}, {steps} L-BFGS steps, seed 0, lags up to ±{max_lag} px")
    print(f"{'exemplar':8s} | {'synthesis':>9s} | {'another crop':>12s} | {'shuffled':>8s} | {'blurred':>7s} | "
          f"{'streaks':>7s} | synthesis terms (correlation, orientation, sharpness) | mncc | seconds")
    rows = []
    for name in TINTS:
        exemplar, other = exemplar_crops(name, size)
        start = time.perf_counter()
        result = texture(exemplar, seed=0, size=(size, size), steps=steps)
        seconds = time.perf_counter() - start
        distances = {k: layout_distance(v, exemplar, max_lag) for k, v in references(exemplar, other).items()}
        terms = layout_distance_terms(result, exemplar, max_lag)
        print(f"{name:8s} | {layout_distance(result, exemplar, max_lag):9.3f} | {distances['another crop']:12.3f} | "
              f"{distances['shuffled']:8.3f} | {distances['blurred']:7.3f} | {distances['streaks']:7.3f} | "
              f"{terms['correlation']:.3f}, {terms['orientation']:.3f}, {terms['sharpness']:.3f}"
              f"{'':29s} | {max_normalised_cross_correlation(result, exemplar):.2f} | {seconds:.0f}", flush=True)
        rows.append([exemplar, other, result])
    save_side_by_side(rows, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
