"""Dropout: in training, zero each input with probability p and scale the rest by 1/(1-p)."""
import numbers

import numpy as np

from ..errors import ConfigError
from .base import Layer, register


@register
class Dropout(Layer):
    """Inverted dropout: y = x ⊙ m / (1 − p) in training, m ~ Bernoulli(1 − p); y = x in inference.

    Backward: ∂C/∂x = ∂C/∂y ⊙ m / (1 − p), the same mask.
    """

    def __init__(self, p=0.5):
        super().__init__()
        if not (isinstance(p, numbers.Real) and not isinstance(p, bool) and 0.0 <= p < 1.0):
            raise ConfigError(f"Dropout p must be a number in [0, 1), got {p!r}")
        self.p = float(p)
        self.rng = None

    @property
    def stochastic(self):
        return self.p > 0.0

    def config(self):
        return {"p": self.p}

    def build(self, input_shape, rng):
        self.seed(int(rng.integers(2**63)))
        return input_shape

    def seed(self, seed):
        """Restart the mask generator from ``seed`` (fit(seed=) calls this)."""
        self.rng = np.random.default_rng(seed) if self.backend is None else self.backend.rng(seed, reuse=self.rng)

    def fused_op(self):
        return None if self.stochastic else ("identity",)

    def forward(self, x, training=False):
        if not training or self.p == 0.0:
            return x, lambda grad_y, need_grad_x=True: grad_y
        mask = self.backend.dropout_mask(self.rng, x.shape, self.p, x.dtype)
        return x * mask, lambda grad_y, need_grad_x=True: grad_y * mask
