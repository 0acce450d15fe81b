"""Scale-out on existing engines: data-parallel training over MPI (this package) and sweeps on Dask
(``numcnn.sweep``). Neither is needed by the core: ``pip install 'numcnn[mpi]'`` brings mpi4py and MPICH
(``mpiexec`` in the venv), ``'numcnn[sweep]'`` brings ``dask[distributed]``.

Data-parallel ``fit``, run the same script on every rank::

    # train.py
    import numcnn.distributed
    model = ...; model.compile(...)
    history = numcnn.distributed.fit(model, x, y, batch_size=64, epochs=5, seed=0, checkpoint_dir="ckpt")
    if numcnn.distributed.rank() == 0:
        model.save("model.npz")

    $ mpiexec -n 2 python train.py          # or: mpiexec -n 2 numcnn train --distributed ...

* ``data_parallel``  ``fit``: the global batch split over the ranks, gradients averaged in rank order, the same
                     step on every rank; equals single-process ``fit`` up to float rounding (see there).
* ``sync_layers``    BatchNormalization's statistics and Dropout's masks over the global batch.
* ``collectives``    the deterministic sums and gathers (``Allgather`` then adds in rank order).

Importing this package does not import mpi4py; ``fit`` (without ``comm=``) and ``rank()`` do.
"""

from .data_parallel import BatchShards, GradientAverage, check_batches, fit, world  # noqa: F401


def rank() -> int:
    """This process's rank in ``MPI.COMM_WORLD`` (0 when mpi4py is missing or not under mpiexec)."""
    try:
        return world().rank
    except ModuleNotFoundError:
        return 0


def size() -> int:
    """The number of ranks in ``MPI.COMM_WORLD`` (1 when mpi4py is missing)."""
    try:
        return world().size
    except ModuleNotFoundError:
        return 1
