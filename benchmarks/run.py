"""Side-by-side benchmark: numcnn vs Keras (TensorFlow) vs PyTorch on this machine, same data, model and threads.

    python benchmarks/run.py            # full run (a few minutes): writes benchmarks/results/latest.{md,json}
    python benchmarks/run.py --quick    # smoke run for CI (seconds of work per framework)

Installs nothing: each framework runs only if importable. Every measurement runs in a fresh subprocess per
framework (so peak RSS is per framework), frameworks alternate within each repeat, and the table reports
medians with min-max over repeats. Training time per epoch is measured on ``--train-images`` images of
Fashion-MNIST (one pass, after a warm-up) and scaled to 60,000 images: the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # TF's fastest CPU path: the peer at its best

FRAMEWORKS = ("numcnn", "keras", "torch")
EPOCH_IMAGES = 60_000
THREADS = 2
HERE = Path(__file__).resolve().parent


def load_data(n_train: int, n_test: int):
    import numpy as np

    from numcnn.datasets import load_fashion_mnist

    (x, y), (xt, yt) = load_fashion_mnist(download=False)
    x = (x[:n_train].astype(np.float32) / 255)[..., None]
    xt = (xt[:n_test].astype(np.float32) / 255)[..., None]
    return x, y[:n_train].astype(np.int64), xt, yt[:n_test].astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Workers: one framework, one process
# ----------------------------------------------------------------------------------------------
def numcnn_worker(x, y, xt, batch_sizes, warmup):
    import numcnn

    results = {}
    for batch in batch_sizes:
        model = numcnn.seed_mnist_model(seed=0)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x[:warmup], y[:warmup], epochs=1, batch_size=batch, verbose=0, seed=0)
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0, seed=0)
        results[f"train_b{batch}"] = time.perf_counter() - start
    model.predict(xt[:1000], batch_size=1000, verbose=0)
    start = time.perf_counter()
    model.predict(xt, batch_size=1000, verbose=0)
    results["inference"] = time.perf_counter() - start
    results["layers"] = numcnn_layer_profile()
    return results


def numcnn_layer_profile(batch=128, repeats=10):
    """Per-step forward/backward time and GFLOP/s of the seed model at ``batch`` (median of repeats); a step
    is one layer or a fused Conv2D + MaxPooling2D pair, as ``Sequential`` runs them in training
    (``architectures.step_profile``)."""
    import numpy as np

    import numcnn
    from architectures import step_profile

    model = numcnn.seed_mnist_model(seed=0)
    x = np.random.default_rng(0).random((batch, 28, 28, 1)).astype(np.float32)
    profile = []
    for row in step_profile(model, x, repeats)["training"]:
        layers = [model.get_layer(name) for name in row["layers"]]
        flops = sum(layer_flops(layer, batch) for layer in layers)
        f, b = row["forward_ms"] / 1e3, row["backward_ms"] / 1e3
        profile.append({"layer": " + ".join(row["layers"]), "forward_ms": row["forward_ms"],
                        "backward_ms": row["backward_ms"],
                        "forward_gflops": flops / f / 1e9 if flops else None,
                        "backward_gflops": (flops if layers[0] is model.layers[0] else 2 * flops) / b / 1e9
                        if flops else None})
    return profile


def layer_flops(layer, batch):
    """Multiply-adds x 2 of a Conv2D/Dense forward pass (backward: twice that, dW and dx; a first layer
    computes no dx). These are the FLOPs of the layer as Keras computes it: a fused Conv2D + MaxPooling2D
    skips the conv outputs its pooling drops (17% of conv2d_1's), so its rate is an *effective* rate."""
    from numcnn.layers import Conv2D, Dense

    if isinstance(layer, Conv2D):
        oh, ow, c_out = layer.output_shape
        kh, kw = layer.kernel_size
        return 2 * batch * oh * ow * c_out * kh * kw * layer.input_shape[-1]
    if isinstance(layer, Dense):
        return 2 * batch * layer.input_shape[0] * layer.units
    return 0


def keras_worker(x, y, xt, batch_sizes, warmup):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(THREADS)
    import keras

    from numcnn.interop.keras import keras_seed_mnist_model

    results = {}
    for batch in batch_sizes:
        keras.utils.set_random_seed(0)
        model = keras_seed_mnist_model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x[:warmup], y[:warmup], epochs=1, batch_size=batch, verbose=0)
        start = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
        results[f"train_b{batch}"] = time.perf_counter() - start
    model.predict(xt[:1000], batch_size=1000, verbose=0)
    start = time.perf_counter()
    model.predict(xt, batch_size=1000, verbose=0)
    results["inference"] = time.perf_counter() - start
    return results


def torch_worker(x, y, xt, batch_sizes, warmup):
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    x_t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # PyTorch wants NCHW
    xt_t = torch.from_numpy(np.ascontiguousarray(xt.transpose(0, 3, 1, 2)))
    y_t = torch.from_numpy(y)

    def build():
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Conv2d(64, 64, 3), nn.ReLU(), nn.Flatten(), nn.Linear(576, 64),
                             nn.ReLU(), nn.Linear(64, 10))

    def epoch(model, optimizer, n, batch):
        order = torch.randperm(n)
        for start in range(0, n, batch):
            index = order[start:start + batch]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x_t[index]), y_t[index])
            loss.backward()
            optimizer.step()

    results = {}
    for batch in batch_sizes:
        model = build()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        epoch(model, optimizer, warmup, batch)
        start = time.perf_counter()
        epoch(model, optimizer, len(x_t), batch)
        results[f"train_b{batch}"] = time.perf_counter() - start
    with torch.no_grad():
        model(xt_t[:1000])
        start = time.perf_counter()
        for i in range(0, len(xt_t), 1000):
            torch.softmax(model(xt_t[i:i + 1000]), dim=1)
        results["inference"] = time.perf_counter() - start
    return results


def run_worker(args) -> None:
    sys.path.insert(0, str(HERE.parent))  # numcnn from this checkout (load_data reads its datasets module)
    if args.worker == "numcnn":
        import numcnn  # noqa: F401  (before NumPy, as numcnn asks: its thread settings only work then)
    x, y, xt, yt = load_data(args.train_images, args.test_images)
    worker = {"numcnn": numcnn_worker, "keras": keras_worker, "torch": torch_worker}[args.worker]
    results = worker(x, y, xt, args.batch_sizes, args.warmup)
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(results))


# ----------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------
def importable(name: str) -> bool:
    module = {"numcnn": "numba", "keras": "tensorflow", "torch": "torch"}[name]
    return subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True).returncode == 0


def measure(framework, args):
    command = [sys.executable, __file__, "--worker", framework, "--train-images", str(args.train_images),
               "--test-images", str(args.test_images), "--warmup", str(args.warmup),
               "--batch-sizes", *map(str, args.batch_sizes)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{framework} worker failed:\n{result.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


SGEMM_N = 2048  # large enough for OpenBLAS to reach its peak on 2 threads (n = 1024 gave 104-193 GFLOP/s)


def sgemm_gflops() -> float:
    """The machine's float32 matrix-product peak: the best of 5 products of two n x n matrices (the best, not
    the median: the peak is what the hardware can do when nothing else runs)."""
    import numpy as np

    a = np.random.default_rng(0).random((SGEMM_N, SGEMM_N)).astype(np.float32)
    a @ a
    times = []
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - start)
    return 2 * SGEMM_N**3 / min(times) / 1e9


def cpu_name() -> str:
    """The CPU as it matters for speed and for the last bits of results: its model name, the microarchitecture
    Numba compiles for (LLVM's host CPU, e.g. ``znver3`` or ``znver4``) and the widest SIMD it has. Machines
    named "AMD EPYC" alike differ here (Zen 3 with AVX2, Zen 4 with AVX-512), and so do the timings."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    from llvmlite import binding

    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model} ({binding.get_host_cpu_name()}, {simd}; {blas_kernel()})"


def blas_kernel() -> str:
    """NumPy's BLAS and the kernel it runs, e.g. ``OpenBLAS 0.3.31 SkylakeX kernel``: OpenBLAS picks it by CPU
    unless ``OPENBLAS_CORETYPE`` says otherwise, and the choice moves every GEMM-bound figure (AMD EPYC Zen 5,
    sgemm n = 2048: 416-431 GFLOP/s with the 512-bit SkylakeX kernel, 237 with the 256-bit Haswell one). Some
    machines set ``OPENBLAS_CORETYPE`` for older OpenBLAS builds; the line says so where it is set."""
    import numpy  # noqa: F401  (loads its BLAS, so that threadpoolctl finds it)
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]
    if not blas:
        return "BLAS unknown"
    info = blas[0]
    name = {"openblas": "OpenBLAS", "mkl": "MKL"}.get(info["internal_api"], info["internal_api"])
    kernel = f" {info['architecture']} kernel" if info.get("architecture") else ""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    return f"{name} {info['version']}{kernel}" + (f" (OPENBLAS_CORETYPE={forced})" if forced else "")


def cold_start(empty_cache: bool, runs: int = 3) -> float:
    """Seconds for ``import numcnn`` + building the seed model + one training step, in a fresh process: the
    median of ``runs`` processes (one process alone is at the mercy of whatever else the machine is finishing:
    a single run right after the peers' workers once took 2.7 s where three runs alone took 0.8-0.9 s). With
    ``empty_cache`` each process gets its own empty Numba cache, so each compiles everything."""
    return statistics.median(_cold_start_once(empty_cache) for _ in range(runs))


def _cold_start_once(empty_cache: bool) -> float:
    env = dict(os.environ)
    if empty_cache:
        import tempfile

        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="numba-cold-")
    code = ("import time; t = time.perf_counter(); import numcnn, numpy as np; "
            "m = numcnn.seed_mnist_model(0); m.compile('adam', 'sparse_categorical_crossentropy'); "
            "m.train_step(np.zeros((32, 28, 28, 1), np.float32), np.zeros(32, np.int64)); "
            "print(time.perf_counter() - t)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=HERE.parent)
    return float(result.stdout.strip().splitlines()[-1])


def summarise(runs: dict, args) -> dict:
    scale = EPOCH_IMAGES / args.train_images
    summary = {}
    for framework, measurements in runs.items():
        entry = {}
        for key in [f"train_b{b}" for b in args.batch_sizes] + ["inference"]:
            values = [m[key] * (scale if key.startswith("train") else 1) for m in measurements]
            entry[key] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        entry["peak_rss_mb"] = max(m["peak_rss_mb"] for m in measurements)
        summary[framework] = entry
    return summary


def markdown(summary, extra, args) -> str:
    keys = [f"train_b{b}" for b in args.batch_sizes] + ["inference"]
    titles = {f"train_b{b}": f"train, batch {b} (s/epoch)" for b in args.batch_sizes}
    titles["inference"] = f"inference {args.test_images} images, batch 1000 (s)"
    lines = [f"Machine: {extra['machine']}; {THREADS} threads per framework; OpenBLAS sgemm measured "
             f"{extra['sgemm_gflops']:.0f} GFLOP/s; {extra['repeats']} repeats, frameworks alternating; "
             f"training timed on {args.train_images} Fashion-MNIST images and scaled to {EPOCH_IMAGES}.", "",
             "| framework | " + " | ".join(titles[k] for k in keys) + " | peak RSS (MB) |",
             "|---" * (len(keys) + 2) + "|"]
    for framework, entry in summary.items():
        cells = [f"{entry[k]['median']:.2f} ({entry[k]['min']:.2f}–{entry[k]['max']:.2f})" for k in keys]
        lines.append(f"| {framework} | " + " | ".join(cells) + f" | {entry['peak_rss_mb']:.0f} |")
    peers = [f for f in summary if f != "numcnn"]
    if "numcnn" in summary and peers:
        ratios = []
        for k in keys:
            best = min(summary[p][k]["median"] for p in peers)
            ratios.append(f"{summary['numcnn'][k]['median'] / best:.2f}")
        lines.append("| **numcnn / faster peer** | " + " | ".join(ratios) + " | |")
    if extra.get("layers"):
        lines += ["", "numcnn per layer, batch 128 (median):", "",
                  "| layer | forward ms | backward ms | forward GFLOP/s (% of sgemm) | backward GFLOP/s (% of sgemm) |",
                  "|---|---|---|---|---|"]
        peak = extra["sgemm_gflops"]
        for row in extra["layers"]:
            def rate(value):
                return "" if value is None else f"{value:.0f} ({100 * value / peak:.0f}%)"
            lines.append(f"| {row['layer']} | {row['forward_ms']:.2f} | {row['backward_ms']:.2f} | "
                         f"{rate(row['forward_gflops'])} | {rate(row['backward_gflops'])} |")
    lines += ["", f"Cold start (import + build + first step, median of 3 processes): {extra['cold_start_warm']:.2f} s "
                  f"with the Numba cache warm, {extra['cold_start_empty']:.2f} s on a first-ever run (compiling)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny sizes, one repeat")
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-images", type=int, default=12_000)
    parser.add_argument("--test-images", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=640)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--out", default=str(HERE / "results" / "latest"))
    parser.add_argument("--worker", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    if args.quick:
        args.repeats, args.train_images, args.test_images, args.warmup = 1, 1000, 2000, 64
    frameworks = [f for f in args.frameworks if importable(f)]
    runs = {f: [] for f in frameworks}
    for repeat in range(args.repeats):
        for framework in (frameworks if repeat % 2 == 0 else frameworks[::-1]):  # alternate the order
            print(f"repeat {repeat + 1}/{args.repeats}: {framework}", file=sys.stderr)
            runs[framework].append(measure(framework, args))
    extra = {"machine": f"{cpu_name()}, {os.cpu_count()} cores, "
                        f"Python {platform.python_version()}",
             "sgemm_gflops": sgemm_gflops(), "repeats": args.repeats,
             "layers": runs["numcnn"][-1].get("layers") if "numcnn" in runs else None,
             "cold_start_warm": cold_start(False), "cold_start_empty": cold_start(True),
             "load_average": os.getloadavg()}
    summary = summarise(runs, args)
    table = markdown(summary, extra, args)
    sys.path.insert(0, str(HERE.parent))
    from numcnn.io import atomic_write_text

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out + ".json", json.dumps({"summary": summary, "extra": extra, "runs": runs,
                                                      "args": vars(args)}, indent=2))
    atomic_write_text(args.out + ".md", table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
