"""Flatten and Reshape: change how each sample's numbers are laid out; backward undoes it."""
import math

from ..errors import ConfigError, ShapeError
from .base import Layer, register


@register
class Flatten(Layer):
    """(N, d1, d2, ...) → (N, d1·d2·...): channels-first images to feature vectors, as torch.nn.Flatten."""

    def build(self, input_shape, rng):
        return (math.prod(input_shape),)

    def fused_op(self):
        return ("identity",) if len(self.input_shape or ()) == 1 else None

    def forward(self, x, training=False):
        xp, shape = self.xp, x.shape
        return xp.reshape(x, (shape[0], -1)), lambda grad_y, need_grad_x=True: xp.reshape(grad_y, shape)


@register
class Reshape(Layer):
    """Each sample to ``shape`` (one entry may be -1: whatever fits), e.g. Reshape((1, 28, 28)) after Dense(784)."""

    def __init__(self, shape):
        super().__init__()
        shape = (shape,) if isinstance(shape, int) else shape
        if not (isinstance(shape, (tuple, list)) and shape and all(isinstance(d, int) and not isinstance(d, bool)
                                                                    and (d >= 1 or d == -1) for d in shape)
                and list(shape).count(-1) <= 1):
            raise ConfigError(f"Reshape shape must be a tuple of positive integers (one may be -1), got {shape!r}")
        self.shape = tuple(shape)

    def config(self):
        return {"shape": list(self.shape)}

    def build(self, input_shape, rng):
        size, known = math.prod(input_shape), math.prod(d for d in self.shape if d != -1)
        if (-1 in self.shape and size % known) or (-1 not in self.shape and size != known):
            raise ShapeError(f"Reshape cannot turn samples of shape {input_shape} ({size} numbers) into {self.shape}")
        return tuple(size // known if d == -1 else d for d in self.shape)

    def forward(self, x, training=False):
        xp, shape = self.xp, x.shape
        y = xp.reshape(x, (shape[0], *self.output_shape))
        return y, lambda grad_y, need_grad_x=True: xp.reshape(grad_y, shape)
