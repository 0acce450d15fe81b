"""Safe model files and atomic writes.

``save(model, path)`` picks the format from the name: ``.keras`` (a Keras 3 file), ``.weights.h5`` (Keras's
weights file), ``.npz`` (numcnn's own, below); ``load_model(path)`` reads all three and tf.keras's legacy
full-model ``.h5``, telling them apart by their first bytes, never by trusting the name. Keras files are
read and written by ``numcnn.interop.keras`` with ``zipfile``, ``json`` and ``h5py`` only.

A numcnn model file (``.npz``, a zip that ``numpy.load`` reads with ``allow_pickle=False``) holds:

* ``header``: UTF-8 JSON as a uint8 array: format name and version, the model config (architecture),
  compile settings, the list of weight arrays, optional optimizer state, and a SHA-256 over every array;
* ``weight_<i>``: the weights in ``get_weights()`` order; ``optimizer_<key>``: optimizer slots.

Nothing in a file is ever executed: no pickle, no code, layer classes are looked up in a fixed table.
Every write goes to a temporary file in the same directory, is fsync'ed, then renamed over the target:
a crash mid-write leaves the previous file intact.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT_NAME = "numcnn-model"
FORMAT_VERSION = 1


from .errors import ModelFileError  # noqa: E402  (re-exported: numcnn.io.ModelFileError)

MAX_HEADER_BYTES = 16 * 1024 * 1024


# ----------------------------------------------------------------------------------------------
# Atomic writes
# ----------------------------------------------------------------------------------------------
def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, _default_file_mode())  # mkstemp makes 0600 files; keep the usual umask-based mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------
# Arrays + JSON header in one file
# ----------------------------------------------------------------------------------------------
def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over each array's name, dtype, shape and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_arrays_file(path, header: dict, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write ``arrays`` and a JSON ``header`` (with format, version and checksum added)."""
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, **header, "sha256": arrays_digest(arrays)}
    buffer = io.BytesIO()
    header_bytes = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    np.savez(buffer, header=header_bytes, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_arrays_file(path) -> tuple[dict, dict[str, np.ndarray]]:
    """Read and check a file written by ``write_arrays_file``; any problem raises ``ModelFileError``."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {name: archive[name] for name in archive.files}
    except Exception as error:  # zip, zlib, npy-header and size errors of a damaged file all mean the same
        if "allow_pickle" in str(error):  # NumPy's hint would suggest an unsafe option: say what it is instead
            raise ModelFileError(f"{path}: not a readable numcnn model file: it holds pickled Python objects, "
                                 f"which numcnn never loads") from None
        raise ModelFileError(f"{path}: not a readable numcnn model file ({type(error).__name__}: {error})") from None
    header_bytes = contents.pop("header", None)
    if header_bytes is None or header_bytes.dtype != np.uint8 or header_bytes.ndim != 1:
        raise ModelFileError(f"{path}: no numcnn header (is this a numcnn model file?)")
    if header_bytes.size > MAX_HEADER_BYTES:
        raise ModelFileError(f"{path}: header of {header_bytes.size} bytes is implausibly large")
    try:
        header = json.loads(header_bytes.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: header is not valid JSON ({error})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path}: not a numcnn model file")
    if header.get("version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: format version {header.get('version')!r}; this numcnn reads version "
                             f"{FORMAT_VERSION}")
    if header.get("sha256") != arrays_digest(contents):
        raise ModelFileError(f"{path}: checksum mismatch: the file is corrupted")
    return header, contents


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
def save_model(model, path, include_optimizer: bool = True, extra: dict | None = None,
               extra_arrays: dict[str, np.ndarray] | None = None) -> None:
    """Save ``model`` (architecture, weights, compile settings, optimizer state) to ``path``; ``extra`` (JSON)
    and ``extra_arrays`` (names starting with ``extra/``) carry what a caller adds, e.g. training checkpoints."""
    arrays = {f"weight_{i}": w for i, w in enumerate(model.get_weights())}
    header = {"config": model.get_config(), "n_weights": len(arrays), "compile": None, "extra": extra or {}}
    if any(not name.startswith("extra/") for name in extra_arrays or {}):
        raise ValueError("extra_arrays names must start with 'extra/'")
    arrays.update(extra_arrays or {})
    if model.loss is not None:
        header["compile"] = {
            "optimizer": {"name": model.optimizer.name, "config": model.optimizer.get_config()},
            "loss": {"name": model.loss.name, "config": model.loss.get_config()},
            "metrics": list(model.metrics),
            "weighted_metrics": list(model.weighted_metrics),
        }
        if include_optimizer and model.optimizer.slots:
            state = model.optimizer.get_state()
            header["compile"]["iterations"] = state.pop("iterations")
            arrays.update({f"optimizer/{key}": value for key, value in state.items()})
        elif include_optimizer:
            header["compile"]["iterations"] = model.optimizer.iterations
    write_arrays_file(path, header, arrays)


ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
SAVE_FORMATS = "'.keras' (Keras 3 file), '.weights.h5' (Keras weights) or '.npz' (numcnn's own)"


def model_file_kind(path) -> str:
    """What a model file is, from its content: ``"numcnn"`` (a zip without ``config.json``: numcnn's
    ``.npz``, checked in full when read), ``"keras"`` (a zip with ``config.json``), ``"keras-legacy-h5"``
    (HDF5 with a ``model_config``), ``"keras-weights"`` (HDF5 with Keras 3's ``layers`` group). Anything else
    raises ``ModelFileError`` saying what the file is not."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    with open(path, "rb") as handle:
        start = handle.read(len(HDF5_MAGIC))
    if not start:
        raise ModelFileError(f"{path}: not a readable model file: the file is empty")
    if start.startswith(ZIP_MAGIC):
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except Exception:  # noqa: BLE001  zipfile raises many kinds on a damaged archive
            return "numcnn"  # the numcnn reader says in detail what is wrong
        return "keras" if "config.json" in names else "numcnn"
    if start == HDF5_MAGIC:
        return _hdf5_kind(path)
    with open(path, "rb") as handle:
        head = handle.read(64)
    looks = "text" if _is_text(head) else "binary data"
    raise ModelFileError(f"{path}: not a readable model file: neither a zip archive (numcnn .npz, Keras .keras) "
                         f"nor an HDF5 file (Keras .h5, .weights.h5); it starts with {looks}: {head[:24]!r}")


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(32 <= byte < 127 or byte in b"\t\r\n" for byte in data)


def _hdf5_kind(path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            if "model_config" in h5.attrs:
                return "keras-legacy-h5"
            if "layers" in h5:
                return "keras-weights"
            top = sorted(h5.keys())[:5]
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({error})") from None
    raise ModelFileError(f"{path}: an HDF5 file, but not a Keras model or weights file: no 'layers' group (as Keras 3 "
                         f"writes) and no 'model_config' (as tf.keras's full-model .h5 has); its groups: {top}")


def save(model, path, overwrite: bool = True) -> None:
    """Save ``model`` in the format its name asks for: ``.keras``, ``.weights.h5`` or ``.npz`` (any other name
    raises ValueError). ``overwrite=False`` refuses to replace an existing file."""
    from .interop import keras as keras_files

    name = Path(path).name.lower()
    if not overwrite and Path(path).exists():
        raise FileExistsError(f"{path} exists (overwrite=False)")
    if name.endswith(".weights.h5"):
        keras_files.save_keras_weights(model, path)
    elif name.endswith(".keras"):
        keras_files.save_keras_file(model, path)
    elif name.endswith(".npz"):
        save_model(model, path)
    elif name.endswith(".h5"):
        raise ValueError(f"{path}: numcnn does not write full-model .h5 files (Keras 3 calls that format legacy); "
                         f"use {SAVE_FORMATS}")
    else:
        raise ValueError(f"{path}: cannot tell the file format from the name; use {SAVE_FORMATS}")


def load_model(path, compile: bool = True, model=None):
    """Load a numcnn ``.npz``, a Keras ``.keras`` or a legacy full-model Keras ``.h5`` file; a Keras
    ``.weights.h5`` needs ``model``, the numcnn model to fill (it is returned). Compiled when the file has
    compile settings numcnn supports (and ``compile``). Any problem raises ``ModelFileError``."""
    kind = model_file_kind(path)
    if kind != "numcnn":
        from .interop.keras import load_keras_file

        return load_keras_file(path, model=model, compile=compile)
    return _load_numcnn_file(path, compile)


def _load_numcnn_file(path, compile: bool):
    from . import losses, optimizers
    from .model import Sequential

    header, arrays = read_arrays_file(path)
    try:
        model = Sequential.from_config(header["config"])
        n_weights = int(header["n_weights"])
        model.set_weights([arrays[f"weight_{i}"] for i in range(n_weights)])
        settings = header.get("compile")
        if compile and settings:
            optimizer = optimizers.from_config(settings["optimizer"]["name"], settings["optimizer"]["config"])
            loss = losses.LOSSES[settings["loss"]["name"]](**settings["loss"]["config"])
            model.compile(optimizer=optimizer, loss=loss, metrics=settings.get("metrics", []),
                          weighted_metrics=settings.get("weighted_metrics", []))
            slots = {key[len("optimizer/"):]: value for key, value in arrays.items() if key.startswith("optimizer/")}
            if slots:
                optimizer.build(model.trainable_params())
                optimizer.set_state({"iterations": settings.get("iterations", 0), **slots})
            else:
                optimizer.iterations = int(settings.get("iterations", 0))
    except ModelFileError:
        raise
    except Exception as error:  # a checksum-valid file with an inconsistent config (hand-edited, other tool)
        raise ModelFileError(f"{path}: inconsistent model file ({type(error).__name__}: {error})") from None
    return model
