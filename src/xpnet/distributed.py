"""Data-parallel training over MPI (mpi4py): a full copy of the net on every rank, one Allreduce per step.

Launch one process per core, GPU or machine with ``mpiexec -n N python train.py``;
in the script, ``net.fit(..., distributed=True)`` (or ``DataParallel(net)``)
splits every global batch over the ranks. Each rank computes the gradient of
its shard, the gradients (and the loss) are packed into one flat buffer, summed
by a single Allreduce, each weighted by its shard's share of the batch, and every
rank applies the same update. So N ranks with a global batch B give the weights
one process gets with batch B, up to rounding. Every rank passes the same data
and seed (they draw the same order of samples); rank 0 alone shows progress.

How the buffer travels is the backend's business (``Backend.transports``):
host memory through MPI for NumPy and numba; on CuPy, NCCL when CuPy has it,
else device buffers when MPI is CUDA-aware, else pinned host memory.

A rank that fails inside a distributed step (or leaves the script on an
uncaught exception) prints its error and calls ``MPI_Abort``, which stops every
rank: nobody waits forever in an Allreduce its partner will never join.

mpi4py is imported here only, and only when needed: without it ``rank()`` is 0,
``size()`` is 1, and asking for distributed training says how to install it.

>>> import xpnet as xn
>>> xn.distributed.shard(10, rank=1, size=3)
(3, 6)
"""
import contextlib
import ctypes
import functools
import importlib.util
import os
import sys
import time
import traceback

import numpy as np

from .errors import BackendUnavailableError, ConfigError
from .steps.data_parallel import DistributedStep, digest as _digest, shard  # noqa: F401  (shard: public)

INSTALL = "pip install -e '.[mpi]' (mpi4py with the MPICH wheel), or mpi4py built against your cluster's MPI"

_world = None
_hooked = False  # sys.excepthook already aborts every rank


def _mpi():
    """mpi4py's MPI module, or BackendUnavailableError saying how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise BackendUnavailableError(f"distributed training needs mpi4py ({e}). To fix: {INSTALL}") from None
    return MPI


class Communicator:
    """The MPI calls data-parallel training makes, on an mpi4py communicator (MPI.COMM_WORLD by default)."""

    def __init__(self, comm=None):
        self.MPI = _mpi()
        self.comm = self.MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def __repr__(self):
        return f"<Communicator rank {self.rank} of {self.size}>"

    def allreduce(self, buffer):
        """Sum ``buffer`` over the ranks, in place: a contiguous array MPI can read (NumPy; a GPU array when
        MPI is CUDA-aware)."""
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def allgather(self, value):
        """[value of rank 0, value of rank 1, ...] on every rank (small Python objects)."""
        return self.comm.allgather(value)

    def bcast(self, value, root=0):
        return self.comm.bcast(value, root=root)

    def abort(self, code=1):
        """Stop every rank of the communicator (MPI_Abort); never returns."""
        self.comm.Abort(code)
        os._exit(code)  # MPICH's MPI_Abort can return before the process manager ends this process

    @functools.cached_property
    def cuda_aware(self):
        """True if MPI reads GPU buffers: $XPNET_CUDA_AWARE_MPI (1 or 0) when set, else the MPI library's
        MPIX_Query_cuda_support() (MPICH, Open MPI), else False."""
        setting = os.environ.get("XPNET_CUDA_AWARE_MPI", "").strip()
        if setting:
            return setting not in ("0", "false", "no")
        try:
            query = ctypes.CDLL(self.MPI.__file__).MPIX_Query_cuda_support  # found through mpi4py's libmpi
        except (OSError, AttributeError):
            return False
        query.restype, query.argtypes = ctypes.c_int, []
        return bool(query())

    @functools.cached_property
    def local_rank(self):
        """This rank's index among the ranks on its machine, e.g. to pick a GPU. Collective on first use."""
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        try:
            return local.Get_rank()
        finally:
            local.Free()


def world():
    """The Communicator of every process mpiexec started (MPI.COMM_WORLD); needs mpi4py."""
    global _world
    if _world is None:
        _world = Communicator()
    return _world


def _have_mpi4py():
    if sys.modules.get("mpi4py.MPI") is not None:
        return True
    try:
        return importlib.util.find_spec("mpi4py") is not None
    except ValueError:  # sys.modules["mpi4py"] is None: its import is blocked
        return False


def rank():
    """This process's rank among those mpiexec started: 0 when alone or without mpi4py."""
    return world().rank if _have_mpi4py() else 0


def size():
    """How many processes mpiexec started: 1 when alone or without mpi4py."""
    return world().size if _have_mpi4py() else 1


def local_rank():
    """This rank's index on its own machine (0 without mpi4py); ``device=local_rank() % gpus`` picks a GPU.

    Collective: call it on every rank.
    """
    return world().local_rank if _have_mpi4py() else 0


def _stop_everyone(comm, error, how="failed with"):
    """Print ``error`` as this rank's and abort every rank: no partner is left waiting in a collective."""
    # The line that matters comes last and whole: mpiexec may drop output still in flight when the abort lands.
    print(f"xpnet.distributed: rank {comm.rank} of {comm.size} {how} {type(error).__name__}: {error}; "
          f"stopping every rank (MPI_Abort)", file=sys.stderr, flush=True)
    time.sleep(0.2)  # lets mpiexec forward this rank's output before the abort ends it
    comm.abort(1)


def _abort_on_uncaught_exceptions(comm):
    """Make an exception that ends the script on one rank abort them all (as ``python -m mpi4py`` does)."""
    global _hooked
    if _hooked:
        return
    previous = sys.excepthook

    def hook(kind, error, tb):
        previous(kind, error, tb)
        _stop_everyone(comm, error, "ended on an uncaught")

    sys.excepthook = hook
    _hooked = True


class DataParallel:
    """Synchronous data parallelism for ``net`` over the ranks of ``comm`` (default: every process of mpiexec).

    Each rank builds the same net (same seed: checked here, by comparing every
    rank's weights with rank 0's) and passes the same data. ``transport``:
    "auto" (the backend's best that every rank can use), "mpi" (host memory),
    or on CuPy "nccl" / "cuda-aware-mpi". ``dp.allreduce(flat)`` sums a 1-D
    array of the backend over the ranks that way.

    >>> import xpnet as xn
    >>> X, y = xn.datasets.xor()
    >>> net = xn.MLP([2, 4, 1], activation="tanh", seed=0)
    >>> dp = xn.distributed.DataParallel(net)          # run under `mpiexec -n 2` for two ranks
    >>> hist = dp.fit(X, y, loss="mse", epochs=3, batch_size=4, progress=False)
    >>> len(hist.history["loss"]), dp.transport
    (3, 'mpi')
    """

    def __init__(self, net, comm=None, transport="auto"):
        self.net = net
        self.comm = comm if isinstance(comm, Communicator) else world() if comm is None else Communicator(comm)
        self.rank, self.size = self.comm.rank, self.comm.size
        if self.size > 1:
            _abort_on_uncaught_exceptions(self.comm)
        self._check_same_weights()
        self.transport = self._agree_on_transport(transport)
        with self.guard():  # NCCL's setup is collective: a rank that fails there must not leave the others waiting
            self.allreduce = net.backend.allreducer(self.comm, self.transport)
        # Layers whose statistics span the batch (BatchNorm) sum them over the ranks in every pass.
        self.synchronised = [i for i, layer in enumerate(net.layers) if layer.synchronise(self.allreduce)]

    def __repr__(self):
        return f"<DataParallel rank {self.rank} of {self.size}, transport={self.transport!r}, net={self.net!r}>"

    def _check_same_weights(self):
        digests = self.comm.allgather(_digest(self.net.get_weights()))
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise ConfigError(f"the initial weights of rank(s) {differ} differ from rank 0's: build the network "
                              f"with the same seed (and the same checkpoint, if any) on every rank")

    def _agree_on_transport(self, transport):
        offers = self.comm.allgather(list(self.net.backend.transports(self.comm)))
        common = [name for name in offers[0] if all(name in offer for offer in offers)]
        if transport == "auto" and common:
            return common[0]
        if transport in common:
            return transport
        ranks = "; ".join(f"rank {r}: {', '.join(offer) or 'none'}" for r, offer in enumerate(offers))
        raise ConfigError(f"transport {transport!r} is not one every rank can use ({ranks})")

    @contextlib.contextmanager
    def guard(self):
        """Within: an exception on this rank aborts every rank (with more than one), after printing it."""
        try:
            yield
        except BaseException as error:
            if self.size > 1:
                traceback.print_exc()
                _stop_everyone(self.comm, error)
            raise

    def average(self, grads, loss, share):
        """Σ over ranks of share × (grads, loss), with one Allreduce of one flat buffer.

        ``share`` is this rank's fraction of the global batch (its rows ÷ the batch's);
        grads None means this rank had no rows. Returns (grads, loss) as the
        whole batch would give them, the same on every rank.
        """
        backend, xp = self.net.backend, self.net.backend.xp
        params = self.net.parameters()
        if grads is None:
            count = sum(int(np.prod(p.shape)) for p in params) + 1
            flat = xp.zeros((count,), dtype=params[0].dtype, device=backend.device)
        else:
            flat = xp.concat([xp.reshape(g, (-1,)) for g in grads] + [xp.reshape(loss, (1,))]) * share
        flat = self.allreduce(flat)
        out, start = [], 0
        for p in params:
            size = int(np.prod(p.shape))
            out.append(xp.reshape(flat[start:start + size], p.shape))
            start += size
        return out, flat[start]

    def wrap(self, step):
        """A DistributedStep around ``step`` (one with ``gradients`` and ``update``, as every compiled step has)."""
        if not (hasattr(step, "gradients") and hasattr(step, "update")):
            raise ConfigError(f"{step!r} has no gradients()/update() halves, so it cannot be trained data-parallel")
        if step.net is not self.net:
            raise ConfigError("the step trains another network than this DataParallel's")
        return DistributedStep(step, self)

    def compile(self, loss, optimizer, gradient="backprop", max_norm=None, clip_norm=None):
        """``net.compile(...)``, data-parallel."""
        return self.wrap(self.net.compile(loss, optimizer, gradient=gradient, max_norm=max_norm, clip_norm=clip_norm))

    def fit(self, X, y, loss="mse", optimizer="sgd", epochs=1, batch_size="auto", *, validation_data=None,
            validation_split=0.0, shuffle=True, early_stopping=None, callbacks=None, max_norm=None, clip_norm=None,
            gradient="backprop", progress=True, seed=0, checkpoint=None, every=1, resume=None):
        """``net.fit(X, y, ..., distributed=self)``: every rank passes the same X, y and seed."""
        return self.net.fit(X, y, loss=loss, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
                            validation_data=validation_data, validation_split=validation_split, shuffle=shuffle,
                            early_stopping=early_stopping, callbacks=callbacks, max_norm=max_norm,
                            clip_norm=clip_norm, gradient=gradient, progress=progress, seed=seed,
                            checkpoint=checkpoint, every=every, resume=resume, distributed=self)


def data_parallel(net, distributed):
    """The DataParallel ``fit(distributed=...)`` asks for: True → one over every rank; a DataParallel as is."""
    if isinstance(distributed, DataParallel):
        if distributed.net is not net:
            raise ConfigError("fit(distributed=...) got a DataParallel of another network")
        return distributed
    if distributed is not True:
        raise ConfigError(f"distributed must be True, False or an xn.distributed.DataParallel, got {distributed!r}")
    return DataParallel(net)
