"""Scale-out measurements for the README: data-parallel training and a Dask sweep, on this machine.

    python benchmarks/scale_out.py data-parallel   # 1 process x 1 thread, 1 process x 2 threads, 2 MPI ranks x 1
    python benchmarks/scale_out.py sweep           # 12 trials (4 learning rates x 3 seeds) on a LocalCluster
    python benchmarks/scale_out.py paper           # allreduce bytes per step and expected efficiency on N machines

Data-parallel: the seed MNIST CNN (float32) on the first 2048 images of mnist-5k, global batch 64, one epoch
after a warm-up epoch on 256 images (Numba compiles then); the time of the measured epoch only. Results go to
``benchmarks/results/scale_out.json`` and the figures ``benchmarks/results/scale_out_*.png``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

EXAMPLES, WARM_UP, BATCH = 2048, 256, 64
SWEEP = {"search": "grid", "seeds": [0, 1, 2], "parameters": {"learning_rate": [0.0003, 0.001, 0.003, 0.01]},
         "fixed": {"epochs": 1, "train_examples": 1000, "batch_size": 32}, "metric": "val_accuracy"}


def _train(distributed: bool) -> None:
    """One measured epoch (run by ``data-parallel`` in a subprocess with the thread count set)."""
    import numcnn.distributed
    from numcnn.datasets import load_dataset
    from numcnn.preprocessing import images_to_input
    from numcnn.zoo import seed_mnist_model

    (x, y), _ = load_dataset("mnist-5k")
    x, y = images_to_input(x[:EXAMPLES]), y[:EXAMPLES].astype("int64")
    model = seed_mnist_model(seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    fit = numcnn.distributed.fit if distributed else type(model).fit
    fit(model, x[:WARM_UP], y[:WARM_UP], batch_size=BATCH, epochs=1, seed=0, verbose=0)
    start = time.perf_counter()
    history = fit(model, x, y, batch_size=BATCH, epochs=1, seed=0, verbose=0)
    seconds = time.perf_counter() - start
    if numcnn.distributed.rank() == 0:
        print(json.dumps({"seconds": seconds, "images_per_second": EXAMPLES / seconds,
                          "loss": history.history["loss"][-1]}))


def data_parallel() -> dict:
    python, mpiexec = sys.executable, str(Path(sys.executable).parent / "mpiexec")
    runs = {"1 process x 1 thread": ([python, __file__, "_train"], 1),
            "1 process x 2 threads": ([python, __file__, "_train"], 2),
            "2 MPI ranks x 1 thread": ([mpiexec, "-n", "2", python, __file__, "_train", "--distributed"], 1)}
    results = {}
    for name, (command, threads) in runs.items():
        env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        line = subprocess.run(command, capture_output=True, text=True, env=env, check=True).stdout.strip()
        results[name] = json.loads(line.splitlines()[-1])
        print(f"{name:24s} {results[name]['seconds']:6.2f} s/epoch  {results[name]['images_per_second']:7.1f} "
              f"images/s  loss {results[name]['loss']:.4f}")
    _bar_chart(results, RESULTS / "scale_out_data_parallel.png")
    return results


def _bar_chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from numcnn.plotting import save_figure

    figure, axes = plt.subplots(figsize=(6, 3.2))
    names = list(results)
    values = [results[name]["images_per_second"] for name in names]
    bars = axes.barh(names, values, color=["tab:gray", "tab:blue", "tab:orange"])
    for bar, value in zip(bars, values):
        axes.text(value, bar.get_y() + bar.get_height() / 2, f" {value:.0f}", va="center", fontsize=9)
    axes.set_xlabel("training images / s (seed CNN, float32, global batch 64)")
    axes.set_xlim(0, max(values) * 1.2)
    axes.invert_yaxis()
    save_figure(figure, path)


def sweep() -> dict:
    from numcnn.sweep import run_sweep

    with tempfile.TemporaryDirectory() as directory:  # a fresh sweep each time (a kept one would be skipped)
        out = Path(directory)
        start = time.perf_counter()
        rows = run_sweep(SWEEP, workers=2, threads=1, out=out)
        seconds = time.perf_counter() - start
        for name, target in (("sweep.png", "scale_out_sweep.png"), ("results.csv", "scale_out_sweep.csv")):
            (RESULTS / target).write_bytes((out / name).read_bytes())
    by_rate = {}
    for row in rows:
        by_rate.setdefault(row["params"]["learning_rate"], []).append(row["metrics"].get("val_accuracy"))
    for rate, values in sorted(by_rate.items()):
        print(f"learning_rate {rate:<7g} val_accuracy " + " ".join(f"{v:.4f}" for v in values))
    trial_seconds = sum(row["seconds"] for row in rows)
    print(f"{len(rows)} trials in {seconds:.1f} s wall ({trial_seconds:.1f} s of trials: 2 workers x 1 thread)")
    return {"trials": len(rows), "wall_seconds": seconds, "trial_seconds": trial_seconds,
            "val_accuracy": {str(k): v for k, v in sorted(by_rate.items())}}


def paper(step_seconds: float | None = None) -> dict:
    """Bytes a rank moves per step and the efficiency expected on R machines at 10 Gb/s."""
    from numcnn.zoo import seed_mnist_model

    parameters = sum(w.size for w in seed_mnist_model(seed=0).trainable_params())
    gradient_bytes = 4 * parameters  # float32
    step = step_seconds or 0.05
    bandwidth, latency = 10e9 / 8, 20e-6  # 10 Gb/s, 20 us a message
    rows = {}
    print(f"{parameters} parameters = {gradient_bytes / 1e3:.0f} KB of float32 gradients per step; "
          f"one process's step at global batch {BATCH}: {step * 1e3:.1f} ms")
    for ranks in (2, 4, 8, 16, 32):
        ring = 2 * (ranks - 1) / ranks * gradient_bytes
        gather = (ranks - 1) * gradient_bytes
        times = {name: volume / bandwidth + 2 * (ranks - 1) * latency for name, volume in
                 (("ring_allreduce", ring), ("rank_order_gather", gather))}
        compute = step / ranks
        efficiency = {name: compute / (compute + t) for name, t in times.items()}
        rows[ranks] = {"ring_bytes": ring, "gather_bytes": gather, **{f"{k}_efficiency": v
                                                                      for k, v in efficiency.items()}}
        print(f"R={ranks:2d}: ring allreduce {ring / 1e3:7.0f} KB -> {efficiency['ring_allreduce']:.0%}; "
              f"rank-order gather {gather / 1e3:7.0f} KB -> {efficiency['rank_order_gather']:.0%}")
    return {"parameters": parameters, "gradient_bytes": gradient_bytes, "step_seconds": step, "ranks": rows}


def main(argv) -> None:
    what = argv[1] if len(argv) > 1 else "all"
    if what == "_train":
        _train("--distributed" in argv)
        return
    import run

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "scale_out.json"
    record = json.loads(path.read_text()) if path.exists() else {}
    record["cpu"] = run.cpu_name()
    print(f"CPU: {record['cpu']}")
    if what in ("data-parallel", "all"):
        record["data_parallel"] = data_parallel()
    if what in ("sweep", "all"):
        record["sweep"] = sweep()
    if what in ("paper", "all"):
        single = record.get("data_parallel", {}).get("1 process x 1 thread")
        step = single["seconds"] / (EXAMPLES / BATCH) if single else None
        record["paper"] = paper(step)
    path.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main(sys.argv)
