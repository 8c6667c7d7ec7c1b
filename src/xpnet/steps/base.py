"""What every training step offers: ``step(X, y)``, ``repeat`` and ``run_epoch``, written once."""
import math
import numbers

from ..errors import ConfigError
from ..validation import prepare


class Step:
    """What every training step offers; a subclass has ``net``, ``loss``, ``optimizer`` and implements
    ``step(X, T)``, one step on prepared backend arrays returning the loss before the update.

    Faster steps (numba's fused MLP, a CUDA graph) override ``repeat`` and
    ``run_epoch`` to keep their loops out of Python.
    """

    kind = "training step"
    notices = True  # whether a step that compiles on first use says so (fit sets it from its progress option)

    def __call__(self, X, y):
        """One step on (X, y); returns the loss as a float."""
        X, T = prepare(self.net, self.loss, X, y)
        return self.net.backend.scalar(self.step(X, T))

    def repeat(self, X, y, n):
        """n full-batch steps on (X, y); returns the loss of the last one as a float."""
        n = check_repeats(n)
        X, T = prepare(self.net, self.loss, X, y)
        loss = math.nan
        for _ in range(int(n)):
            loss = self.step(X, T)
        return self.net.backend.scalar(loss) if n else loss

    def run_epoch(self, X, T, order, batch_size):
        """Steps over the rows of X, T in ``order`` (a backend index array; None keeps the order), in batches.

        Returns the loss of every batch (before its update) as a 1-D backend
        array, so the caller reads them back once per epoch.
        """
        backend, xp = self.net.backend, self.net.backend.xp
        n = X.shape[0]
        losses = []
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            if order is None:
                Xb, Tb = (X, T) if stop - start == n else (X[start:stop, ...], T[start:stop, ...])
            else:
                rows = order[start:stop]
                Xb, Tb = backend.take_rows(X, rows), backend.take_rows(T, rows)
            losses.append(self.step(Xb, Tb))
        return xp.stack(losses)


def check_repeats(n):
    """n as an int, or ConfigError unless it is a whole number ≥ 0 (every step's repeat() checks this)."""
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
        raise ConfigError(f"repeat needs a whole number of steps n ≥ 0, got {n!r}")
    return int(n)
