"""The benchmark script runs end to end (``--quick``, numcnn only) and writes its table; not a timing test."""

import json
import subprocess
import sys
from pathlib import Path

import numpy  # noqa: F401  (loads its BLAS, for threadpoolctl to find)
import pytest
import threadpoolctl

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


def test_architecture_suite_quick_run_writes_a_row_per_architecture(tmp_path):
    out = tmp_path / "arch"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "architectures.py"), "--quick",
                             "--frameworks", "numcnn", "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.with_suffix(".json").read_text())
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import architectures

    assert [row["architecture"] for row in data["summary"]] == list(architectures.ARCHITECTURES)
    assert all(row["train_ms"]["numcnn"] > 0 and row["training_gflop"] > 0 for row in data["summary"])
    # one per-step profile per architecture: a row per step of the model's training and inference plans
    from numcnn import Sequential, layers

    markdown = out.with_suffix(".md").read_text()
    for name in architectures.ARCHITECTURES:
        [profile] = [run["profile"] for run in data["runs"][f"numcnn|{name}|16"] if "profile" in run]
        shape, spec, _ = architectures.architecture_parts(name)
        model = Sequential(architectures.build_layers(layers, shape, spec, layers.Input), seed=0)
        assert len(profile["training"]) == len(model.steps())
        assert len(profile["inference"]) == len(model.inference_steps())
        assert all(row["forward_ms"] > 0 for row in profile["training"] + profile["inference"])
        assert f"numcnn per step, {name} " in markdown
    # the CPU line names NumPy's BLAS kernel, as OpenBLAS itself reports it (it moves every GEMM-bound figure)
    kernels = {i["architecture"] for i in threadpoolctl.threadpool_info() if "numpy" in i["filepath"]}
    assert any(f"{kernel} kernel" in data["cpu"] for kernel in kernels), data["cpu"]


def test_winograd_benchmark_writes_a_row_per_shape_with_the_rules_pick(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "winograd.py"), "--repeats", "1",
                             "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    [table] = tmp_path.glob("winograd_*.md")
    rows = [line.split(" | ") for line in table.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import winograd as benchmark

    from numcnn.kernels import conv

    # a header and one row per shape, for each of the two tables
    assert len(rows) == 2 + len(benchmark.SHAPES) + len(benchmark.PIECES_SHAPES)
    for row, (_, _, height, width, c_in, c_out, padding) in zip(rows[1:], benchmark.SHAPES):
        oh, ow = (height, width) if padding == "same" else (height - 2, width - 2)
        picks_winograd = conv.use_winograd((3, 3, c_in, c_out), (1, 1), (oh, ow))
        assert row[-1].strip(" |") == ("F(4x4)" if picks_winograd else "im2col")
        assert all(float(ms) > 0 for ms in row[3:6])
    for row, (_, _, height, width, c_in, c_out, kernel, _) in zip(rows[-len(benchmark.PIECES_SHAPES):],
                                                                  benchmark.PIECES_SHAPES):  # all 'same'
        picks_pieces = conv.use_winograd_pieces((kernel, kernel, c_in, c_out), (1, 1), (height, width))
        assert row[-1].strip(" |") == ("pieces" if picks_pieces else "im2col")
        assert all(float(ms) > 0 for ms in row[3:5])


def test_the_suites_gan_pair_is_numcnn_generate_gans_networks():
    """The benchmark's generator/discriminator are numcnn.generate.gan's (MNIST, its default widths): the same
    layer kinds, output shapes and parameter counts (the discriminator's head: 10 logits instead of 1 + 10)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import architectures

    from numcnn import Sequential, layers
    from numcnn.generate import gan

    def built(name):
        shape, spec, _ = architectures.architecture_parts(name)
        return Sequential(architectures.build_layers(layers, shape, spec, layers.Input), seed=0)

    def plan(model):
        return [(type(layer).__name__, layer.output_shape) for layer in model.layers]

    generator = gan.generator_network((28, 28, 1), 10, 32, filters=(32, 64))
    assert plan(built("DCGAN generator (MNIST)")) == plan(generator)
    ours = built("DCGAN discriminator (MNIST)")
    theirs = gan.discriminator_network((28, 28, 1), 10, filters=(32, 64))
    assert plan(ours)[:-1] == plan(theirs)[:-1] and ours.layers[-1].output_shape == (10,)
    assert theirs.layers[-1].output_shape == (11,)
