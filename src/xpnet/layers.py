"""Layers with their forward and backward passes written by hand.

``layer.forward(x, training)`` returns ``(y, backward)``: ``backward`` is a
closure over what the forward pass computed, takes ∂C/∂y and returns ∂C/∂x,
and leaves the parameter gradients in ``layer.grads``. A Dense layer's
``backward.saved`` holds what it closes over (x, z, a), so ``xn.trace`` can
show them without computing them again. A layer is built
(parameters drawn, backend attached) when a network takes it in.
"""
import numbers

from . import init as initializers
from . import kernels
from .errors import ConfigError, lookup


class Layer:
    """A step of a network; subclasses set ``param_names`` and implement ``forward``."""

    param_names = ()

    def __init__(self):
        self.backend = None
        self.params = {}
        self.grads = {}

    def build(self, backend, dtype, rng):
        """Attach the backend and draw the initial parameters from ``rng`` (a host NumPy generator)."""
        self.backend = backend

    def config(self):
        """The constructor arguments, as JSON-able values (saved in checkpoints)."""
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """A fully connected layer: z = x W + b, a = σ(z), W of shape (fan_in, fan_out).

    >>> layer = Dense(2, 16, activation="relu")
    """

    param_names = ("W", "b")

    def __init__(self, fan_in, fan_out, activation="identity", alpha=0.01, init="auto"):
        super().__init__()
        for name, size in (("fan_in", fan_in), ("fan_out", fan_out)):
            if not isinstance(size, int) or isinstance(size, bool) or size < 1:
                raise ConfigError(f"Dense {name} must be a positive integer, got {size!r}")
        lookup("activation", activation, kernels.ACTIVATIONS)
        self.fan_in, self.fan_out = fan_in, fan_out
        self.activation, self.alpha = activation, float(alpha)
        self.init = initializers.get(init, activation)

    def config(self):
        return {"fan_in": self.fan_in, "fan_out": self.fan_out, "activation": self.activation,
                "alpha": self.alpha, "init": self.init.config()}

    def build(self, backend, dtype, rng):
        super().build(backend, dtype, rng)
        W, b = self.init(rng, self.fan_in, self.fan_out)
        self.params = {"W": backend.asarray(W, dtype=backend.dtype(dtype)),
                       "b": backend.asarray(b, dtype=backend.dtype(dtype))}

    def forward(self, x, training=False):
        W, b = self.params["W"], self.params["b"]
        z, a = self.backend.dense_forward(x, W, b, self.activation, self.alpha)

        def backward(grad_a, need_grad_x=True):
            # grad_a is ∂C/∂a: from the loss at the output layer (BP1), from the
            # layer above otherwise (BP2); the kernel multiplies it by σ'(z) to get δ,
            # then returns δ Wᵀ (BP2) and stores ∂C/∂b = δ (BP3), ∂C/∂W = xᵀ δ (BP4).
            grad_x, self.grads["W"], self.grads["b"] = self.backend.dense_backward(
                grad_a, x, W, z, a, self.activation, self.alpha, need_grad_x=need_grad_x)
            return grad_x

        backward.saved = {"x": x, "z": z, "a": a}
        return a, backward


class Dropout(Layer):
    """Inverted dropout: in training, zero each input with probability p and scale the rest by 1/(1-p)."""

    def __init__(self, p=0.5):
        super().__init__()
        if not (isinstance(p, numbers.Real) and not isinstance(p, bool) and 0.0 <= p < 1.0):
            raise ConfigError(f"Dropout p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = None

    def config(self):
        return {"p": self.p}

    def build(self, backend, dtype, rng):
        super().build(backend, dtype, rng)
        self.rng = backend.rng(int(rng.integers(2**63)))

    def seed(self, seed):
        """Restart the mask generator from ``seed`` (fit(seed=) calls this)."""
        self.rng = self.backend.rng(seed)

    def forward(self, x, training=False):
        if not training or self.p == 0.0:
            return x, lambda grad_y, need_grad_x=True: grad_y
        mask = self.backend.dropout_mask(self.rng, x.shape, self.p, x.dtype)
        return x * mask, lambda grad_y, need_grad_x=True: grad_y * mask


LAYERS = {"Dense": Dense, "Dropout": Dropout}
