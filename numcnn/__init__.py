"""numcnn: a from-scratch NumPy CNN reference implementation.

Every layer is written from its formula, forward and backward by hand (no autograd), with Numba on the
hot loops. Conventions (NHWC, Keras weight layouts, TF padding and tie rules, Keras loss and optimizer
formulas) match Keras 3, so weights move both ways and results can be checked against TensorFlow.
"""

import os

# OpenBLAS's idle threads spin after a matrix product and slow the Numba kernel that follows on a
# 2-core machine; a short timeout makes them sleep. It only works if set before NumPy loads BLAS.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
# Numba's OpenMP layer spins between parallel regions and fights BLAS for the same cores; the workqueue
# layer sleeps instead (measured: 17 ms vs 22 ms per training step of the seed model at batch 32).
os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")

from . import initializers, kernels, layers, losses, optimizers  # noqa: E402
from .io import ModelFileError, load_model  # noqa: E402
from .model import History, Sequential  # noqa: E402
from .zoo import seed_mnist_model  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Sequential", "History", "load_model", "ModelFileError", "seed_mnist_model", "layers", "losses",
           "optimizers", "initializers", "kernels", "__version__"]
