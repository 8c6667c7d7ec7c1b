"""xpnet: neural networks with backpropagation written by hand, on NumPy, numba, CuPy or any Array API namespace.

>>> import xpnet as xn
>>> X, y = xn.datasets.xor()
>>> net = xn.MLP([2, 2, 1], activation="sigmoid", output_activation="sigmoid", init=xn.init.Uniform(0, 1), seed=0)
>>> step = net.compile("mse", xn.optim.SGD(lr=1.0))
>>> step.repeat(X, y, 5000) < 0.01
True
"""
__version__ = "0.2.0.dev0"

from . import backends, callbacks, datasets, distributed, errors, init, layers, losses, models, optim  # noqa: E402
from . import schedules  # noqa: E402
from .backends import get_backend, use  # noqa: E402
from .backends.base import to_dlpack  # noqa: E402
from .gradients import backprop, finite_difference, gradcheck  # noqa: E402
from .network import MLP, Sequential, load  # noqa: E402
from .perceptron import Perceptron  # noqa: E402
from .pytorch import from_torch  # noqa: E402
from .trace import trace  # noqa: E402
from .callbacks import EarlyStopping  # noqa: E402
from .training import History  # noqa: E402

__all__ = ["MLP", "Sequential", "Perceptron", "EarlyStopping", "History", "backends", "backprop", "callbacks",
           "datasets", "distributed", "errors", "finite_difference", "from_torch", "get_backend", "gradcheck", "init",
           "layers", "load", "losses", "models", "optim", "schedules", "to_dlpack", "trace", "use", "__version__"]
