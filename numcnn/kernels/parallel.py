"""Coarse-grained parallelism for the GEMM kernels: chunks of images on numcnn's own threads, BLAS on one
thread inside each.

A convolution by im2col is a sequence of independent chunks (a few images each: im2col, one GEMM, col2im).
Handing each chunk's GEMM to a multi-threaded BLAS splits an already small matrix product across threads
that then synchronise several times per product; OpenBLAS's idle threads also *spin* while they wait.
Measured on the CIFAR-style model (benchmarks/architectures.py, batch 32, 2 cores, Zen 4) with other work on
the machine: one training step took 105 ms of CPU time with one thread, but 927 ms with two — mostly spinning
in the convolutions' GEMMs (the first layer's weight gradient, a 27 x 32 result from ~32,000 rows: 2.7 ->
163 ms). Frameworks avoid this the same way (oneDNN runs one single-threaded kernel per chunk of the batch).

So here the threads take the chunks one at a time, in order, and run them one after another, calling
BLAS single-threaded (``threadpoolctl``); no thread waits for another until the end. Taking them one at a
time rather than a fixed share each matters on small layers: waking a sleeping helper thread takes tens of
microseconds here (an empty ``run_chunks`` round trip: 91 us, Intel Xeon Sapphire Rapids VM), so with fixed
shares the helper started late and the caller then waited for it; now the caller goes on taking chunks and
the helper does what is left when it arrives (``_ChunkQueue``). Two rules keep the results bit-identical
for any number of threads, and whichever thread runs which chunk:

* the chunks depend on the batch and the layer only (``image_chunks``), never on the thread count;
* every chunk writes its own outputs (its images' rows, or its own partial weight gradient, which the
  caller adds up in chunk order afterwards).

The worker functions must not call Numba ``parallel=True`` kernels (Numba's threading layers do not all
allow launches from several threads at once): they call the serial ``nogil`` kernels, which release
Python's GIL as ``numpy.matmul`` does, so the threads really run at the same time.
"""

from __future__ import annotations

import contextlib
import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

# Elementwise kernels (ReLU, leaky ReLU, dropout) and max pooling run on numcnn's threads only from this many
# elements on. Starting a parallel loop wakes the sleeping threads (OMP_WAIT_POLICY=passive, numcnn/__init__.py),
# which cost 50-80 us per launch on this project's 2-core virtual machine. Measured with the ReLU kernel, serial
# vs parallel, AMD EPYC Zen 4: 26 vs 82 us at 2^18 floats, 115 vs 118 at 2^20, 308 vs 186 at 2^21, 5.6 vs 4.2 ms
# at 2^24; with the AVX2 settings (NUMBA_CPU_NAME=haswell OPENBLAS_CORETYPE=Haswell NPY_DISABLE_CPU_FEATURES=
# "X86_V4 AVX512_ICL"): 32 vs 83, 153 vs 152, 323 vs 204 us, 8.8 vs 4.8 ms. The crossover is at 2^20-2^21 on
# both. A training batch's activations are mostly below it, an inference batch of 256 images above.
PARALLEL_MIN_ELEMENTS = 1 << 21
ELEMENTWISE_BLOCK = 1 << 16  # elements per block of a parallel elementwise loop

CHUNK_BYTES = 4 << 20  # about this many bytes of im2col matrix per chunk (see kernels.conv's docstring)
MIN_CHUNKS = 8  # a batch splits into at least this many chunks (if it has as many images): work for 8 threads
# ... unless its chunks would then hold less than this. Each chunk costs ~10 us of Python (slicing, the
# im2col and matmul calls) under the GIL, which the threads cannot share: the seed model's third convolution
# (32 images of 5x5x64, 20 KB of im2col each) went from 0.26 / 0.53 ms (forward / backward, 8 chunks of 80 KB)
# to 0.22 / 0.37 ms in 2 chunks of 330 KB (2 threads, Intel Xeon Sapphire Rapids, AVX-512), and from 0.26 / 0.56
# to 0.24 / 0.44 ms with the AVX2 settings (NUMBA_CPU_NAME=haswell OPENBLAS_CORETYPE=Haswell NPY_DISABLE_CPU_FEATURES).
MIN_CHUNK_BYTES = 256 << 10

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()
_blas = None  # threadpoolctl's controllers of the loaded BLAS libraries, found on first use
_blas_users = 0  # how many threads are inside single_threaded_blas() now
_blas_restore = None  # [(library, its thread count before)], restored when the last of them leaves


@numba.njit(cache=True)
def block_span(block, size):
    """``(start, stop)`` of block ``block`` of an elementwise loop over ``size`` elements."""
    start = block * ELEMENTWISE_BLOCK
    return start, min(size, start + ELEMENTWISE_BLOCK)


def worth_threads(size: int) -> bool:
    """Whether a memory-bound pass over ``size`` elements should run on numcnn's threads (see
    ``PARALLEL_MIN_ELEMENTS``): the one place that decides, for the elementwise kernels and max pooling."""
    return size >= PARALLEL_MIN_ELEMENTS and thread_count() > 1


def run_elementwise(span_kernel, parallel_kernel, size, *args) -> None:
    """``span_kernel(*args, 0, size)`` on this thread, or ``parallel_kernel(*args)`` (the same kernel over
    ``block_span`` blocks in a ``prange``) where ``worth_threads(size)``. Every element is computed alone,
    so both give the same bits."""
    if worth_threads(size):
        parallel_kernel(*args)
    else:
        span_kernel(*args, 0, size)


def thread_count() -> int:
    """numcnn's thread count: Numba's (``NUMBA_NUM_THREADS``, ``numba.set_num_threads``), one knob for all."""
    return numba.get_num_threads()


def image_chunks(n_images: int, bytes_per_image: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(n_images)``: at most about ``CHUNK_BYTES`` of work buffer per
    chunk (one image at least), and a multiple of ``MIN_CHUNKS`` chunks when there are that many images, whose
    sizes differ by one image at most — so that 2, 4 or 8 threads get equal work (11 chunks on 2 threads left
    one thread idle for a twelfth of the CIFAR-style model's largest convolution). A small layer gets fewer
    chunks, a power of two, each with at least ``MIN_CHUNK_BYTES`` of work. Depends on the shapes only, so a
    weight gradient summed chunk by chunk is the same sum for any thread count."""
    fits = max(1, CHUNK_BYTES // max(1, bytes_per_image))  # images per chunk within CHUNK_BYTES
    needed = math.ceil(n_images / fits)
    count = min(n_images, math.ceil(needed / MIN_CHUNKS) * MIN_CHUNKS)  # (all of them when fewer than 8)
    big_enough = n_images * bytes_per_image // MIN_CHUNK_BYTES  # chunks that would each hold MIN_CHUNK_BYTES
    if big_enough < count:
        count = 1 << max(0, big_enough.bit_length() - 1)  # the largest power of two <= big_enough (1 at least)
    return even_chunks(n_images, count)


def even_chunks(size: int, count: int) -> list[tuple[int, int]]:
    """``count`` chunks ``[(start, stop), ...]`` covering ``range(size)``, their sizes differing by one at most."""
    base, extra = divmod(size, max(count, 1))
    bounds = [0]
    for index in range(count):
        bounds.append(bounds[-1] + base + (index < extra))
    return list(zip(bounds[:-1], bounds[1:]))


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="numcnn")
        return _pool


def _blas_libraries():
    """threadpoolctl's controllers of the loaded BLAS libraries (found once; call with ``_pool_lock`` held)."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = [lib for lib in ThreadpoolController().lib_controllers if lib.user_api == "blas"]
    return _blas


@contextlib.contextmanager
def single_threaded_blas():
    """A context in which BLAS runs on one thread (numcnn's threads do the splitting). Counted, so that nested
    or overlapping uses restore the user's setting only when the last one leaves."""
    global _blas_users, _blas_restore
    with _pool_lock:
        libraries = _blas_libraries()
        if _blas_users == 0:
            _blas_restore = [(lib, lib.get_num_threads()) for lib in libraries]
            for lib in libraries:
                lib.set_num_threads(1)
        _blas_users += 1
    try:
        yield
    finally:
        with _pool_lock:
            _blas_users -= 1
            if _blas_users == 0:
                for lib, threads in _blas_restore:
                    lib.set_num_threads(threads)


class _ChunkQueue:
    """The chunks of one ``run_chunks`` call, handed out one at a time in index order to whichever thread
    asks first. The caller waits only for helpers that took a chunk: one that wakes after the last chunk has
    been taken does nothing and is not waited for."""

    def __init__(self, chunks):
        self._chunks = [(index, start, stop) for index, (start, stop) in enumerate(chunks)]
        self.most_images = max((stop - start for start, stop in chunks), default=0)
        self._next = 0
        self._lock = threading.Lock()
        self._helpers_done = threading.Condition(self._lock)
        self._busy_helpers = 0
        self.errors = []

    def take(self):
        """The next chunk ``(index, start, stop)``, or None when all have been taken."""
        with self._lock:
            if self._next == len(self._chunks):
                return None
            self._next += 1
            return self._chunks[self._next - 1]

    def close(self) -> None:
        """Hand out no more chunks."""
        with self._lock:
            self._next = len(self._chunks)

    def help(self, work) -> None:
        """Run ``work`` on a helper thread, unless every chunk is already taken; exceptions are kept for
        the caller."""
        with self._lock:
            if self._next == len(self._chunks):
                return
            self._busy_helpers += 1
        try:
            work(Share(self))
        except BaseException as error:  # re-raised by run_chunks on the calling thread
            self.errors.append(error)
        finally:
            with self._lock:
                self._busy_helpers -= 1
                self._helpers_done.notify_all()

    def wait_for_helpers(self) -> None:
        with self._lock:
            self._helpers_done.wait_for(lambda: self._busy_helpers == 0)


class Share:
    """The chunks one thread runs in a ``run_chunks`` call: an iterator of ``(index, start, stop)`` that takes
    each from the shared queue when asked. ``most_images``: the size of the call's largest chunk, for
    buffers that must fit any chunk the thread may get."""

    def __init__(self, queue: _ChunkQueue):
        self._queue = queue
        self.most_images = queue.most_images

    def __iter__(self):
        return self

    def __next__(self):
        chunk = self._queue.take()
        if chunk is None:
            raise StopIteration
        return chunk


def run_chunks(chunks: list[tuple[int, int]], work) -> None:
    """Call ``work(share)`` on each of numcnn's threads, with BLAS single-threaded, and wait for all;
    ``share`` (a ``Share``) yields ``(index, start, stop)`` for the chunks that thread runs, taken one at a
    time from ``chunks`` (a list of ``(start, stop)``). The calling thread works too. Exceptions are re-raised
    here. ``work`` must write only to its own chunks' outputs (and to its own scratch buffers)."""
    queue = _ChunkQueue(chunks)
    helpers = max(0, min(thread_count(), len(chunks)) - 1)
    with single_threaded_blas():
        if helpers:
            pool = _executor(helpers)
            for _ in range(helpers):
                pool.submit(queue.help, work)
        try:
            work(Share(queue))
        except BaseException:
            queue.close()  # a helper that has not started yet must not start the remaining chunks
            raise
        finally:
            queue.wait_for_helpers()
    if queue.errors:
        raise queue.errors[0]
