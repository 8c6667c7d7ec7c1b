"""Time per gradient against parameter count: backprop and forward finite differences."""
import math

import numpy as np
import pytest

import xpnet as xn
from xpnet.bench import scaling


@pytest.mark.parametrize("method", list(scaling.METHODS))
def test_gradient(benchmark, backend, method, layers):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((scaling.BATCH, layers[0])), rng.standard_normal((scaling.BATCH, layers[-1]))
    net = xn.MLP(layers, activation="tanh", backend=backend)
    step = net.compile("mse", xn.optim.SGD(lr=1e-3), **scaling.METHODS[method])
    step.repeat(X, y, 1)  # a compiled step compiles here, outside the timing
    benchmark.extra_info["params"] = scaling.param_count(layers)
    assert math.isfinite(benchmark(step.repeat, X, y, 1))
