"""numcnn: a from-scratch NumPy CNN reference implementation.

Every layer is written from its formula, forward and backward by hand (no autograd), with Numba on the
hot loops. Conventions (NHWC, Keras weight layouts, TF padding and tie rules, Keras loss and optimizer
formulas) match Keras 3, so weights move both ways and results can be checked against TensorFlow.
"""

import os

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

from . import initializers, kernels, layers, losses, optimizers  # noqa: E402
from .io import ModelFileError, load_model  # noqa: E402
from .model import History, Sequential  # noqa: E402
from .zoo import seed_mnist_model  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Sequential", "History", "load_model", "ModelFileError", "seed_mnist_model", "layers", "losses",
           "optimizers", "initializers", "kernels", "__version__"]
