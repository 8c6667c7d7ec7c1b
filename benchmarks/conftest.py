"""pytest-benchmark suites, parametrised by backend.

Timed, at full sizes (compare backends with --benchmark-group-by)::

    python -m pytest benchmarks --bench-size=full --benchmark-group-by=param:backend

Everywhere else (``python -m pytest``, CI) they are a smoke test: tiny sizes,
each benchmarked function run once and not timed (as with
``--benchmark-disable``), so a broken benchmark fails fast. ``--benchmark-enable``
times the tiny sizes; XPNET_BENCH_SIZE=full sets the default of --bench-size.
"""
import importlib.util
import os

import pytest

import xpnet as xn
from xpnet.bench import scaling

BACKENDS = ("numpy", "numba", "cupy")  # array_api_strict is a correctness tool; torch tensors: see test_steps
if importlib.util.find_spec("pytest_benchmark") is None:
    collect_ignore_glob = ["test_*.py"]  # pip install pytest-benchmark (in the dev extra)


def pytest_addoption(parser):
    parser.addoption("--bench-size", choices=("tiny", "full"), default=os.environ.get("XPNET_BENCH_SIZE", "tiny"),
                     help="xpnet benchmarks: 'full' sizes, timed; 'tiny' (default) runs each once as a smoke test")


def full_size(config):
    return config.getoption("--bench-size") == "full"


def pytest_collection_modifyitems(config, items):
    """Timed runs at full size last as long as they need: no per-test timeout (pyproject.toml sets 300 s)."""
    if full_size(config) and config.pluginmanager.hasplugin("timeout"):
        for item in items:
            item.add_marker(pytest.mark.timeout(0))


def pytest_generate_tests(metafunc):
    """Sizes depend on --bench-size: the scaling suite's networks and the step suite's cases."""
    full = full_size(metafunc.config)
    if "layers" in metafunc.fixturenames:
        sizes = scaling.SIZES[:6] if full else scaling.SIZES[:2]
        metafunc.parametrize("layers", sizes, ids=[f"P{scaling.param_count(s)}" for s in sizes])
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", ["tiny", "small", "medium"] if full else ["tiny", "small"])


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each xpnet backend worth timing (skipped, with the reason, where it cannot run)."""
    reason = xn.backends.unavailable_reason(request.param)
    if reason is not None:
        pytest.skip(f"backend {request.param} unavailable: {reason}")
    return request.param


@pytest.fixture
def full(request):
    return full_size(request.config)


@pytest.fixture
def benchmark(benchmark, request):
    """pytest-benchmark's fixture, untimed (one call) at tiny sizes unless --benchmark-enable or --benchmark-only."""
    config = request.config
    if not full_size(config) and not (config.getoption("benchmark_enable") or config.getoption("benchmark_only")):
        benchmark.disabled = True
    return benchmark
