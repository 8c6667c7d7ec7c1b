"""MPI ranks as threads of the test process, so data-parallel code runs in-process on every backend.

``run_ranks(size, fn)`` runs ``fn(comm)`` on ``size`` threads, each with a
ThreadComm: an xpnet.distributed.Communicator whose collectives meet at a
barrier. Sums run in rank order on host copies, so every rank gets the same
bits, as from MPI. GPU buffers (the fake CuPy's array-api-strict arrays) are
summed the way CUDA-aware MPI would: read and written in place on the device.
``abort`` breaks the barrier, so the other ranks stop with BrokenBarrierError
instead of waiting (MPI_Abort kills them); the barrier's timeout means a test
can never hang.
"""
import collections
import threading

import numpy as np

from xpnet.distributed import Communicator

TIMEOUT = 60


class ThreadGroup:
    """What the ranks of one run share: the barrier, the exchange slots, a record of the calls."""

    def __init__(self, size):
        self.size = size
        self.barrier = threading.Barrier(size, timeout=TIMEOUT)
        self.slots = [None] * size
        self.aborted = None  # (rank, code) of the rank that called abort
        self.calls = collections.Counter()
        self.allreduce_sizes = []  # the length of every buffer rank 0 summed

    def exchange(self, rank, value):
        """Every rank's value, in rank order, on every rank."""
        self.slots[rank] = value
        self.barrier.wait()
        values = list(self.slots)
        self.barrier.wait()  # nobody overwrites a slot before everyone has read it
        return values


class ThreadComm(Communicator):
    def __init__(self, group, rank, cuda_aware=False):  # no MPI: the group is the communicator
        self.group, self.rank, self.size = group, rank, group.size
        self.cuda_aware = cuda_aware

    def allreduce(self, buffer):
        on_host = isinstance(buffer, np.ndarray)
        values = self.group.exchange(self.rank, np.array(buffer if on_host else np.from_dlpack(buffer), copy=True))
        total = values[0].copy()
        for value in values[1:]:
            total += value
        if on_host:
            buffer[...] = total
        else:
            import array_api_strict as strict

            buffer[...] = strict.asarray(total, device=buffer.device)
        if self.rank == 0:  # a sum that completed
            self.group.calls["allreduce"] += 1
            self.group.allreduce_sizes.append(int(buffer.shape[0]))

    def allgather(self, value):
        return self.group.exchange(self.rank, value)

    def bcast(self, value, root=0):
        return self.group.exchange(self.rank, value)[root]

    def abort(self, code=1):
        if self.group.aborted is None:  # the first abort is the one MPI acts on; it would kill the others
            self.group.aborted = (self.rank, code)
        self.group.barrier.abort()


def run_ranks(size, fn, cuda_aware=False):
    """[fn(comm) of rank 0, of rank 1, ...]: each an exception instead when that rank raised. Also the group."""
    group = ThreadGroup(size)
    results = [None] * size

    def run(rank):
        try:
            results[rank] = fn(ThreadComm(group, rank, cuda_aware))
        except BaseException as e:  # noqa: B902  the test looks at what each rank raised
            results[rank] = e

    threads = [threading.Thread(target=run, args=(rank,), daemon=True) for rank in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT + 10)
        assert not thread.is_alive(), "a rank is still running: a hang"
    return results, group
