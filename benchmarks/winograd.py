"""Winograd F(2x2, 3x3) vs the im2col + GEMM convolution, per layer shape: interleaved A/B timing.

    python benchmarks/winograd.py                # every shape, 41 alternations each
    python benchmarks/winograd.py --repeats 11   # quicker

For each 3x3 stride-1 layer shape (the CIFAR-style model's four convolutions of benchmarks/architectures.py,
the seed model's, and a few more), in one process: the two implementations alternate ``--repeats`` times
(A, B, A, B, ...), each time one forward and one backward (dx, dw, db), and the table reports the medians and
their ratio. Alternating keeps slow drifts of a shared CPU (other processes, frequency) out of the ratio; the
medians keep single interruptions out. Also printed: the max |Winograd - im2col| of the forward, relative to
max |y|, so that speed is never read without accuracy. The first line names the CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

# (label, batch, H, W, C_in, C_out, padding)
SHAPES = [
    ("CIFAR conv1 (3 -> 32)", 32, 32, 32, 3, 32, "same"),
    ("CIFAR conv2 (32 -> 32)", 32, 32, 32, 32, 32, "same"),
    ("CIFAR conv3 (32 -> 64)", 32, 16, 16, 32, 64, "same"),
    ("CIFAR conv4 (64 -> 64)", 32, 16, 16, 64, 64, "same"),
    ("CIFAR conv2 (32 -> 32)", 64, 32, 32, 32, 32, "same"),
    ("CIFAR conv4 (64 -> 64)", 64, 16, 16, 64, 64, "same"),
    ("32x32, 64 -> 64", 32, 32, 32, 64, 64, "same"),
    ("seed conv2 (32 -> 64)", 32, 13, 13, 32, 64, "valid"),
    ("seed conv2 (32 -> 64)", 128, 13, 13, 32, 64, "valid"),
    ("seed conv3 (64 -> 64)", 128, 5, 5, 64, 64, "valid"),
    ("128x128, 16 -> 16", 32, 128, 128, 16, 16, "same"),
]


def step(forward, backward, x, w, b, dy, padding):
    """One forward and one full backward; seconds."""
    start = time.perf_counter()
    _, cache = forward(x, w, b, padding)
    backward(dy, cache)
    return time.perf_counter() - start


def compare(batch, height, width, c_in, c_out, padding, repeats, dtype):
    import numpy as np

    from numcnn.kernels import conv, winograd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, height, width, c_in)).astype(dtype)
    w = rng.normal(scale=(9 * c_in) ** -0.5, size=(3, 3, c_in, c_out)).astype(dtype)
    b = np.zeros(c_out, dtype)
    im2col = (lambda x, w, b, p: conv.conv2d_forward(x, w, b, (1, 1), p, winograd_rule=False), conv.conv2d_backward)
    wino = (winograd.winograd_conv3x3_forward, winograd.winograd_conv3x3_backward)
    y_direct, _ = im2col[0](x, w, b, padding)
    y_wino, _ = wino[0](x, w, b, padding)
    dy = rng.normal(size=y_direct.shape).astype(dtype)
    error = float(np.abs(y_wino - y_direct).max() / np.abs(y_direct).max())
    times = {"im2col": [], "winograd": []}
    for _ in range(2):  # warm-up (compilation, page faults)
        step(*im2col, x, w, b, dy, padding), step(*wino, x, w, b, dy, padding)
    for _ in range(repeats):
        times["im2col"].append(step(*im2col, x, w, b, dy, padding))
        times["winograd"].append(step(*wino, x, w, b, dy, padding))
    direct_ms, wino_ms = (statistics.median(times[k]) * 1e3 for k in ("im2col", "winograd"))
    chosen = conv.use_winograd(w.shape, (1, 1), y_direct.shape[1:3])
    return direct_ms, wino_ms, error, "Winograd" if chosen else "im2col"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)
    import run

    print(f"CPU: {run.cpu_name()}; {os.cpu_count()} cores; {args.dtype}; forward + backward per call, "
          f"median of {args.repeats} interleaved calls each")
    print("| layer | batch | input | im2col ms | Winograd ms | Winograd / im2col | max rel. diff | use_winograd picks |")
    print("|---|---|---|---|---|---|---|---|")
    for label, batch, height, width, c_in, c_out, padding in SHAPES:
        direct_ms, wino_ms, error, chosen = compare(batch, height, width, c_in, c_out, padding, args.repeats,
                                                    args.dtype)
        print(f"| {label} | {batch} | {height}x{width}x{c_in} {padding} | {direct_ms:.2f} | {wino_ms:.2f} | "
              f"{wino_ms / direct_ms:.2f} | {error:.1e} | {chosen} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
