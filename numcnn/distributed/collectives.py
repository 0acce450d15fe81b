"""The few MPI operations data-parallel training needs, written so that every rank gets the same bits.

``MPI_SUM`` (``Allreduce``) may add the ranks' contributions in any order, and the order can change with the
MPI library, the rank count or the message size; float addition is not associative, so ranks could then hold
different sums. ``sum_in_rank_order`` instead gathers every rank's partial sum (``Allgather``) and adds them on
every rank in the same order, 0, 1, ..., R-1: the same operations on the same numbers, hence the same result,
for a given R. Its cost: each rank receives ``(R - 1) * P`` values (a ring ``Allreduce`` moves
``2 (R - 1) / R * P``), the same for R = 2 and ~R/2 times more for large R, which is why ``sum_with_mpi`` (the
library's bandwidth-optimal ``Allreduce``, order up to the library) is offered too.

Nothing here imports mpi4py: the communicator is passed in (``mpi4py.MPI.Comm``, or anything with its
``Allgather``/``Allreduce``/``allgather``/``bcast``/``rank``/``size``).
"""

from __future__ import annotations

import numpy as np


def sum_in_rank_order(comm, local: np.ndarray) -> np.ndarray:
    """``sum_r local_r`` over the ranks of ``comm``, added in rank order: bit-identical on every rank."""
    local = np.ascontiguousarray(local)
    gathered = np.empty((comm.size,) + local.shape, dtype=local.dtype)
    comm.Allgather(local, gathered)
    total = gathered[0].copy()
    for part in gathered[1:]:  # one fixed order on every rank
        total += part
    return total


def sum_with_mpi(comm, local: np.ndarray) -> np.ndarray:
    """``sum_r local_r`` with MPI's own ``Allreduce(SUM)``: fewer bytes for many ranks; the order of the
    additions is the library's (MPICH gives every rank the same result, but it may change with R or size)."""
    from mpi4py import MPI

    local = np.ascontiguousarray(local)
    total = np.empty_like(local)
    comm.Allreduce(local, total, op=MPI.SUM)
    return total


def gather_in_rank_order(comm, local: np.ndarray) -> np.ndarray:
    """Every rank's ``local`` (same shape but for the first axis), concatenated in rank order, on every rank."""
    return np.concatenate(comm.allgather(np.ascontiguousarray(local)))


def broadcast_arrays(comm, arrays: list, root: int = 0) -> list:
    """Rank ``root``'s arrays on every rank (copied into the given arrays, in place)."""
    for array in arrays:
        buffer = np.ascontiguousarray(array)
        comm.Bcast(buffer, root=root)
        array[...] = buffer
    return arrays
