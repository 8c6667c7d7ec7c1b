"""Dense: the fully connected layer, z = x W + b, a = σ(z), with its backward pass as BP1–BP4."""
from .. import init as initializers
from .. import kernels
from ..errors import ConfigError, ShapeError, lookup
from .base import Layer, register


@register
class Dense(Layer):
    """A fully connected layer: z = x W + b, a = σ(z), W of shape (fan_in, fan_out).

    ``Dense(fan_out)`` takes fan_in from the layer below; ``Dense(fan_in, fan_out)`` states it.

    Backward, with δ = ∂C/∂z: δ = ∂C/∂a ⊙ σ'(z) (BP1 at the output, BP2 below it),
    ∂C/∂b = Σₙ δ (BP3), ∂C/∂W = xᵀ δ (BP4), ∂C/∂x = δ Wᵀ (the product of BP2).

    >>> layer = Dense(2, 16, activation="relu")
    >>> layer = Dense(16, activation="relu")
    """

    param_names = ("W", "b")

    def __init__(self, fan_in=None, fan_out=None, activation="identity", alpha=0.01, init="auto"):
        super().__init__()
        if fan_out is None:
            fan_in, fan_out = None, fan_in
        for name, size in (("fan_in", fan_in), ("fan_out", fan_out)):
            if (size is not None or name == "fan_out") and \
                    (not isinstance(size, int) or isinstance(size, bool) or size < 1):
                raise ConfigError(f"Dense {name} must be a positive integer, got {size!r}")
        lookup("activation", activation, kernels.ACTIVATIONS)
        self.fan_in, self.fan_out = fan_in, fan_out
        self.activation, self.alpha = activation, float(alpha)
        self.init = initializers.get(init, activation)

    def config(self):
        return {"fan_in": self.fan_in, "fan_out": self.fan_out, "activation": self.activation,
                "alpha": self.alpha, "init": self.init.config()}

    def default_input_shape(self):
        return None if self.fan_in is None else (self.fan_in,)

    def build(self, input_shape, rng):
        if len(input_shape) != 1:
            raise ShapeError(f"Dense takes samples of shape (features,), got {input_shape}; "
                             f"put xn.layers.Flatten() before it")
        if self.fan_in is not None and input_shape[0] != self.fan_in:
            raise ShapeError(f"Dense expects {self.fan_in} input features (fan_in), got input shape {input_shape}")
        self.fan_in = input_shape[0]
        W, b = self.init(rng, self.fan_in, self.fan_out)
        self.add_param("W", W)
        self.add_param("b", b)
        return (self.fan_out,)

    def fused_op(self):
        return ("dense", self.activation, self.alpha)

    def forward(self, x, training=False):
        W, b = self.params["W"], self.params["b"]
        backend, xp = self.backend, self.xp
        z, a = backend.dense_forward(x, W, b, self.activation, self.alpha)  # z = x W + b, a = σ(z)
        saved = {"x": x, "z": z, "a": a}  # what xn.trace shows

        def backward(grad_a, need_grad_x=True):
            # grad_a = ∂C/∂a: from the loss at the output layer, from the layer above otherwise.
            delta = backend.activation_backward(grad_a, z, a, self.activation, self.alpha)  # BP1/BP2: ∂C/∂a ⊙ σ'(z)
            self.grads["b"] = xp.sum(delta, axis=0)  # BP3: ∂C/∂b = δ, summed over the batch
            self.grads["W"] = backend.matmul(xp.matrix_transpose(x), delta)  # BP4: ∂C/∂W = xᵀ δ
            saved["delta"] = delta
            return backend.matmul(delta, xp.matrix_transpose(W)) if need_grad_x else None  # BP2: δ Wᵀ

        backward.saved = saved  # a dict, not the closure itself: no reference cycle keeps W alive
        return a, backward
