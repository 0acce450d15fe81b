"""numcnn: a from-scratch NumPy CNN reference implementation.

Every layer is written from its formula, forward and backward by hand (no autograd), with Numba on the
hot loops. Conventions (NHWC, Keras weight layouts, TF padding and tie rules, Keras loss and optimizer
formulas) match Keras 3, so weights move both ways and results can be checked against TensorFlow.
"""

import importlib
import importlib.abc
import importlib.machinery
import os
import sys

# OpenBLAS's idle threads spin after a matrix product and slow the Numba kernel that follows on a
# 2-core machine; a short timeout makes them sleep. It only works if set before NumPy loads BLAS.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
# Numba's threads: its OpenMP layer starts a parallel loop in ~2 us (the workqueue layer: ~37 us, and a
# training step launches dozens), but by default OpenMP's idle threads spin and take the cores BLAS needs
# next. "passive" makes them sleep at once. Measured per training step of the seed model: batch 32
# 5.9 ms vs 7.3-8.0 (workqueue) vs 10.0 (spinning OpenMP); batch 128 20.5 vs 22.9-24.7 vs 37.8.
# Falls back to the workqueue layer where no OpenMP runtime is installed.
os.environ.setdefault("NUMBA_THREADING_LAYER_PRIORITY", "omp workqueue tbb")
os.environ.setdefault("OMP_WAIT_POLICY", "passive")


def _keep_large_arrays_in_the_heap() -> None:
    """Let glibc's malloc reuse freed memory for NumPy's large arrays instead of returning it to the system.

    By default an array over a few MB gets fresh pages from the kernel on every allocation and gives them back
    when freed, and touching fresh pages costs a page fault per 4 KB. A network allocates a new activation per
    layer per batch, so this dominated cheap layers: a ReLU over 256 x 32 x 32 x 32 floats took 13-31 ms in
    the CIFAR-style model's inference, 2.5-2.8 ms with this setting (the same op alone: 3.5 ms); inference of
    256 images went from 210 to 165 ms (benchmarks/architectures.py's model, Zen 4, 2 threads). Memory freed
    stays in the process up to 1 GiB, so the resident size does not shrink after a peak, which is what a
    training process wants. Set NUMCNN_SYSTEM_MALLOC=1 to keep glibc's defaults; no effect off glibc.
    """
    if os.environ.get("NUMCNN_SYSTEM_MALLOC") == "1" or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 30)


_keep_large_arrays_in_the_heap()

from . import initializers, kernels, layers, losses, optimizers  # noqa: E402
from .io import ModelFileError, load_model  # noqa: E402
from .model import History, Sequential  # noqa: E402
from .zoo import seed_mnist_model  # noqa: E402

__version__ = "0.1.0"

# Submodules a Keras user reaches for as attributes (``numcnn.datasets.load_mnist()``), imported on first use
# so that ``import numcnn`` stays fast and never loads TensorFlow or matplotlib.
LAZY_SUBMODULES = ("datasets", "preprocessing", "generate", "explain", "interop", "callbacks", "utils", "models")
# Keras's spelling -> where the module lives in numcnn (``from numcnn.callbacks import EarlyStopping``).
MODULE_ALIASES = {f"{__name__}.callbacks": f"{__name__}.training.callbacks"}


def __getattr__(name):
    if name in LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")  # the import also sets it as our attribute
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(LAZY_SUBMODULES))


class _AliasImporter(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Makes ``import numcnn.callbacks`` give the module ``numcnn.training.callbacks`` itself: one module
    under two names, as ``os.path`` is ``posixpath``."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.machinery.ModuleSpec(fullname, self) if fullname in MODULE_ALIASES else None

    def create_module(self, spec):
        module = importlib.import_module(MODULE_ALIASES[spec.name])
        self._real_spec = module.__spec__  # the import system will stamp the alias's spec on it: undone below
        return module

    def exec_module(self, module):
        module.__spec__ = self._real_spec


if not any(isinstance(finder, _AliasImporter) for finder in sys.meta_path):
    sys.meta_path.append(_AliasImporter())

__all__ = ["Sequential", "History", "load_model", "ModelFileError", "seed_mnist_model", "layers", "losses",
           "optimizers", "initializers", "kernels", "__version__"]
