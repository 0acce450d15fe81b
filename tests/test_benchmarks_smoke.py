"""The benchmark script runs end to end (``--quick``, numcnn only) and writes its table; not a timing test."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="needs dataset-fashion-mnist")
def test_benchmark_quick_run_writes_results(tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--frameworks", "numcnn",
                             "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.with_suffix(".json").read_text())
    entry = data["summary"]["numcnn"]
    assert {"train_b32", "train_b128", "inference", "peak_rss_mb"} <= set(entry)
    assert entry["train_b32"]["median"] > 0 and data["extra"]["sgemm_gflops"] > 0
    assert [row["layer"] for row in data["extra"]["layers"]][:2] == ["conv2d + max_pooling2d", "conv2d_1 + max_pooling2d_1"]
    assert "| numcnn |" in out.with_suffix(".md").read_text()
