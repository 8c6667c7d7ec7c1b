"""The data-parallel step: any step with ``gradients``/``update`` halves, every batch split over MPI ranks.

``xpnet.distributed.DataParallel`` owns the ranks and the Allreduce; this step
cuts each batch into shards, has the inner step compute its shard's gradient,
averages over the ranks, and applies the same update everywhere.
"""
import zlib

import numpy as np

from ..errors import DataError
from ..validation import prepare
from .base import Step, check_repeats


def shard(batch, rank, size):
    """The rows [start, stop) of a batch of ``batch`` rows that ``rank`` of ``size`` computes.

    Contiguous, sizes differing by at most one; a rank gets none when the batch is smaller than ``size``.
    """
    return batch * rank // size, batch * (rank + 1) // size


def digest(arrays):
    """A checksum of host copies of ``arrays``: equal data gives equal digests on every rank."""
    crc = 0
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
    return crc


class DistributedStep(Step):
    """A compiled step whose every batch is split over the ranks; same methods as PlainStep.

    Each rank computes the gradient of its shard of the batch (``inner.gradients``),
    ``DataParallel.average`` sums them weighted by shard size, and each rank
    applies the same update (``inner.update``). Arguments are the whole batch or
    data set, the same on every rank.
    """

    def __init__(self, inner, dp):
        self.inner, self.dp = inner, dp
        self.net, self.loss, self.optimizer = inner.net, inner.loss, inner.optimizer

    @property
    def kind(self):
        return f"data-parallel step over {self.dp.size} rank(s) ({self.dp.transport}) around a {self.inner.kind}"

    def __repr__(self):
        return f"<{self.kind}: {self.net.backend.name}, loss={self.loss!r}, optimizer={self.optimizer!r}>"

    def repeat(self, X, y, n):
        """n full-batch steps; returns the loss of the last one as a float."""
        n = check_repeats(n)
        X, T = prepare(self.net, self.loss, X, y)
        self._check_agreement(X, None, X.shape[0])
        loss = float("nan")
        with self.dp.guard():
            for _ in range(n):
                loss = self._batch(X, T, None, 0, X.shape[0])
        return self.net.backend.scalar(loss) if n else loss

    def step(self, X, T):
        """One step on the prepared global batch; returns its loss as a 0-d backend array."""
        self._check_agreement(X, None, X.shape[0])
        with self.dp.guard():
            return self._batch(X, T, None, 0, X.shape[0])

    def run_epoch(self, X, T, order, batch_size):
        """Steps over the rows of X, T in ``order`` (None: as they are), in global batches of ``batch_size``."""
        self._check_agreement(X, order, batch_size)
        with self.dp.guard():
            n = X.shape[0]
            losses = [self._batch(X, T, order, start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
            return self.net.backend.xp.stack(losses)

    def _check_agreement(self, X, order, batch_size):
        """Every rank must step through the same batches, or collectives would pair up wrongly (or hang)."""
        order_digest = None if order is None else digest([self.net.backend.to_numpy(order)])
        mine = (tuple(X.shape), batch_size, order_digest)
        everyone = self.dp.comm.allgather(mine)
        if any(theirs != everyone[0] for theirs in everyone):
            rows = "; ".join(f"rank {r}: {n} rows, batch {b}, order {'unshuffled' if d is None else hex(d)}"
                             for r, ((n, *_), b, d) in enumerate(everyone))
            raise DataError(f"the ranks disagree on the data or its order ({rows}): give every rank the same "
                            f"X, y, batch_size and seed")

    def _batch(self, X, T, order, start, stop):
        """One step on rows start:stop of the epoch (through ``order``), this rank computing its shard."""
        backend = self.net.backend
        if stop - start < self.dp.size and self.dp.synchronised:  # every rank sees the same sizes: all raise
            raise DataError(f"a batch of {stop - start} rows leaves some of the {self.dp.size} ranks without rows, "
                            f"but layers {self.dp.synchronised} sum batch statistics over every rank: use batches "
                            f"(and a last batch) of at least {self.dp.size} rows")
        lo, hi = shard(stop - start, self.dp.rank, self.dp.size)
        grads = loss = None
        if hi > lo:
            if order is None:
                Xs, Ts = X[start + lo:start + hi, ...], T[start + lo:start + hi, ...]
            else:
                rows = order[start + lo:start + hi]
                Xs, Ts = backend.take_rows(X, rows), backend.take_rows(T, rows)
            loss, grads = self.inner.gradients(Xs, Ts)
        grads, loss = self.dp.average(grads, loss, (hi - lo) / (stop - start))
        self.inner.update(grads)
        return loss
