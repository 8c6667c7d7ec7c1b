"""The plain training step: forward, backward layer by layer, optimiser update.

Every backend can run it, and faster steps (numba's fused MLP step, a CUDA
graph) are tested against it.
"""
import math
import numbers

from ..errors import ConfigError
from ..gradients import check_options, finite_difference_arrays
from .base import Step


class PlainStep(Step):
    """One training step, layer by layer in Python.

    ``step(X, y)`` runs one step and returns the loss (before the update);
    ``step.repeat(X, y, n)`` runs n full-batch steps and returns the last loss.
    ``clip_norm`` scales the gradients down to that global L2 norm before the
    optimiser sees them; ``max_norm`` caps each unit's weight norm after it.
    """

    kind = "plain layer-by-layer step"
    first = True  # before the first step
    runtime_lr = None  # a 0-d device array the update reads instead of optimizer.lr (while a CUDA graph records)

    def __init__(self, net, loss, optimizer, gradient="backprop", max_norm=None, clip_norm=None, eps=1e-3,
                 method="central"):
        check_options(gradient, eps, method)
        for name, value in (("max_norm", max_norm), ("clip_norm", clip_norm)):
            if value is not None and not (isinstance(value, numbers.Real) and not isinstance(value, bool)
                                          and 0 < value < math.inf):
                raise ConfigError(f"{name} must be a positive number or None, got {value!r}")
        if gradient == "finite_difference" and any(layer.stochastic for layer in net.layers):
            raise ConfigError("finite differences need a deterministic loss: remove the layers that draw random numbers (Dropout) "
                              "or use gradient='backprop'")
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self.gradient, self.max_norm, self.clip_norm, self.eps, self.method = gradient, max_norm, clip_norm, eps, method
        # max_norm caps the incoming weights of each unit: the columns of every weight matrix W.
        self.weight_index = [i for i, name in enumerate(net.param_names()) if name.endswith(".W")]

    def __repr__(self):
        return (f"<{self.kind}: {self.net.backend.name}, loss={self.loss!r}, optimizer={self.optimizer!r}, "
                f"gradient={self.gradient!r}>")

    def step(self, X, T):
        """One step on prepared backend arrays; returns the loss as a 0-d backend array."""
        # The first step is where numba compiles the layers' kernels when nothing is cached: it says so.
        with self.net.backend.compile_notice(self.notices and self.first):
            loss, grads = self.gradients(X, T)
            self.update(grads)
        self.first = False
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
        self.optimizer.step(backend, params, grads, lr=self.runtime_lr)
        if self.max_norm is not None:
            for i in self.weight_index:
                backend.max_norm(params[i], self.max_norm)
