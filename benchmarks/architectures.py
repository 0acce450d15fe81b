"""Training-step time of numcnn vs Keras (TensorFlow) vs PyTorch on architectures beyond the seed model.

    python benchmarks/architectures.py                  # all architectures, batch 32 and 64, 3 rounds
    python benchmarks/architectures.py --quick          # CI smoke mode: one round, two steps

Each architecture is one neutral list of layers, built in each framework with the same shapes, so the same
arithmetic runs everywhere. Every (framework, architecture, batch) runs in a fresh subprocess with 2 threads, on
random data (speed does not depend on the values), with Adam and sparse categorical cross-entropy: a few warm-up
steps, then the mean of ``--steps`` timed steps. Frameworks alternate within each round; the table reports the
median over rounds and numcnn's time divided by the faster peer's (< 1: numcnn is faster). The first line of
the output names the CPU, because the ratios change with it (see the README's performance section). Writes
``benchmarks/results/architectures.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # TF's fastest CPU path: the peer at its best

HERE = Path(__file__).resolve().parent
THREADS = 2
CLASSES = 10

# (name, input shape, layers). Layers: ("conv", filters, kernel, strides, padding, use_bias), ("bn",), ("relu",),
# ("maxpool", size), ("dropout", rate), ("flatten",), ("dense", units), ("head",) = Dense(10, softmax).
ARCHITECTURES = {
    "seed MNIST CNN": ((28, 28, 1), [
        ("conv", 32, 3, 1, "valid", True), ("relu",), ("maxpool", 2),
        ("conv", 64, 3, 1, "valid", True), ("relu",), ("maxpool", 2),
        ("conv", 64, 3, 1, "valid", True), ("relu",), ("flatten",), ("dense", 64), ("relu",), ("head",)]),
    "CIFAR-style, BN + Dropout": ((32, 32, 3), [
        ("conv", 32, 3, 1, "same", False), ("bn",), ("relu",), ("conv", 32, 3, 1, "same", False), ("bn",), ("relu",),
        ("maxpool", 2), ("dropout", 0.25),
        ("conv", 64, 3, 1, "same", False), ("bn",), ("relu",), ("conv", 64, 3, 1, "same", False), ("bn",), ("relu",),
        ("maxpool", 2), ("dropout", 0.25), ("flatten",), ("dense", 128), ("bn",), ("relu",), ("dropout", 0.5),
        ("head",)]),
}


# ----------------------------------------------------------------------------------------------
# One architecture in each framework
# ----------------------------------------------------------------------------------------------
def build_layers(L, shape, spec, input_layer):
    """The layer list of ``spec`` from a module of Keras-named layers: ``numcnn.layers`` and ``keras.layers``
    alike (numcnn keeps Keras's names and arguments, so one function builds both)."""
    built = [input_layer(shape)]
    for kind, *args in spec:
        built.append({"conv": lambda f, k, s, p, b: L.Conv2D(f, k, strides=s, padding=p, use_bias=b),
                      "bn": L.BatchNormalization, "relu": L.ReLU, "maxpool": L.MaxPooling2D, "dropout": L.Dropout,
                      "flatten": L.Flatten, "dense": L.Dense,
                      "head": lambda: L.Dense(CLASSES, activation="softmax")}[kind](*args))
    return built


def numcnn_model(shape, spec):
    import numcnn
    from numcnn import layers

    model = numcnn.Sequential(build_layers(layers, shape, spec, layers.Input), seed=0)
    model.compile("adam", "sparse_categorical_crossentropy")
    return lambda x, y: model.train_step(x, y)


def keras_model(shape, spec):
    import keras
    import tensorflow as tf

    model = keras.Sequential(build_layers(keras.layers, shape, spec, keras.Input))
    model.compile("adam", "sparse_categorical_crossentropy")
    return lambda x, y: model.train_on_batch(tf.constant(x), tf.constant(y))


def torch_model(shape, spec):
    import torch
    from torch import nn

    height, width, channels = shape
    modules, size = [], (channels, height, width)
    for kind, *args in spec:
        if kind == "conv":
            filters, kernel, strides, padding, bias = args
            modules.append(nn.Conv2d(size[0], filters, kernel, stride=strides, padding=padding, bias=bias))
            shrink = 0 if padding == "same" else kernel - 1
            size = (filters, size[1] - shrink, size[2] - shrink)
        elif kind == "bn":
            modules.append(nn.BatchNorm2d(size[0], eps=1e-3, momentum=0.01) if len(size) == 3
                           else nn.BatchNorm1d(size[0], eps=1e-3, momentum=0.01))
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "maxpool":
            modules.append(nn.MaxPool2d(args[0]))
            size = (size[0], size[1] // args[0], size[2] // args[0])
        elif kind == "dropout":
            modules.append(nn.Dropout(args[0]))
        elif kind == "flatten":
            modules.append(nn.Flatten())
            size = (size[0] * size[1] * size[2],)
        elif kind in ("dense", "head"):
            units = args[0] if kind == "dense" else CLASSES
            modules.append(nn.Linear(size[0], units))
            size = (units,)
    model = nn.Sequential(*modules)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()  # from logits: the fused softmax + cross-entropy Keras and numcnn use too

    def step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        return float(loss)

    return step


BUILDERS = {"numcnn": numcnn_model, "keras": keras_model, "torch": torch_model}


def worker(framework: str, architecture: str, batch: int, steps: int, warmup: int) -> dict:
    """Seconds per training step (mean of ``steps`` after ``warmup``), in this process."""
    import numpy as np

    if framework == "torch":
        import torch

        torch.set_num_threads(THREADS)
    shape, spec = ARCHITECTURES[architecture]
    step = BUILDERS[framework](shape, spec)
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, CLASSES, batch)
    for _ in range(warmup):
        step(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    return {"step_s": (time.perf_counter() - start) / steps}


# ----------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------
def importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow" if name == "keras" else name) is not None


def measure(framework, architecture, batch, args) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "OPENBLAS_NUM_THREADS": str(THREADS),
           "NUMBA_NUM_THREADS": str(THREADS), "TF_NUM_INTRAOP_THREADS": str(THREADS),
           "TF_NUM_INTEROP_THREADS": "1"}
    command = [sys.executable, __file__, "--worker", framework, architecture, str(batch), str(args.steps),
               str(args.warmup)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE.parent)
    if result.returncode != 0:
        raise RuntimeError(f"{framework} on {architecture!r} failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["step_s"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke mode: one round, two timed steps")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians are over these)")
    parser.add_argument("--steps", type=int, default=12, help="timed training steps per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation, caches)")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--frameworks", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--out", default=str(HERE / "results" / "architectures"))
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        framework, architecture, batch, steps, warmup = args.worker
        print(json.dumps(worker(framework, architecture, int(batch), int(steps), int(warmup))))
        return 0
    if args.quick:
        args.rounds, args.steps, args.warmup, args.batches = 1, 2, 1, [16]
    sys.path.insert(0, str(HERE))
    from run import cpu_name

    frameworks = [f for f in args.frameworks if importable(f)]
    times = {(f, a, b): [] for f in frameworks for a in ARCHITECTURES for b in args.batches}
    for round_ in range(args.rounds):
        order = frameworks if round_ % 2 == 0 else frameworks[::-1]  # alternate who runs first
        for architecture in ARCHITECTURES:
            for batch in args.batches:
                for framework in order:
                    print(f"round {round_ + 1}/{args.rounds}: {framework}, {architecture}, batch {batch}",
                          file=sys.stderr)
                    times[(framework, architecture, batch)].append(measure(framework, architecture, batch, args))
    lines = [f"CPU: {cpu_name()}, {os.cpu_count()} cores; {THREADS} threads per framework; random data, Adam; "
             f"mean of {args.steps} training steps after {args.warmup} warm-up, median of {args.rounds} rounds "
             f"(ms per step)", "",
             "| architecture | batch | " + " | ".join(frameworks) + " | numcnn / faster peer |",
             "|---|---|" + "---|" * len(frameworks) + "---|"]
    summary = []
    for architecture in ARCHITECTURES:
        for batch in args.batches:
            medians = {f: statistics.median(times[(f, architecture, batch)]) * 1e3 for f in frameworks}
            peers = [medians[f] for f in frameworks if f != "numcnn"]
            ratio = medians["numcnn"] / min(peers) if peers and "numcnn" in medians else None
            summary.append({"architecture": architecture, "batch": batch, "ms": medians, "ratio": ratio})
            shown = f"{ratio:.2f}" if ratio is not None else ""
            lines.append(f"| {architecture} | {batch} | " + " | ".join(f"{medians[f]:.1f}" for f in frameworks)
                         + f" | {shown} |")
    table = "\n".join(lines)
    print(table)
    sys.path.insert(0, str(HERE.parent))
    from numcnn.io import atomic_write_text

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out + ".json", json.dumps({"cpu": cpu_name(), "summary": summary,
                                                      "times_s": {"|".join(map(str, k)): v for k, v in times.items()}},
                                                     indent=1))
    atomic_write_text(args.out + ".md", table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
