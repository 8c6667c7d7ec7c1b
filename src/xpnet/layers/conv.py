"""Conv1D and Conv2D: cross-correlation of (N, C, L) or (N, C, H, W) inputs with learned kernels, via im2col.

A 1-D convolution is computed as a 2-D one of height 1, so both share one forward and one backward pass.
"""
import math
import numbers

from .. import init as initializers
from .. import kernels
from ..backends.base import conv_output_shape
from ..errors import ConfigError, ShapeError, lookup
from .base import Layer, register


def window_pair(layer, name, value, ndim, low):
    """``value`` (an int, or one int per spatial axis) as a (height, width) pair; 1-D layers get height 1."""
    values = (value,) * ndim if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    if not (isinstance(values, (tuple, list)) and len(values) == ndim
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low for v in values)):
        kind = "a positive integer" if low else "a non-negative integer"
        raise ConfigError(f"{layer} {name} must be {kind}" + (" or a pair of them" if ndim == 2 else "") +
                          f", got {value!r}")
    values = tuple(int(v) for v in values)
    return values if ndim == 2 else (0 if name == "padding" else 1, *values)


def as_config(pair, ndim):
    """A (height, width) pair as the user writes it: an int for 1-D layers, a list for 2-D."""
    return pair[1] if ndim == 1 else list(pair)


def check_input(layer, input_shape, ndim, kernel_size, stride, padding, dilation):
    """ShapeError unless samples are (C, L) / (C, H, W) and the window fits; returns (oh, ow)."""
    names = "(channels, length)" if ndim == 1 else "(channels, height, width)"
    if len(input_shape) != ndim + 1:
        raise ShapeError(f"{layer} takes samples of shape {names}, got {input_shape} "
                         f"({len(input_shape)}-D; {ndim + 1}-D expected)")
    spatial = (1, *input_shape[1:]) if ndim == 1 else tuple(input_shape[1:])
    out = conv_output_shape(spatial, kernel_size, stride, padding, dilation)
    if min(out) < 1:
        span = tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))[2 - ndim:]
        raise ShapeError(f"{layer}: a window spanning {span} does not fit in the input {input_shape[1:]} "
                         f"with padding {padding[2 - ndim:]}")
    return out


@register
class Conv2D(Layer):
    """A 2-D convolution: z[n, o] = b[o] + Σ_c W[o, c] ⋆ x[n, c], a = σ(z); W is (C_out, C_in, kh, kw) as PyTorch's.

    Computed as one matrix product: cols = im2col(x) holds every receptive field
    as a column (C_in·kh·kw rows, N·oh·ow columns), so Z = W₂ cols + b with W₂ =
    W reshaped to (C_out, C_in·kh·kw): a Dense layer applied at every position.

    Backward, with δ = ∂C/∂z: δ = ∂C/∂a ⊙ σ'(z) (BP1/BP2), ∂C/∂b = Σ_{n,i,j} δ (BP3),
    ∂C/∂W₂ = δ₂ colsᵀ (BP4, δ₂ = δ as (C_out, N·oh·ow)), ∂C/∂x = col2im(W₂ᵀ δ₂)
    (BP2: every window's share added back where im2col read it).

    >>> layer = Conv2D(6, 5, padding=2, activation="relu")
    """

    param_names = ("W", "b")
    ndim = 2

    def __init__(self, out_channels, kernel_size, stride=1, padding=0, dilation=1, activation="identity",
                 alpha=0.01, init="auto", in_channels=None):
        super().__init__()
        name = type(self).__name__
        for arg, value in (("out_channels", out_channels), ("in_channels", in_channels)):
            if (value is not None or arg == "out_channels") and \
                    (not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{name} {arg} must be a positive integer, got {value!r}")
        self.out_channels, self.in_channels = int(out_channels), in_channels
        self.kernel_size = window_pair(name, "kernel_size", kernel_size, self.ndim, 1)
        self.stride = window_pair(name, "stride", stride, self.ndim, 1)
        self.padding = window_pair(name, "padding", padding, self.ndim, 0)
        self.dilation = window_pair(name, "dilation", dilation, self.ndim, 1)
        span = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))
        if any(p >= k for p, k in zip(self.padding, span)):
            raise ConfigError(f"{name} padding {padding!r} must be smaller than the kernel's span "
                              f"{span[2 - self.ndim:]} (kernel_size {kernel_size!r}, dilation {dilation!r}): "
                              f"a window of padding alone sees no input")
        lookup("activation", activation, kernels.ACTIVATIONS)
        self.activation, self.alpha = activation, float(alpha)
        self.init = initializers.get(init, activation)

    def config(self):
        return {"out_channels": self.out_channels, "kernel_size": as_config(self.kernel_size, self.ndim),
                "stride": as_config(self.stride, self.ndim), "padding": as_config(self.padding, self.ndim),
                "dilation": as_config(self.dilation, self.ndim), "activation": self.activation, "alpha": self.alpha,
                "init": self.init.config(), "in_channels": self.in_channels}

    def build(self, input_shape, rng):
        name = type(self).__name__
        out = check_input(name, input_shape, self.ndim, self.kernel_size, self.stride, self.padding, self.dilation)
        if self.in_channels is not None and input_shape[0] != self.in_channels:
            raise ShapeError(f"{name} expects {self.in_channels} input channels (in_channels), got input shape "
                             f"{input_shape}")
        self.in_channels = input_shape[0]
        fan_in = self.in_channels * math.prod(self.kernel_size)
        W, b = self.init(rng, fan_in, self.out_channels)  # W (fan_in, C_out): as Dense's, one column per filter
        self.add_param("W", W.T.reshape(self.out_channels, self.in_channels, *self.kernel_size[2 - self.ndim:]))
        self.add_param("b", b)
        return (self.out_channels, *out[2 - self.ndim:])

    def forward(self, x, training=False):
        backend, xp = self.backend, self.xp
        W, b = self.params["W"], self.params["b"]
        n, c_out = x.shape[0], self.out_channels
        x4 = xp.reshape(x, (n, x.shape[1], 1, x.shape[2])) if self.ndim == 1 else x
        window = (self.kernel_size, self.stride, self.padding, self.dilation)
        cols = backend.im2col(x4, *window)  # (C_in·kh·kw, N·oh·ow): every receptive field a column
        W2 = xp.reshape(W, (c_out, -1))
        z3, a3 = backend.conv_activation(backend.matmul(W2, cols), b, n, self.activation, self.alpha)  # W₂ cols + b
        out_shape = (n, *self.output_shape)
        z, a = xp.reshape(z3, out_shape), xp.reshape(a3, out_shape)  # (N, C_out, oh·ow) → (N, C_out, oh, ow)
        saved = {"x": x, "z": z, "a": a}  # what xn.trace shows

        def backward(grad_a, need_grad_x=True):
            # BP1/BP2: δ = ∂C/∂a ⊙ σ'(z), as δ₂ (C_out, N·oh·ow); BP3: ∂C/∂b = δ summed over samples and positions
            delta2, self.grads["b"] = backend.conv_delta(xp.reshape(grad_a, (n, c_out, -1)), z3, a3, self.activation,
                                                         self.alpha)
            saved["delta"] = xp.reshape(xp.permute_dims(xp.reshape(delta2, (c_out, n, -1)), (1, 0, 2)), out_shape)
            self.grads["W"] = xp.reshape(backend.matmul(delta2, xp.matrix_transpose(cols)), W.shape)  # BP4
            if not need_grad_x:
                return None
            grad_x = backend.col2im(backend.matmul(xp.matrix_transpose(W2), delta2), x4.shape, *window)  # BP2
            return xp.reshape(grad_x, x.shape)

        backward.saved = saved
        return a, backward


@register
class Conv1D(Conv2D):
    """A 1-D convolution over (N, C, L): z[n, o] = b[o] + Σ_c W[o, c] ⋆ x[n, c], W (C_out, C_in, k).

    The same im2col equations as Conv2D, on inputs of height 1 (see Conv2D for forward and backward).

    >>> layer = Conv1D(25, 3, stride=2, padding=1, activation="relu")
    """

    ndim = 1
