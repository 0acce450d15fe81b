"""``mpiexec -n R numcnn train --distributed ...``: the train command on every rank, data-parallel."""

from __future__ import annotations

import functools
import sys
import traceback

from . import data_parallel


def run_distributed(train, args, out) -> int:
    """Run ``train(args, out, fit=..., root=...)`` on every rank with the data-parallel ``fit``; rank 0 alone
    prints, checkpoints and saves. Any failure on any rank (data loading included, before ``fit``) aborts the
    whole job: a rank that returned an error while the others wait in a collective would hang it."""
    comm = data_parallel.world()
    root = comm.rank == 0
    if root:
        print(f"numcnn: data-parallel over {comm.size} MPI rank(s), global batch {args.batch_size}", file=sys.stderr)
    fit = functools.partial(_fit, comm=comm)
    try:
        return train(args, out, fit=fit, root=root)
    except BaseException as error:
        if comm.size == 1:
            raise
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"numcnn: error on rank {comm.rank}: {first_line}; aborting the job", file=sys.__stderr__, flush=True)
        if getattr(args, "debug", False):
            traceback.print_exc(file=sys.__stderr__)
        comm.Abort(2)
        raise


def _fit(model, x, y, comm=None, **arguments):
    return data_parallel.fit(model, x, y, comm=comm, **arguments)
