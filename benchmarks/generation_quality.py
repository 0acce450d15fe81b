"""How good are numcnn's generators? Train with the defaults, time it, judge the samples.

    python benchmarks/generation_quality.py                       # both kinds on the embedded MNIST sample
    python benchmarks/generation_quality.py --dataset fashion-mnist --kinds vae

MNIST (``mnist-5k``): the generators train on the 4,000 embedded training digits; the judge
(``numcnn.generate.quality``, a CNN of another architecture) trains on the 1,000 embedded test digits, which
the generators never see, and the Fréchet distances use those too. Fashion-MNIST (Debian's
``dataset-fashion-mnist``): the generators train on the first 4,000 training images (the same budget), the judge
on the 10,000 test images. Prints one line per kind; writes the sample grid to docs/images/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def load(dataset: str):
    from numcnn.datasets import load_dataset
    from numcnn.preprocessing import images_to_input

    (x_train, y_train), (x_test, y_test) = load_dataset(dataset)
    x_train, x_test = images_to_input(x_train), images_to_input(x_test)
    return (x_train[:4000], y_train[:4000].astype(np.int64)), (x_test, y_test.astype(np.int64))


def main(argv=None) -> int:
    import run

    from numcnn.generate import sample_grid, train_generator
    from numcnn.generate.cli import image_grid
    from numcnn.generate.quality import judge_generator, train_judge

    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--kinds", default="vae,gan")
    parser.add_argument("--epochs", type=int, help="override the kind's default (then not the default figures)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", default=str(ROOT / "docs" / "images"))
    args = parser.parse_args(argv)

    (x_train, y_train), (x_held, y_held) = load(args.dataset)
    start = time.perf_counter()
    judge = train_judge(x_held, y_held, epochs=8, seed=1)
    print(f"CPU: {run.cpu_name()}; judge trained on {len(x_held)} held-out images in "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    results = {}
    for kind in args.kinds.split(","):
        start = time.perf_counter()
        gen = train_generator(x_train, y_train, kind=kind, epochs=args.epochs, seed=args.seed, progress=False)
        seconds = time.perf_counter() - start
        measured = judge_generator(gen, judge, x_held, y_held)
        measured["train_seconds"] = seconds
        results[kind] = measured
        print(f"{kind} on {args.dataset} ({len(x_train)} images, epochs {args.epochs or 'default'}): trained in "
              f"{seconds:.0f} s; judge agreement {measured['agreement']:.0%} (10 labels x 10 seeds); diversity "
              f"{measured['diversity']:.2f}; Frechet {measured['frechet']:.1f} (real vs real "
              f"{measured['frechet_real_vs_real']:.1f})", flush=True)
        suffix = f"_{args.epochs}epochs" if args.epochs else ""
        name = f"generated_{kind}_{args.dataset.replace('-', '_')}{suffix}.png"
        image_grid(sample_grid(gen, range(10), range(10)), [f"label {i}" for i in range(10)],
                   [f"seed {s}" for s in range(10)], Path(args.images) / name,
                   title=f"numcnn conditional {kind.upper()} on {args.dataset} ({args.epochs or 'default'} epochs): "
                         f"sample(gen, label, seed)")
        gen.save(Path("/tmp") / f"numcnn_{kind}_{args.dataset}.npz")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
