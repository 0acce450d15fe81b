"""Sweeps over seeds and hyperparameters on Dask: one trial per task, results in one table and a plot.

A sweep is a config (a JSON or TOML file, or a dict)::

    {
      "search": "grid",                       # or "random" (then "trials": how many draws)
      "seeds": [0, 1, 2],                     # every parameter setting runs once per seed
      "parameters": {"learning_rate": [0.0003, 0.001, 0.003, 0.01]},
      "fixed": {"epochs": 1, "train_examples": 2000},    # passed to every trial unchanged
      "trial": "numcnn.sweep:train_seed_model",          # "module:function"(params, seed) -> {metric: value}
      "metric": "val_accuracy",               # the plot's y axis
      "out": "runs/sweep"                     # results.csv, results.json, sweep.png, trials/<id>.json
    }

Random search draws each parameter from ``{"log_uniform": [low, high]}``, ``{"uniform": [low, high]}`` or a
list (one of its values) with ``numpy.random.default_rng(config["search_seed"])``: the same config, the same
trials. Grid search takes every combination, in the order the parameters are listed.

How it runs (``run_sweep``): each trial is one Dask task, on a ``LocalCluster`` (one process per worker, one
task at a time per worker) or on the scheduler at ``scheduler="tcp://host:8786"``. Inside the task, Numba's and
BLAS's threads are limited to ``threads`` (default: the worker machine's cores / tasks it runs at once), so that
workers x threads = cores and trials do not fight over cores.

* **Resumable**: the client writes each finished trial to ``out/trials/<id>.json`` (atomically) as it arrives;
  a rerun skips every trial whose file exists (``retry_failed=True`` reruns the ones that failed). A trial's id
  is a digest of its parameters and seed, so editing the config keeps the finished trials that are still in it.
* **Failures**: an exception in a trial is caught in the task and recorded (status ``"error"``, the error's
  type and message) without stopping the others; a worker that dies (killed, out of memory) loses its task,
  which the Dask scheduler runs again on another worker (``distributed.scheduler.allowed-failures``, 3 retries).
* **Results**: ``results.csv`` / ``results.json`` (one row per trial: id, status, seed, parameters, metrics,
  seconds, error) and ``sweep.png`` (the metric against the first varied parameter: each seed a dot, the mean
  over seeds a line, the min-max spread shaded).

Importing this module imports neither Dask nor TensorFlow: ``pip install 'numcnn[sweep]'`` for ``run_sweep``.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import itertools
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

SWEEP_INSTALL_HINT = "pip install 'numcnn[sweep]' (dask[distributed])"
DEFAULT_TRIAL = "numcnn.sweep:train_seed_model"


# ----------------------------------------------------------------------------------------------
# The config and its trials
# ----------------------------------------------------------------------------------------------
def load_config(source) -> dict:
    """A sweep config from a dict, or from a ``.json`` / ``.toml`` file; checked (``ValueError`` naming the key)."""
    if isinstance(source, dict):
        config = dict(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"sweep config {path}: no such file")
        if path.suffix == ".toml":
            import tomllib

            config = tomllib.loads(path.read_text())
        else:
            config = json.loads(path.read_text())
    search = config.setdefault("search", "grid")
    if search not in ("grid", "random"):
        raise ValueError(f"sweep config: search must be 'grid' or 'random', got {search!r}")
    seeds = config.setdefault("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise ValueError(f"sweep config: seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    parameters = config.setdefault("parameters", {})
    if not isinstance(parameters, dict):
        raise ValueError("sweep config: parameters must be a table {name: values}")
    for name, values in parameters.items():
        if search == "grid" and (not isinstance(values, list) or not values):
            raise ValueError(f"sweep config: grid parameter {name!r} needs a non-empty list of values")
    if search == "random" and not (isinstance(config.get("trials"), int) and config["trials"] > 0):
        raise ValueError("sweep config: random search needs 'trials', a positive integer")
    config.setdefault("fixed", {})
    config.setdefault("trial", DEFAULT_TRIAL)
    config.setdefault("metric", "val_accuracy")
    config.setdefault("out", "runs/sweep")
    return config


def trial_id(params: dict, seed: int) -> str:
    """A stable name for one trial: a digest of its parameters and seed (the same trial, the same id)."""
    text = json.dumps({"params": params, "seed": seed}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _draw(spec, rng: np.random.Generator):
    if isinstance(spec, list):
        return spec[int(rng.integers(len(spec)))]
    if isinstance(spec, dict) and len(spec) == 1:
        (kind, (low, high)), = spec.items()
        if kind == "uniform":
            return float(rng.uniform(low, high))
        if kind == "log_uniform":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    raise ValueError(f"sweep config: a random parameter is a list or {{'uniform' | 'log_uniform': [low, high]}}, "
                     f"got {spec!r}")


def expand_trials(config: dict) -> list[dict]:
    """Every trial of the sweep: ``{"id", "params", "seed"}``, grid or random, each setting once per seed."""
    parameters = config["parameters"]
    if config["search"] == "grid":
        settings = [dict(zip(parameters, values)) for values in itertools.product(*parameters.values())]
    else:
        rng = np.random.default_rng(config.get("search_seed", 0))
        settings = [{name: _draw(spec, rng) for name, spec in parameters.items()} for _ in range(config["trials"])]
    trials = []
    for setting in settings:
        for seed in config["seeds"]:
            params = {**config["fixed"], **setting}
            trials.append({"id": trial_id(params, seed), "params": params, "seed": seed})
    return trials


# ----------------------------------------------------------------------------------------------
# One trial (runs inside a Dask task)
# ----------------------------------------------------------------------------------------------
def _resolve(name: str):
    module_name, _, function_name = name.partition(":")
    if not function_name:
        raise ValueError(f"sweep config: trial must be 'module:function', got {name!r}")
    return getattr(importlib.import_module(module_name), function_name)


def _limit_threads(threads: int) -> None:
    """Numba's and BLAS's thread pools to ``threads`` in this process (workers x threads = cores)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass


def _threads_here(threads) -> int:
    """``threads``, or this machine's cores divided by the tasks its Dask worker runs at once."""
    if threads:
        return int(threads)
    try:
        from distributed import get_worker

        worker = get_worker()
        at_once = getattr(getattr(worker, "state", worker), "nthreads", 1)
    except (ImportError, ValueError):
        at_once = 1
    return max(1, (os.cpu_count() or 1) // max(1, at_once))


def run_trial(trial: dict, trial_function: str, threads=None) -> dict:
    """Run one trial and return its row; an exception becomes a row with status "error" (never raised, so one
    bad trial does not stop the sweep)."""
    row = {"id": trial["id"], "seed": trial["seed"], "params": trial["params"]}
    start = time.perf_counter()
    try:
        _limit_threads(_threads_here(threads))
        metrics = _resolve(trial_function)(dict(trial["params"]), trial["seed"])
        row.update(status="ok", metrics={key: float(value) for key, value in metrics.items()})
    except Exception as error:  # recorded, not raised
        row.update(status="error", metrics={}, error=f"{type(error).__name__}: {error}",
                   traceback=traceback.format_exc(limit=5))
    row["seconds"] = time.perf_counter() - start
    return row


def train_seed_model(params: dict, seed: int) -> dict:
    """The default trial: the seed MNIST CNN on the embedded mnist-5k, ``params`` of ``learning_rate`` (Adam),
    ``batch_size``, ``epochs`` and ``train_examples`` (the first n training images); returns the last epoch's
    ``loss``, ``accuracy``, ``val_loss`` and ``val_accuracy`` (on mnist-5k's 1000 test images)."""
    from .datasets import load_dataset
    from .optimizers import Adam
    from .preprocessing import images_to_input
    from .zoo import seed_mnist_model

    known = {"learning_rate", "batch_size", "epochs", "train_examples"}
    unknown = set(params) - known
    if unknown:
        raise ValueError(f"train_seed_model: unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    (x_train, y_train), (x_test, y_test) = load_dataset("mnist-5k")
    n = int(params.get("train_examples", len(x_train)))
    x_train, y_train = images_to_input(x_train[:n]), y_train[:n].astype("int64")
    model = seed_mnist_model(seed=seed)
    model.compile(optimizer=Adam(learning_rate=float(params.get("learning_rate", 0.001))),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, batch_size=int(params.get("batch_size", 32)),
                        epochs=int(params.get("epochs", 1)), seed=seed, verbose=0,
                        validation_data=(images_to_input(x_test), y_test.astype("int64")))
    return {key: values[-1] for key, values in history.history.items()}


# ----------------------------------------------------------------------------------------------
# The sweep
# ----------------------------------------------------------------------------------------------
def _client(scheduler, workers, dashboard: bool):
    try:
        from distributed import Client, LocalCluster
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"numcnn sweep needs Dask: {SWEEP_INSTALL_HINT}", name="distributed") from None
    if scheduler:
        return Client(scheduler), None
    # one task at a time per worker process; the trial itself sets its Numba/BLAS threads
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0" if dashboard else None)
    return Client(cluster), cluster


def _finished(trials_dir: Path, retry_failed: bool) -> dict:
    done = {}
    for path in trials_dir.glob("*.json"):
        row = json.loads(path.read_text())
        if row.get("status") == "ok" or not retry_failed:
            done[row["id"]] = row
    return done


def run_sweep(config, scheduler: str | None = None, workers: int | None = None, threads: int | None = None,
              out=None, retry_failed: bool = False, dashboard: bool = False, log=None) -> list[dict]:
    """Run every trial of ``config`` not already finished in ``out`` (see the module docstring); returns all
    the rows (finished earlier and now), in the config's trial order, and writes the table and the plot.

    ``workers``: LocalCluster worker processes (default: the cores, at most one per trial to run);
    ``threads``: Numba/BLAS threads per trial (default: cores / workers, so workers x threads = cores)."""
    from .io import atomic_write_text

    config = load_config(config)
    log = log or (lambda message: print(message, file=sys.stderr))
    out = Path(out or config["out"])
    trials_dir = out / "trials"
    trials_dir.mkdir(parents=True, exist_ok=True)
    trials = expand_trials(config)
    done = _finished(trials_dir, retry_failed)
    todo = [trial for trial in trials if trial["id"] not in done]
    log(f"numcnn sweep: {len(trials)} trials, {len(trials) - len(todo)} already finished, {len(todo)} to run")
    if todo:
        cores = os.cpu_count() or 1
        workers = workers or max(1, min(cores, len(todo)))
        if threads is None and not scheduler:
            threads = max(1, cores // workers)
        client, cluster = _client(scheduler, workers, dashboard)
        try:
            from distributed import as_completed

            futures = [client.submit(run_trial, trial, config["trial"], threads, key=f"trial-{trial['id']}",
                                     pure=False) for trial in todo]
            for future in as_completed(futures):
                row = future.result()
                atomic_write_text(trials_dir / f"{row['id']}.json", json.dumps(row, indent=1))
                done[row["id"]] = row
                log(f"  trial {row['id']} seed {row['seed']} {row['status']} ({row['seconds']:.1f} s)"
                    + (f": {row['error']}" if row["status"] == "error" else ""))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    rows = [done[trial["id"]] for trial in trials]
    write_table(rows, out)
    plot_sweep(rows, config, out / "sweep.png")
    return rows


def _flat(row: dict) -> dict:
    flat = {"id": row["id"], "status": row["status"], "seed": row["seed"]}
    flat.update({f"param_{k}": v for k, v in row["params"].items()})
    flat.update(row.get("metrics", {}))
    flat.update(seconds=round(row["seconds"], 3), error=row.get("error", ""))
    return flat


def write_table(rows: list[dict], out: Path) -> None:
    """``results.json`` (the rows as they are) and ``results.csv`` (one flat row per trial), atomically."""
    from .io import atomic_write_text

    flat = [_flat(row) for row in rows]
    columns = list(dict.fromkeys(key for row in flat for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(Path(out) / "results.csv", buffer.getvalue())
    atomic_write_text(Path(out) / "results.json", json.dumps(rows, indent=1))


def _varied_parameter(config: dict, rows: list[dict]):
    for name in config["parameters"]:
        if len({json.dumps(row["params"].get(name)) for row in rows}) > 1:
            return name
    return None


def plot_sweep(rows: list[dict], config: dict, path) -> None:
    """The metric against the first varied parameter: a dot per trial, the mean over seeds as a line, the
    seeds' min-max spread shaded (log x axis when the values span more than a factor of 10)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import save_figure

    metric = config["metric"]
    name = _varied_parameter(config, rows)
    good = [row for row in rows if row["status"] == "ok" and metric in row["metrics"]]
    figure, axes = plt.subplots(figsize=(6, 4))
    if name is not None and good and all(isinstance(r["params"][name], (int, float)) for r in good):
        xs = sorted({row["params"][name] for row in good})
        by_x = {x: [r["metrics"][metric] for r in good if r["params"][name] == x] for x in xs}
        axes.scatter([r["params"][name] for r in good], [r["metrics"][metric] for r in good], s=18,
                     color="tab:blue", alpha=0.6, label="one trial (seed)")
        axes.plot(xs, [np.mean(by_x[x]) for x in xs], color="tab:blue", label="mean over seeds")
        axes.fill_between(xs, [min(by_x[x]) for x in xs], [max(by_x[x]) for x in xs], color="tab:blue",
                          alpha=0.15, label="min-max over seeds")
        if min(xs) > 0 and max(xs) / min(xs) > 10:
            axes.set_xscale("log")
        axes.set_xlabel(name)
    else:
        axes.scatter(range(len(good)), [r["metrics"][metric] for r in good], s=18)
        axes.set_xlabel("trial")
    failed = len(rows) - len(good)
    axes.set_ylabel(metric)
    axes.set_title(f"sweep: {len(good)} trials" + (f" ({failed} failed, not shown)" if failed else ""))
    axes.grid(alpha=0.3)
    if good:
        axes.legend(fontsize=8)
    save_figure(figure, path)
    plt.close(figure)


# ----------------------------------------------------------------------------------------------
# CLI: numcnn sweep CONFIG
# ----------------------------------------------------------------------------------------------
def register_cli(commands) -> None:
    sweep = commands.add_parser("sweep", help="grid/random search over seeds and hyperparameters on Dask")
    sweep.add_argument("config", help="sweep config, .json or .toml (see numcnn.sweep)")
    sweep.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://host:8786 (default: a LocalCluster)")
    sweep.add_argument("--workers", type=int, help="LocalCluster worker processes (default: the cores)")
    sweep.add_argument("--threads", type=int, help="Numba/BLAS threads per trial (default: cores / workers)")
    sweep.add_argument("--out", help="output directory (default: the config's 'out', else runs/sweep)")
    sweep.add_argument("--retry-failed", action="store_true", help="rerun trials recorded as failed")
    sweep.set_defaults(handler=command_sweep)


def command_sweep(args) -> int:
    rows = run_sweep(args.config, scheduler=args.scheduler, workers=args.workers, threads=args.threads,
                     out=args.out, retry_failed=args.retry_failed)
    failed = sum(row["status"] != "ok" for row in rows)
    out = Path(args.out or load_config(args.config)["out"])
    print(f"{len(rows) - failed} trials ok, {failed} failed; wrote {out / 'results.csv'}, "
          f"{out / 'results.json'}, {out / 'sweep.png'}")
    return 0
