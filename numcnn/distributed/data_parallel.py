"""``fit`` over MPI ranks: each rank computes the gradients of its slice of every global batch, the ranks
average them, and every rank applies the same optimizer step (the Horovod pattern, on numcnn's own loop).

One step on rank ``r`` of ``R`` (``numcnn.training.loop``'s ``fit`` with two hooks)::

    batch       = order[start:start + batch_size]      the same seeded shuffle on every rank: the global batch
    mine        = shard_batch(batch)                    rows offset_r .. offset_r + n_r (np.array_split's sizes)
    result_r    = compute_gradients(model, x[mine], y[mine])     loss_r, g_r: means over the n_r examples
    result      = reduce_gradients(result_r):
                  g    = sum_r (n_r / N) g_r             added in rank order (collectives.sum_in_rank_order)
                  loss = sum_r (n_r / N) loss_r          output = every rank's output, in rank (= batch) order
    apply_gradients(model, result)                      the same update on every rank

``g`` is the gradient of the global batch's mean loss ``(1/N) sum_n l_n``, as in single-process ``fit`` with
the same ``batch_size``; only the order of float additions differs (measured in float64 by
``tests/test_distributed.py``: <= 1e-9 relative after several epochs, ranks bit-identical).

What else is made to come out as in one process:

* **Identical start**: rank 0's weights, the model's generator and every layer's generator (Dropout's masks)
  are broadcast before training, so ranks agree even when they were built unseeded.
* **BatchNormalization and Dropout** see the global batch (``sync_layers``): statistics over all ranks' rows,
  the moving statistics updated with them; masks drawn for the whole batch, each rank using its rows.
* **Metrics, History, callbacks, validation** run on every rank with the same numbers (the reduced loss and the
  gathered outputs of the whole batch; validation is evaluated in full on every rank, inference mode), so
  EarlyStopping or ReduceLROnPlateau decide alike everywhere. Callbacks that write files (``ModelCheckpoint``,
  ``CSVLogger``) run on rank 0 only.
* **Only rank 0 prints** (other ranks' stdout/stderr are silenced during ``fit``; errors still surface) and
  **only rank 0 writes the checkpoint** (atomically, ``numcnn.checkpoint``); every rank *reads* it on resume.
* **Batches**: ``batch_size`` need not be a multiple of R (slices then differ by one example); a batch with
  fewer examples than ranks (``batch_size < R``, or a last batch ``N mod batch_size`` in ``1 .. R-1``) would
  leave a rank with nothing and is refused before training with a ValueError saying which.
* **Faults**: an exception on any rank aborts the whole job (``MPI_Abort``) instead of leaving the other ranks
  waiting in a collective forever; a rank killed outright is detected by ``mpiexec`` (MPICH's Hydra ends the
  job). The last checkpoint is a complete file either way (written atomically), and ``resume=True`` continues
  from it bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import traceback
from dataclasses import dataclass

import numpy as np

from ..training import loop
from ..training.callbacks import CSVLogger, ModelCheckpoint
from ..training.loop import BatchResult
from . import collectives
from .sync_layers import synchronized

MPI_INSTALL_HINT = "pip install 'numcnn[mpi]' (mpi4py and the mpich wheel, which brings mpiexec)"
FILE_WRITING_CALLBACKS = (ModelCheckpoint, CSVLogger)  # rank 0 only


def world():
    """``mpi4py.MPI.COMM_WORLD`` (a clear error when mpi4py is missing)."""
    try:
        from mpi4py import MPI
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"numcnn.distributed needs mpi4py: {MPI_INSTALL_HINT}", name=error.name) from None
    return MPI.COMM_WORLD


@dataclass
class BatchShards:
    """Which rows of the current global batch this rank holds (``shard_batch`` sets it every step)."""

    rank: int
    ranks: int
    global_size: int = 0
    offset: int = 0
    count: int = 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """This rank's contiguous part of ``batch``: sizes as ``np.array_split`` (the first ``N mod R`` get one
        more), so the ranks' parts, in rank order, are the batch in order."""
        size = len(batch)
        if size < self.ranks:
            raise ValueError(f"a batch of {size} examples cannot be split over {self.ranks} ranks")
        base, extra = divmod(size, self.ranks)
        self.global_size = size
        self.count = base + (1 if self.rank < extra else 0)
        self.offset = self.rank * base + min(self.rank, extra)
        return batch[self.offset:self.offset + self.count]


class GradientAverage:
    """``reduce_gradients`` for ``loop.fit``: every rank's ``BatchResult`` -> the global batch's result."""

    def __init__(self, comm, deterministic: bool = True):
        self.comm = comm
        self.sum = collectives.sum_in_rank_order if deterministic else collectives.sum_with_mpi

    def __call__(self, result: BatchResult) -> BatchResult:
        comm = self.comm
        sizes = comm.allgather(result.size)
        total = sum(sizes)
        dtype = result.grads[0].dtype if result.grads else np.dtype(np.float64)
        share = dtype.type(result.size / total)  # n_r / N, rounded once to the gradients' dtype
        flat = np.concatenate([np.ravel(g) for g in result.grads] or [np.zeros(0, dtype)]).astype(dtype, copy=False)
        summed = self.sum(comm, flat * share)  # one message for every gradient
        grads, position = [], 0
        for g in result.grads:
            grads.append(summed[position:position + g.size].reshape(g.shape))
            position += g.size
        loss = float(collectives.sum_in_rank_order(comm, np.array([result.loss * result.size / total]))[0])
        output = collectives.gather_in_rank_order(comm, result.output)
        return BatchResult(loss, grads, output, total)


def _training_examples(x, batch_size, validation_split, validation_data) -> int:
    """How many examples ``loop.fit`` will train on (``validation_split`` takes the tail)."""
    n = len(x)
    if validation_split and validation_data is None:
        n = int(math.floor(n * (1.0 - validation_split)))
    return n


def check_batches(examples: int, batch_size: int, ranks: int) -> None:
    """Refuse batch plans that would leave a rank without examples (see the module docstring)."""
    if batch_size < ranks:
        raise ValueError(f"batch_size={batch_size} is smaller than the {ranks} ranks: every rank needs at least one "
                         f"example of each batch; use batch_size >= {ranks}")
    last = examples % batch_size
    if 0 < last < ranks:
        raise ValueError(f"the last batch of each epoch would hold {last} example(s) ({examples} training examples, "
                         f"batch_size={batch_size}), fewer than the {ranks} ranks: choose a batch size that leaves "
                         f"0 or >= {ranks} examples in the last batch, or drop {last} example(s)")


def broadcast_state(model, comm) -> None:
    """Rank 0's weights and generator states on every rank (the start every rank must share)."""
    collectives.broadcast_arrays(comm, model.weights)
    model.rng.bit_generator.state = comm.bcast(model.rng.bit_generator.state, root=0)
    for layer in model.layers:
        if getattr(layer, "rng", None) is not None:
            layer.rng.bit_generator.state = comm.bcast(layer.rng.bit_generator.state, root=0)


@contextlib.contextmanager
def _silenced(active: bool):
    """stdout/stderr to /dev/null (the non-zero ranks: only rank 0 prints)."""
    if not active:
        yield
        return
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


def fit(model, x, y, batch_size=None, *, comm=None, deterministic: bool = True, abort_on_error: bool = True,
        **fit_arguments):
    """Data-parallel ``model.fit(x, y, batch_size=..., **fit_arguments)`` over the ranks of ``comm`` (default
    ``MPI.COMM_WORLD``); run the same call on every rank (``mpiexec -n R python script.py``). ``batch_size`` is
    the *global* batch; every rank passes the same full ``x``, ``y`` (each reads only its rows of each batch).
    Returns the ``History`` (the same on every rank). ``fit_arguments`` are ``Sequential.fit``'s (``epochs``,
    ``validation_data``, ``callbacks``, ``seed``, ``checkpoint_dir``, ``resume``, ...).

    ``deterministic=False`` sums with MPI's ``Allreduce`` (see ``collectives``). ``abort_on_error``: an
    exception on any rank calls ``MPI_Abort`` (ending every rank) after printing it, rather than raising on one
    rank while the others wait for it forever; with one rank the exception is simply raised."""
    comm = world() if comm is None else comm
    if comm.size == 1:
        return loop.fit(model, x, y, batch_size=batch_size, **fit_arguments)
    try:
        return _fit_ranks(model, x, y, batch_size, comm, deterministic, fit_arguments)
    except BaseException:
        if not abort_on_error:
            raise
        print(f"numcnn.distributed: rank {comm.rank} of {comm.size} failed; aborting the job\n"
              f"{traceback.format_exc()}", file=sys.__stderr__, flush=True)
        comm.Abort(1)
        raise  # (not reached: Abort ends the process)


def _fit_ranks(model, x, y, batch_size, comm, deterministic, fit_arguments):
    model._require_compiled()
    batch = loop.DEFAULT_BATCH_SIZE if batch_size is None else batch_size
    examples = _training_examples(x, batch, fit_arguments.get("validation_split", 0.0),
                                  fit_arguments.get("validation_data"))
    check_batches(examples, batch, comm.size)
    root = comm.rank == 0
    broadcast_state(model, comm)
    arguments = dict(fit_arguments)
    if not root:
        arguments["verbose"] = 0
        arguments["callbacks"] = [c for c in arguments.get("callbacks") or []
                                  if not isinstance(c, FILE_WRITING_CALLBACKS)]
    shards = BatchShards(comm.rank, comm.size)
    with synchronized(model, comm, shards), _silenced(not root):
        return loop.fit(model, x, y, batch_size=batch, reduce_gradients=GradientAverage(comm, deterministic),
                        shard_batch=shards, save_checkpoints=root, **arguments)
