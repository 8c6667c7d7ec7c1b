"""Weight initialisers, drawn on the host from ``numpy.random.default_rng(seed)``.

Drawing on the host and then moving to the device gives the same network for
one seed on every backend. An initialiser returns ``(W, b)`` as float64
NumPy arrays; W has shape (fan_in, fan_out).
"""
import numpy as np

from . import kernels
from .errors import ConfigError, lookup


class Initializer:
    """Draws W from ``sample`` and sets b to zero."""

    name: str | None = None

    def __call__(self, rng, fan_in, fan_out):
        return self.sample(rng, fan_in, fan_out), np.zeros(fan_out)

    def config(self):
        return self.name

    def __repr__(self):
        return f"{type(self).__name__}()"


class He(Initializer):
    """Normal with std √(2/fan_in): keeps the variance of ReLU layers (He et al., 2015)."""

    name = "he"

    def sample(self, rng, fan_in, fan_out):
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out))


class HeUniform(Initializer):
    """Uniform in ±√(6/fan_in)."""

    name = "he_uniform"

    def sample(self, rng, fan_in, fan_out):
        limit = np.sqrt(6.0 / fan_in)
        return rng.uniform(-limit, limit, (fan_in, fan_out))


class Xavier(Initializer):
    """Normal with std √(2/(fan_in+fan_out)) (Glorot & Bengio, 2010), for sigmoid and tanh."""

    name = "xavier"

    def sample(self, rng, fan_in, fan_out):
        return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), (fan_in, fan_out))


class XavierUniform(Initializer):
    """Uniform in ±√(6/(fan_in+fan_out))."""

    name = "xavier_uniform"

    def sample(self, rng, fan_in, fan_out):
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out))


class Zeros(Initializer):
    """All zeros (a network that cannot break symmetry; for experiments)."""

    name = "zeros"

    def sample(self, rng, fan_in, fan_out):
        return np.zeros((fan_in, fan_out))


class Uniform(Initializer):
    """W and b uniform in [low, high): the articles' ``Uniform(0, 1)``.

    >>> W, b = Uniform(0, 1)(np.random.default_rng(0), 2, 2)
    """

    def __init__(self, low=0.0, high=1.0):
        if not low < high:
            raise ConfigError(f"Uniform needs low < high, got low={low!r}, high={high!r}")
        self.low, self.high = float(low), float(high)

    def __call__(self, rng, fan_in, fan_out):
        W = rng.uniform(self.low, self.high, (fan_in, fan_out))
        return W, rng.uniform(self.low, self.high, fan_out)

    def config(self):
        return {"uniform": [self.low, self.high]}

    def __repr__(self):
        return f"Uniform({self.low}, {self.high})"


class GlorotBias(Initializer):
    """W and b uniform in ±√(factor/(fan_in + fan_out)): scikit-learn's MLP initialisation (factor 6, or 2 for
    logistic units), biases included.

    >>> W, b = GlorotBias()(np.random.default_rng(0), 3, 2)
    >>> bool(abs(b).max() <= np.sqrt(6 / 5))
    True
    """

    name = "glorot_bias"

    def __init__(self, factor=6.0):
        if not (isinstance(factor, (int, float)) and factor > 0):
            raise ConfigError(f"GlorotBias factor must be a positive number, got {factor!r}")
        self.factor = float(factor)

    def __call__(self, rng, fan_in, fan_out):
        bound = np.sqrt(self.factor / (fan_in + fan_out))
        return rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)

    def config(self):
        return {"glorot_bias": self.factor}

    def __repr__(self):
        return f"GlorotBias({self.factor})"


INITIALIZERS = {c.name: c for c in (He, HeUniform, Xavier, XavierUniform, Zeros, GlorotBias)}


def get(init, activation="identity"):
    """An Initializer from a name, ``"auto"`` (He for the ReLU family, Xavier otherwise), a config or an instance."""
    if isinstance(init, Initializer):
        return init
    if init == "auto":
        init = "he" if activation in kernels.RELU_FAMILY else "xavier"
    if isinstance(init, dict) and list(init) == ["uniform"]:
        return Uniform(*init["uniform"])
    if isinstance(init, dict) and list(init) == ["glorot_bias"]:
        return GlorotBias(init["glorot_bias"])
    return lookup("initializer", init, INITIALIZERS)()
