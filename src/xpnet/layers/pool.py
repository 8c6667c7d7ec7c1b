"""Pooling: MaxPool1D/2D and AvgPool1D/2D over windows, GlobalAvgPool over every spatial position.

As the convolutions, the 1-D layers run the 2-D kernels on inputs of height 1.
"""
from ..errors import ConfigError, ShapeError
from .base import Layer, register
from .conv import as_config, check_input, window_pair


class _Pool(Layer):
    """What max and average pooling share: the window arguments, their checks, the output shape."""

    ndim = 2

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = window_pair(name, "kernel_size", kernel_size, self.ndim, 1)
        self.stride = self.kernel_size if stride is None else window_pair(name, "stride", stride, self.ndim, 1)
        self.padding = window_pair(name, "padding", padding, self.ndim, 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size)):
            raise ConfigError(f"{name} padding {padding!r} must be at most half of kernel_size {kernel_size!r} "
                              f"(as in PyTorch): a window of more padding than input sees no input")

    def config(self):
        return {"kernel_size": as_config(self.kernel_size, self.ndim), "stride": as_config(self.stride, self.ndim),
                "padding": as_config(self.padding, self.ndim)}

    def build(self, input_shape, rng):
        out = check_input(type(self).__name__, input_shape, self.ndim, self.kernel_size, self.stride, self.padding,
                          (1, 1))
        return (input_shape[0], *out[2 - self.ndim:])

    def as_2d(self, x):
        """(N, C, L) → (N, C, 1, L) for the 2-D kernels; 2-D inputs as they are."""
        return self.xp.reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2])) if self.ndim == 1 else x


@register
class MaxPool2D(_Pool):
    """y = the largest x in each window (padding counts as −∞); stride defaults to kernel_size.

    Backward: ∂C/∂x = ∂C/∂y at the position of each window's maximum, 0 elsewhere
    (summed where windows overlap): the max passes its gradient to its winner only.
    """

    def forward(self, x, training=False):
        x4, window = self.as_2d(x), (self.kernel_size, self.stride, self.padding)
        y, argmax = self.backend.max_pool(x4, *window)

        def backward(grad_y, need_grad_x=True):
            grad_y = self.xp.reshape(grad_y, y.shape)
            return self.xp.reshape(self.backend.max_pool_backward(grad_y, argmax, x4.shape, *window), x.shape)

        return self.xp.reshape(y, (x.shape[0], *self.output_shape)), backward


@register
class MaxPool1D(MaxPool2D):
    """Max pooling over (N, C, L) windows of kernel_size (see MaxPool2D for the equations)."""

    ndim = 1


@register
class AvgPool2D(_Pool):
    """y = the mean of each window of kh·kw inputs, padding counted as zeros (PyTorch's default).

    Backward: ∂C/∂x = Σ over the windows holding x of ∂C/∂y / (kh·kw).
    """

    def forward(self, x, training=False):
        x4, window = self.as_2d(x), (self.kernel_size, self.stride, self.padding)
        y = self.backend.avg_pool(x4, *window)

        def backward(grad_y, need_grad_x=True):
            grad_y = self.xp.reshape(grad_y, y.shape)
            return self.xp.reshape(self.backend.avg_pool_backward(grad_y, x4.shape, *window), x.shape)

        return self.xp.reshape(y, (x.shape[0], *self.output_shape)), backward


@register
class AvgPool1D(AvgPool2D):
    """Average pooling over (N, C, L) windows of kernel_size (see AvgPool2D for the equations)."""

    ndim = 1


@register
class GlobalAvgPool(Layer):
    """(N, C, ...) → (N, C): y[n, c] = the mean of x[n, c] over its S spatial positions.

    Backward: ∂C/∂x[n, c, s] = ∂C/∂y[n, c] / S at every position s.
    """

    def build(self, input_shape, rng):
        if len(input_shape) < 2:
            raise ShapeError(f"GlobalAvgPool takes samples of shape (channels, ...spatial), got {input_shape}")
        return input_shape[:1]

    def forward(self, x, training=False):
        xp, shape = self.xp, x.shape
        flat = xp.reshape(x, (shape[0], shape[1], -1))
        positions = flat.shape[2]

        def backward(grad_y, need_grad_x=True):
            spread = xp.reshape(grad_y / positions, (shape[0], shape[1], 1))
            return xp.reshape(xp.broadcast_to(spread, flat.shape), shape)

        return xp.mean(flat, axis=2), backward
