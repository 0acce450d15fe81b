"""Winograd F(2x2, 3x3) and F(4x4, 3x3) vs the im2col + GEMM convolution, per layer shape: interleaved timing;
and larger kernels by their 3x3 pieces (forward only) vs im2col.

    python benchmarks/winograd.py                # every shape, 41 alternations each
    python benchmarks/winograd.py --repeats 11   # quicker

For each 3x3 stride-1 layer shape (the CIFAR-style model's four convolutions of benchmarks/architectures.py,
the seed model's, the artwork CNN's, and a few more), in one process: the three implementations take turns
``--repeats`` times (A, B, C, A, B, C, ...), each time one forward and one backward (dx, dw, db), and the table
reports the medians and their ratios to im2col. Taking turns keeps slow drifts of a shared CPU (other processes,
frequency) out of the ratios; the medians keep single interruptions out. Also printed: the max |Winograd -
im2col| of each forward, relative to max |y|, so that speed is never read without accuracy. The first line
names the CPU and the BLAS kernel. The table also goes to ``benchmarks/results/winograd_<kernel>.md`` (one file per
OpenBLAS kernel, e.g. ``SkylakeX`` and, with ``OPENBLAS_CORETYPE=Haswell``, ``Haswell``).
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
    ("artwork conv2 (32 -> 64)", 32, 63, 63, 32, 64, "valid"),
    ("artwork conv3 (64 -> 128)", 32, 30, 30, 64, 128, "valid"),
    ("128x128, 16 -> 16", 32, 128, 128, 16, 16, "same"),
    ("32x32, 8 -> 16", 32, 32, 32, 8, 16, "same"),
]
TILES = (2, 4)  # Winograd F(2x2, 3x3) and F(4x4, 3x3)
# Larger kernels, their forward timed (numcnn runs them by their 3x3 pieces where conv.use_winograd_pieces says so):
# (label, batch, H, W, C_in, C_out, kernel, padding)
PIECES_SHAPES = [
    ("strided net conv2 (5x5, 32 -> 64)", 256, 16, 16, 32, 64, 5, "same"),
    ("strided net conv2 (5x5, 32 -> 64)", 32, 16, 16, 32, 64, 5, "same"),
    ("7x7, 32 -> 64", 256, 16, 16, 32, 64, 7, "same"),
    ("5x5, 16 -> 32", 256, 32, 32, 16, 32, 5, "same"),
    ("4x4, 32 -> 32", 256, 32, 32, 32, 32, 4, "same"),
]


def step(forward, backward, x, w, b, dy, padding):
    """One forward and one full backward; seconds."""
    start = time.perf_counter()
    _, cache = forward(x, w, b, padding)
    backward(dy, cache)
    return time.perf_counter() - start


def compare(batch, height, width, c_in, c_out, padding, repeats, dtype):
    """Median ms of im2col and of each Winograd tile size (forward + backward), Winograd's max relative
    difference from im2col's forward per tile size, and what ``use_winograd`` picks."""
    import numpy as np

    from numcnn.kernels import conv, winograd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, height, width, c_in)).astype(dtype)
    w = rng.normal(scale=(9 * c_in) ** -0.5, size=(3, 3, c_in, c_out)).astype(dtype)
    b = np.zeros(c_out, dtype)
    methods = {"im2col": (lambda x, w, b, p: conv.conv2d_forward(x, w, b, (1, 1), p, winograd_rule=False),
                          conv.conv2d_backward)}
    for tile in TILES:
        methods[tile] = (lambda x, w, b, p, tile=tile: winograd.winograd_conv3x3_forward(x, w, b, p, tile=tile),
                         winograd.winograd_conv3x3_backward)
    y_direct, _ = methods["im2col"][0](x, w, b, padding)
    dy = rng.normal(size=y_direct.shape).astype(dtype)
    errors = {tile: float(np.abs(methods[tile][0](x, w, b, padding)[0] - y_direct).max() / np.abs(y_direct).max())
              for tile in TILES}
    times = {name: [] for name in methods}
    for _ in range(2):  # warm-up (compilation, page faults)
        for pair in methods.values():
            step(*pair, x, w, b, dy, padding)
    for _ in range(repeats):
        for name, pair in methods.items():
            times[name].append(step(*pair, x, w, b, dy, padding))
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    chosen = conv.use_winograd(w.shape, (1, 1), y_direct.shape[1:3])
    return medians, errors, f"F({conv.WINOGRAD_TILE}x{conv.WINOGRAD_TILE})" if chosen else "im2col"


def compare_pieces(batch, height, width, c_in, c_out, kernel, padding, repeats, dtype):
    """Median ms of im2col's forward and of the 3x3 pieces' (``winograd.winograd_pieces_forward``), taking
    turns, the pieces' max relative difference, and what ``use_winograd_pieces`` picks."""
    import numpy as np

    from numcnn.kernels import conv, winograd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, height, width, c_in)).astype(dtype)
    w = rng.normal(scale=(kernel * kernel * c_in) ** -0.5, size=(kernel, kernel, c_in, c_out)).astype(dtype)
    b = np.zeros(c_out, dtype)
    methods = {"im2col": lambda: conv.conv2d_forward(x, w, b, (1, 1), padding, winograd_rule=False)[0],
               "pieces": lambda: winograd.winograd_pieces_forward(x, w, b, padding)}
    y_direct = methods["im2col"]()
    error = float(np.abs(methods["pieces"]() - y_direct).max() / np.abs(y_direct).max())
    times = {name: [] for name in methods}
    for _ in range(2):
        for call in methods.values():
            call()
    for _ in range(repeats):
        for name, call in methods.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) * 1e3 for name, t in times.items()}
    chosen = conv.use_winograd_pieces(w.shape, (1, 1), y_direct.shape[1:3])
    return medians, error, "pieces" if chosen else "im2col"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--out-dir", default=str(HERE / "results"), help="where winograd_<kernel>.md goes")
    args = parser.parse_args(argv)
    import run

    import numcnn  # noqa: F401  (before NumPy, as numcnn asks)
    import threadpoolctl

    kernels = sorted({lib.get("architecture", "?") for lib in threadpoolctl.threadpool_info()
                      if lib.get("internal_api") == "openblas"})
    lines = [f"CPU: {run.cpu_name()}; {os.cpu_count()} cores; OpenBLAS kernel {', '.join(kernels)}; {args.dtype}; "
             f"forward + backward per call, median of {args.repeats} calls each, taking turns; {time.strftime('%Y-%m-%d')}",
             "",
             "| layer | batch | input | im2col ms | F(2x2) ms | F(4x4) ms | F(2x2) / im2col | F(4x4) / im2col | "
             "max rel. diff F(2x2) / F(4x4) | `use_winograd` picks |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    print(*lines, sep="\n")
    for label, batch, height, width, c_in, c_out, padding in SHAPES:
        ms, errors, chosen = compare(batch, height, width, c_in, c_out, padding, args.repeats, args.dtype)
        lines.append(f"| {label} | {batch} | {height}x{width}x{c_in} {padding} | {ms['im2col']:.2f} | {ms[2]:.2f} | "
                     f"{ms[4]:.2f} | {ms[2] / ms['im2col']:.2f} | {ms[4] / ms['im2col']:.2f} | "
                     f"{errors[2]:.1e} / {errors[4]:.1e} | {chosen} |")
        print(lines[-1], flush=True)
    lines += ["", "Larger kernels, forward only:", "",
              "| layer | batch | input | im2col ms | 3x3 pieces by F(4x4) ms | pieces / im2col | max rel. diff | "
              "`use_winograd_pieces` picks |", "|---|---|---|---|---|---|---|---|"]
    print(*lines[-5:], sep="\n")
    for label, batch, height, width, c_in, c_out, kernel, padding in PIECES_SHAPES:
        ms, error, chosen = compare_pieces(batch, height, width, c_in, c_out, kernel, padding, args.repeats,
                                           args.dtype)
        lines.append(f"| {label} | {batch} | {height}x{width}x{c_in} {padding} | {ms['im2col']:.2f} | "
                     f"{ms['pieces']:.2f} | {ms['pieces'] / ms['im2col']:.2f} | {error:.1e} | {chosen} |")
        print(lines[-1], flush=True)
    out = Path(args.out_dir) / f"winograd_{'_'.join(kernels)}.md"
    out.write_text("\n".join(lines) + "\n")
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
