"""How good are numcnn's generators? Train with the defaults, time it, judge the samples.

    python benchmarks/generation_quality.py                       # both kinds on the embedded MNIST sample
    python benchmarks/generation_quality.py --dataset fashion-mnist --kinds vae

MNIST (``mnist-5k``): the generators train on the 4,000 embedded training digits; the judge
(``numcnn.generate.quality``, a CNN of another architecture) trains on the 1,000 embedded test digits, which
the generators never see, and the Fréchet distances use those too. Fashion-MNIST (Debian's
``dataset-fashion-mnist``): the generators train on the first 4,000 training images (the same budget), the judge
on the 10,000 test images. Prints one line per kind; writes the sample grid to docs/images/.

Threads: on a machine whose cores are shared with other jobs, multi-threaded BLAS and Numba kernels wait for
each other's threads at every small operation (measured here under a load average of 5 on 2 cores: one VAE
training step took 1.75 s with 2 threads and 0.063 s with one). Run with
``NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1`` there; the script prints the thread
counts and the load average beside its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def threads() -> str:
    """The thread counts the kernels run with (Numba's, and the BLAS's as the environment asks)."""
    import numba

    return (f"Numba threads {numba.get_num_threads()}, OPENBLAS_NUM_THREADS="
            f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")


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
    # The judge on the real training images (which it never saw): the agreement a perfect generator would get
    judge_on_real = float(np.mean(np.argmax(judge.predict(x_train, batch_size=256, verbose=0), axis=1) == y_train))
    print(f"CPU: {run.cpu_name()}; {threads()}; load average {os.getloadavg()[0]:.1f}; judge trained on "
          f"{len(x_held)} held-out images in {time.perf_counter() - start:.0f} s; it labels the {len(x_train)} "
          f"real training images {judge_on_real:.1%} correctly", flush=True)
    results = {}
    for kind in args.kinds.split(","):
        start, start_cpu = time.perf_counter(), time.process_time()
        gen = train_generator(x_train, y_train, kind=kind, epochs=args.epochs, seed=args.seed, progress=False)
        # CPU time beside wall time: with one thread it is what the run takes on an idle core
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
        measured = judge_generator(gen, judge, x_held, y_held)
        measured.update(train_seconds=seconds, train_cpu_seconds=cpu_seconds, judge_on_real=judge_on_real)
        results[kind] = measured
        print(f"{kind} on {args.dataset} ({len(x_train)} images, epochs {args.epochs or 'default'}): trained in "
              f"{seconds:.0f} s wall, {cpu_seconds:.0f} s CPU (load average {os.getloadavg()[0]:.1f}); judge "
              f"agreement {measured['agreement']:.0%} (10 labels x 10 seeds); diversity {measured['diversity']:.2f}; "
              f"Frechet {measured['frechet']:.1f} (real vs real "
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
