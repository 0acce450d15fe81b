"""The source document's artwork model end to end, at full quality (too long for CI; tests/test_artwork.py runs
a short version):

    python benchmarks/artwork.py                      # train both models, generate, judge, write the PNGs
    python benchmarks/artwork.py --reuse              # reuse the models saved in --models by an earlier run

1. Data: ``numcnn.datasets.load_artwork`` (10 classes of 128x128x3 patches of scikit-image's sample images,
   the held-out patches from a band of each image that no training patch touches).
2. The artwork CNN (``numcnn.zoo.artwork_model``, the source document's architecture, seed 0) trains on the
   patches of data seed 0. A **judge** of another architecture (``numcnn.zoo.artwork_judge_model``: strided
   convolutions, global average pooling, no Flatten; weights seed 1) trains on other patches (data seed 1,
   shuffle seed 1). Both are scored on the same held-out patches.
3. ``numcnn.generate.artwork_grid`` makes one picture per class and seed with the artwork model's gradient;
   the artwork model itself and the judge, which never saw the generator, classify them.

Prints the figures as JSON (also written to benchmarks/results/artwork.json) with the CPU, the thread count and
the load average, and writes docs/images/artwork_dataset.png and docs/images/artwork_generated.png.
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


def train(build, data_seed: int, fit_seed: int, per_class: int, epochs: int, x_test, y_test, path: Path, reuse: bool):
    """Train (or, with ``reuse``, load) one classifier; returns the model, its held-out accuracy, seconds."""
    from numcnn import load_model
    from numcnn.datasets import load_artwork
    from numcnn.preprocessing import images_to_input

    if reuse and path.is_file():
        model = load_model(path, compile=True)
        seconds = None  # not trained in this run
    else:
        (x, y), _ = load_artwork(n_per_class=per_class, n_test_per_class=1, seed=data_seed)
        model = build()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        start = time.perf_counter()
        model.fit(images_to_input(x), y.astype(np.int64), epochs=epochs, batch_size=32, seed=fit_seed, verbose=1)
        seconds = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    _, accuracy = model.evaluate(x_test, y_test, batch_size=100, verbose=0)
    return model, float(accuracy), seconds


def row_labels() -> list[str]:
    """Class names that fit beside a grid row ("deep field" on two lines)."""
    from numcnn.datasets import ARTWORK_CLASSES

    return [name.replace(" ", "\n") if len(name) > 7 else name for name in ARTWORK_CLASSES]


def dataset_figure(x_train, y_train, x_test, y_test, path: Path) -> None:
    """Three training patches and two held-out patches of every class."""
    from numcnn.generate.cli import image_grid
    from numcnn.preprocessing import images_to_input

    rows = [images_to_input(np.concatenate([x_train[y_train == k][:3], x_test[y_test == k][:2]])) for k in range(10)]
    image_grid(np.stack(rows), row_labels(), ["train", "train", "train", "held out", "held out"], path,
               title="the artwork data set: patches of scikit-image's sample images")


def main(argv=None) -> int:
    import run

    from numcnn.datasets import ARTWORK_CLASSES, load_artwork
    from numcnn.generate import artwork_grid
    from numcnn.generate.cli import image_grid
    from numcnn.preprocessing import images_to_input
    from numcnn.zoo import artwork_judge_model, artwork_model

    parser = argparse.ArgumentParser()
    parser.add_argument("--per-class", type=int, default=200, help="training patches per class (default 200)")
    parser.add_argument("--held-out", type=int, default=50, help="held-out patches per class (default 50)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs of the artwork model (default 4)")
    parser.add_argument("--judge-epochs", type=int, default=8, help="epochs of the judge (default 8)")
    parser.add_argument("--seeds", type=int, default=3, help="generated pictures per class (seeds 0..N-1)")
    parser.add_argument("--steps", type=int, default=200, help="generation steps (default 200)")
    parser.add_argument("--models", type=Path, default=ROOT / "runs" / "artwork", help="where the models are saved")
    parser.add_argument("--reuse", action="store_true", help="load the models an earlier run saved in --models")
    parser.add_argument("--images", type=Path, default=ROOT / "docs" / "images")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "artwork.json")
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test_u8, y_test) = load_artwork(n_per_class=args.per_class,
                                                           n_test_per_class=args.held_out, seed=0)
    x_test, y_test = images_to_input(x_test_u8), y_test.astype(np.int64)
    dataset_figure(x_train, y_train, x_test_u8, y_test, args.images / "artwork_dataset.png")
    del x_train

    model, accuracy, seconds = train(lambda: artwork_model(seed=0), 0, 0, args.per_class, args.epochs, x_test,
                                     y_test, args.models / "artwork_model.npz", args.reuse)
    judge, judge_accuracy, judge_seconds = train(lambda: artwork_judge_model(seed=1), 1, 1, args.per_class,
                                                 args.judge_epochs, x_test, y_test, args.models / "judge_model.npz",
                                                 args.reuse)

    seeds = list(range(args.seeds))
    start = time.perf_counter()
    images = artwork_grid(model, list(range(10)), seeds, steps=args.steps, progress=True)
    generate_seconds = time.perf_counter() - start
    flat = images.reshape(-1, *images.shape[2:])
    targets = np.repeat(np.arange(10), len(seeds))
    p_model, p_judge = model.predict(flat, batch_size=50, verbose=0), judge.predict(flat, batch_size=50, verbose=0)

    real = np.stack([x_test_u8[y_test == k][0] for k in range(10)]).astype(np.float32) / 255
    image_grid(np.concatenate([real[:, None], images], axis=1), row_labels(),
               ["held-out photo"] + [f"seed {s}" for s in seeds], args.images / "artwork_generated.png",
               title=f"generate_artwork: model says {np.mean(p_model.argmax(1) == targets):.0%}, "
                     f"judge says {np.mean(p_judge.argmax(1) == targets):.0%} right")

    figures = {
        "cpu": run.cpu_name(), "load_average_1min": os.getloadavg()[0],
        "numba_threads": __import__("numba").get_num_threads(),
        "train_patches_per_class": args.per_class, "held_out_per_class": args.held_out, "epochs": args.epochs, "judge_epochs": args.judge_epochs,
        "artwork_model_held_out_accuracy": accuracy, "artwork_model_train_seconds": seconds,
        "judge_held_out_accuracy": judge_accuracy, "judge_train_seconds": judge_seconds,
        "generated": {"seeds": len(seeds), "steps": args.steps, "seconds": generate_seconds,
                      "model_agrees": float(np.mean(p_model.argmax(1) == targets)),
                      "model_mean_target_probability": float(np.mean(p_model[np.arange(len(targets)), targets])),
                      "judge_agrees": float(np.mean(p_judge.argmax(1) == targets)),
                      "judge_mean_target_probability": float(np.mean(p_judge[np.arange(len(targets)), targets])),
                      "judge_per_class": [float(np.mean(p_judge.argmax(1)[targets == k] == k)) for k in range(10)],
                      "judge_says": [ARTWORK_CLASSES[k] for k in p_judge.argmax(1)]},
    }
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
