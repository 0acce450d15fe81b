"""numcnn.sweep on a real Dask LocalCluster: 8 tiny trials (one fails on purpose, one kills its worker the first
time it runs), the table and plot, and a rerun that skips every finished trial."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from numcnn import sweep

if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):  # CI installs [sweep]: there it must not skip
    pytest.importorskip("distributed", reason="needs Dask: scripts/setup test,sweep")

TRIAL = "tests.test_sweep:tiny_trial"


def tiny_trial(params: dict, seed: int) -> dict:
    """A trial in microseconds: ``score = x^2 + seed``; x = -1 with seed 1 fails, and x = -1 with seed 0 kills
    its worker process the first time (the ``marker`` file says it already did)."""
    import numba

    x = params["x"]
    if x == -1 and seed == 1:
        raise ValueError("deliberately failing trial")
    if x == -1 and seed == 0:
        marker = Path(params["marker"])
        if not marker.exists():
            marker.write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-task: Dask must run the task again
    return {"score": x * x + seed, "numba_threads": numba.get_num_threads()}


def config_for(tmp_path) -> dict:
    return {"search": "grid", "seeds": [0, 1], "parameters": {"x": [1, 2, 3, -1]},
            "fixed": {"marker": str(tmp_path / "killed.marker")}, "trial": TRIAL, "metric": "score",
            "out": str(tmp_path / "sweep")}


def test_random_search_is_reproducible_and_in_bounds():
    config = {"search": "random", "trials": 5, "seeds": [0, 1], "search_seed": 3,
              "parameters": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}, "batch_size": [16, 32]}}
    first, again = sweep.expand_trials(sweep.load_config(config)), sweep.expand_trials(sweep.load_config(config))
    assert first == again and len(first) == 10
    assert len({t["id"] for t in first}) == 10
    assert all(1e-4 <= t["params"]["learning_rate"] <= 1e-1 and t["params"]["batch_size"] in (16, 32)
               for t in first)


def test_bad_configs_name_the_problem():
    with pytest.raises(ValueError, match="search must be"):
        sweep.load_config({"search": "bayes"})
    with pytest.raises(ValueError, match="needs 'trials'"):
        sweep.load_config({"search": "random", "parameters": {"a": [1]}})
    with pytest.raises(ValueError, match="non-empty list"):
        sweep.load_config({"parameters": {"a": []}})


def test_sweep_on_a_local_cluster_records_failures_retries_killed_workers_and_resumes(tmp_path):
    config = config_for(tmp_path)
    messages = []
    rows = sweep.run_sweep(config, workers=2, log=messages.append)
    assert len(rows) == 8
    by_key = {(row["params"]["x"], row["seed"]): row for row in rows}
    failed = [row for row in rows if row["status"] == "error"]
    assert [(row["params"]["x"], row["seed"]) for row in failed] == [(-1, 1)]
    assert "deliberately failing trial" in failed[0]["error"]
    killed = by_key[(-1, 0)]
    assert (tmp_path / "killed.marker").exists() and killed["status"] == "ok"  # run again after its worker died
    for (x, seed), row in by_key.items():
        if row["status"] == "ok":
            assert row["metrics"]["score"] == x * x + seed
            assert row["metrics"]["numba_threads"] == max(1, (os.cpu_count() or 1) // 2)  # workers x threads = cores
    out = tmp_path / "sweep"
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 9 and csv_lines[0].startswith("id,status,seed,param_marker,param_x")
    assert json.loads((out / "results.json").read_text()) == rows
    assert (out / "sweep.png").stat().st_size > 0
    stamps = {path.name: path.stat().st_mtime_ns for path in (out / "trials").iterdir()}

    messages.clear()
    again = sweep.run_sweep(config, workers=2, log=messages.append)
    assert "8 already finished, 0 to run" in messages[0] and len(messages) == 1
    assert again == rows
    assert {path.name: path.stat().st_mtime_ns for path in (out / "trials").iterdir()} == stamps


def test_default_trial_function_checks_its_parameters():
    with pytest.raises(ValueError, match="unknown parameter"):
        sweep.train_seed_model({"learning_rat": 0.1}, 0)
    row = sweep.run_trial({"id": "x", "seed": 0, "params": {"bogus": 1}}, sweep.DEFAULT_TRIAL, threads=1)
    assert row["status"] == "error" and "unknown parameter" in row["error"] and np.isfinite(row["seconds"])
