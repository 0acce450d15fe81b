"""Dataset loaders on real files: the embedded MNIST sample, IDX and npz files, Debian's Fashion-MNIST, and
downloads from a real HTTP server on 127.0.0.1 (no test needs the internet)."""

import gzip
import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from numcnn import datasets
from numcnn.datasets import DatasetError, load_dataset, read_idx, read_path


def write_idx(path: Path, array: np.ndarray, compress: bool) -> bytes:
    """Write an IDX file the way the MNIST distribution does (independent of the reader under test)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return payload


def small_dataset(seed=0):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), "y_train": rng.integers(0, 10, 6, dtype=np.uint8),
            "x_test": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8), "y_test": rng.integers(0, 10, 3, dtype=np.uint8)}


def test_embedded_sample_is_balanced_real_mnist():
    (x_train, y_train), (x_test, y_test) = load_dataset("mnist-5k")
    assert x_train.shape == (4000, 28, 28) and x_test.shape == (1000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == np.uint8
    assert np.bincount(y_train).tolist() == [400] * 10 and np.bincount(y_test).tolist() == [100] * 10
    # real digits: dark background, bright strokes, border mostly empty
    assert x_train.max() == 255 and np.mean(x_train[:, 0, :]) < 1 and 20 < x_train.mean() < 50
    assert not any(np.array_equal(x_test[i], x_train[j]) for i in range(20) for j in range(4000))


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder_round_trip(tmp_path, compress):
    arrays = small_dataset()
    for key, stem in datasets.IDX_FILES.items():
        write_idx(tmp_path / (stem + (".gz" if compress else "")), arrays[key], compress)
    (x_train, y_train), (x_test, y_test) = read_path(tmp_path)
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])


def test_keras_npz(tmp_path):
    arrays = small_dataset(1)
    np.savez(tmp_path / "mnist.npz", **arrays)
    (x_train, _), (_, y_test) = read_path(tmp_path / "mnist.npz")
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])


@pytest.mark.parametrize("corrupt, message", [
    (lambda b: b"\x01" + b[1:], "magic"),
    (lambda b: b[:-5], "truncated"),
    (lambda b: b[:2] + b"\x0d" + b[3:], "unsigned bytes"),
])
def test_corrupt_idx_is_refused_with_the_file_name(tmp_path, corrupt, message):
    good = write_idx(tmp_path / "good", np.zeros((2, 4, 4), np.uint8), compress=False)
    (tmp_path / "bad").write_bytes(corrupt(good))
    with pytest.raises(DatasetError, match=message) as info:
        read_idx(tmp_path / "bad")
    assert "bad" in str(info.value)


@pytest.mark.skipif(not datasets.DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_and_its_checksums():
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist(download=False)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist() == [6000] * 10
    for stem, digest in datasets.CHECKSUMS["fashion-mnist"].items():
        data = gzip.decompress((datasets.DEBIAN_FASHION_MNIST / f"{stem}.gz").read_bytes())
        assert hashlib.sha256(data).hexdigest() == digest


@pytest.fixture
def http_server(tmp_path):
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/site``."""
    site = tmp_path / "site"
    site.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield site, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def serve_fashion_fixture(site):
    arrays = small_dataset(2)
    checksums = {}
    for key, stem in datasets.IDX_FILES.items():
        payload = write_idx(site / f"{stem}.gz", arrays[key], compress=True)
        checksums[stem] = hashlib.sha256(payload).hexdigest()
    return arrays, checksums


def test_download_verifies_and_caches(http_server, tmp_path):
    site, url = http_server
    arrays, checksums = serve_fashion_fixture(site)
    cache = tmp_path / "cache"
    (x_train, _), (_, y_test) = datasets.download("fashion-mnist", base_url=url, checksums=checksums, directory=cache)
    np.testing.assert_array_equal(x_train, arrays["x_train"])
    np.testing.assert_array_equal(y_test, arrays["y_test"])
    assert sorted(p.name for p in cache.iterdir()) == sorted(datasets.IDX_FILES.values())


def test_download_with_wrong_checksum_leaves_nothing(http_server, tmp_path):
    site, url = http_server
    _, checksums = serve_fashion_fixture(site)
    checksums["train-images-idx3-ubyte"] = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="SHA-256"):
        datasets.download("fashion-mnist", base_url=url, checksums=checksums, directory=cache)
    assert not cache.exists() or not any(cache.iterdir())  # neither the file nor a temporary file was left


def test_unreachable_mirror_falls_back_to_embedded_sample(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NUMCNN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NUMCNN_DATA", raising=False)
    (x_train, _), _ = datasets.load_mnist(base_url="http://127.0.0.1:9/")  # port 9: nothing listens
    assert x_train.shape == (4000, 28, 28)
    assert "embedded 5,000-image sample" in capsys.readouterr().err
