"""The articles' XOR experiment: n full-batch iterations per call, backprop and finite differences."""
import math

import pytest

import xpnet as xn
from xpnet.bench import cbaseline, fd_vs_bp


@pytest.mark.parametrize("method", list(fd_vs_bp.METHODS))
def test_xor_iterations(benchmark, backend, method, full):
    X, y = xn.datasets.xor()
    step = fd_vs_bp.xor_net(backend).compile("mse", xn.optim.SGD(lr=1.0), **fd_vs_bp.METHODS[method])
    step.repeat(X, y, 1)  # a compiled step compiles here, outside the timing
    benchmark.extra_info["iterations_per_call"] = n = 1000 if full else 5
    loss = benchmark(step.repeat, X, y, n)
    assert math.isfinite(loss) and loss < 0.5


@pytest.mark.skipif(cbaseline.compiler() is None, reason="no C compiler (cc or $CC)")
@pytest.mark.parametrize("method", list(fd_vs_bp.METHODS))
@pytest.mark.parametrize("backend", [f"c-{p}" for p in cbaseline.PROGRAMS])  # "backend" for --benchmark-group-by
def test_c_baseline(benchmark, backend, method, full):
    """The C programs, process start included; extra_info holds the seconds they measured inside."""
    executable = cbaseline.build(backend[2:])
    weights = fd_vs_bp.xor_net("numpy").get_weights()
    n = 100_000 if full else 5
    seconds, mse = benchmark(cbaseline.run, executable, method, n, weights, fd_vs_bp.SIZES)
    benchmark.extra_info.update(iterations_per_call=n, seconds_inside=seconds)
    assert seconds >= 0 and 0 <= mse < 0.5
