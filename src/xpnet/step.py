"""The plain training step: forward, backward layer by layer, optimiser update.

``net.compile(loss, optimizer)`` asks the backend for its fastest step; this
is the one every backend can run, and the reference that faster steps (a
numba-jitted MLP, a CUDA graph) are tested against.
"""
import math
import numbers

from .errors import ConfigError
from .gradients import check_options, finite_difference_arrays, prepare


class Step:
    """What every training step offers; a subclass has ``net``, ``loss``, ``optimizer`` and implements
    ``step(X, T)``, one step on prepared backend arrays returning the loss before the update.

    Faster steps (numba's fused MLP, a CUDA graph) override ``repeat`` and
    ``run_epoch`` to keep their loops out of Python.
    """

    kind = "training step"

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


class PlainStep(Step):
    """One training step, layer by layer in Python.

    ``step(X, y)`` runs one step and returns the loss (before the update);
    ``step.repeat(X, y, n)`` runs n full-batch steps and returns the last loss.
    ``clip_norm`` scales the gradients down to that global L2 norm before the
    optimiser sees them; ``max_norm`` caps each unit's weight norm after it.
    """

    kind = "plain layer-by-layer step"

    def __init__(self, net, loss, optimizer, gradient="backprop", max_norm=None, clip_norm=None, eps=1e-3,
                 method="central"):
        check_options(gradient, eps, method)
        for name, value in (("max_norm", max_norm), ("clip_norm", clip_norm)):
            if value is not None and not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                                          and 0 < value < math.inf):
                raise ConfigError(f"{name} must be a positive number or None, got {value!r}")
        if gradient == "finite_difference" and any(getattr(layer, "p", 0.0) for layer in net.layers):
            raise ConfigError("finite differences need a deterministic loss: remove the Dropout layers "
                              "or use gradient='backprop'")
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self.gradient, self.max_norm, self.clip_norm, self.eps, self.method = gradient, max_norm, clip_norm, eps, method
        self.weight_index = [i for i, name in enumerate(net.param_names()) if name.startswith("W")]

    def __repr__(self):
        return (f"<{self.kind}: {self.net.backend.name}, loss={self.loss!r}, optimizer={self.optimizer!r}, "
                f"gradient={self.gradient!r}>")

    def step(self, X, T):
        """One step on prepared backend arrays; returns the loss as a 0-d backend array."""
        loss, grads = self.gradients(X, T)
        self.update(grads)
        return loss

    def gradients(self, X, T):
        """(loss as a 0-d backend array, ∂C/∂θ in the order of net.parameters()) on one batch; nothing updated.

        ``step`` is ``gradients`` then ``update``: data-parallel training
        (xpnet.distributed) averages the gradients over the ranks in between.
        """
        net, backend = self.net, self.net.backend
        if self.gradient == "backprop":
            loss = net.forward_backward(X, T, self.loss)
            return loss, net.gradients()
        loss = self.loss.value(backend, net.forward_prepared(X, training=False), T)
        return loss, finite_difference_arrays(net, self.loss, X, T, self.eps, self.method)

    def update(self, grads):
        """Clip to clip_norm, the optimiser step with ``grads`` (net.parameters() order), then the max-norm limit."""
        backend, params = self.net.backend, self.net.parameters()
        if self.clip_norm is not None:  # after any averaging over ranks: the clip sees the whole batch's gradient
            grads = backend.clip_grad_norm(grads, self.clip_norm)
        self.optimizer.step(backend, params, grads)
        if self.max_norm is not None:
            for i in self.weight_index:
                backend.max_norm(params[i], self.max_norm)



def check_repeats(n):
    """n as an int, or ConfigError unless it is a whole number ≥ 0 (every step's repeat() checks this)."""
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
        raise ConfigError(f"repeat needs a whole number of steps n ≥ 0, got {n!r}")
    return int(n)
