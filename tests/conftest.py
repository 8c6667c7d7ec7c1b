"""Backend parametrisation shared by the whole suite.

Every test that takes the ``backend`` fixture runs once per backend: NumPy,
array-api-strict on a fake non-default device (so an array created without
``device=`` fails loudly), torch CPU tensors, numba, and CuPy on a real GPU
(marked ``gpu``). A backend that cannot run here is skipped with the reason
the registry gives.

``XPNET_TEST_BACKENDS=cupy`` (a comma-separated list) limits the fixture to
those backends: benchmarks/gpu_check.sh runs the core suite on CuPy alone that
way. Every ``gpu`` test gets GPU_TEST_TIMEOUT seconds (SIGALRM, where the
platform has it): a hung kernel must not eat a GPU machine's time.
"""
import os
import signal

import numpy as np
import pytest

import xpnet as xn

BACKENDS = [
    ("numpy", {}),
    ("numba", {}),
    ("array_api_strict", {"device": "device1"}),
    ("torch", {}),
    ("cupy", {}),
]
GPU_TEST_TIMEOUT = 120


def chosen_backends(setting):
    """The BACKENDS that ``setting`` ($XPNET_TEST_BACKENDS: comma-separated names; empty: all) names."""
    names = [n.strip() for n in setting.split(",") if n.strip()]
    unknown = sorted(set(names) - {name for name, _ in BACKENDS})
    if unknown:
        raise pytest.UsageError(f"XPNET_TEST_BACKENDS names unknown backend(s) {unknown}; "
                                f"known: {', '.join(name for name, _ in BACKENDS)}")
    return [b for b in BACKENDS if not names or b[0] in names]


SELECTED = chosen_backends(os.environ.get("XPNET_TEST_BACKENDS", ""))
IDS = [name for name, _ in SELECTED]
PARAMS = [pytest.param(b, marks=pytest.mark.gpu) if b[0] == "cupy" else b for b in SELECTED]


def make_backend(name, options):
    reason = xn.backends.unavailable_reason(name)
    if reason is not None:
        pytest.skip(f"backend {name} unavailable: {reason}")
    return xn.get_backend(name, **options)


@pytest.fixture(params=PARAMS, ids=IDS)
def backend(request):
    """Each backend in turn (skipped, with the reason, where it cannot run)."""
    return make_backend(*request.param)


@pytest.hookimpl(hookwrapper=True)  # the old-style wrapper: a GPU machine's pytest may predate wrapper=True
def pytest_runtest_call(item):
    """Fail a ``gpu`` test that runs longer than GPU_TEST_TIMEOUT seconds, instead of letting it hang."""
    if item.get_closest_marker("gpu") is None or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):
        raise TimeoutError(f"{item.nodeid} ran longer than {GPU_TEST_TIMEOUT} s (tests/conftest.py GPU_TEST_TIMEOUT)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(GPU_TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(autouse=True)
def _default_backend(monkeypatch):
    """Tests start from the numpy default and no $XPNET_BACKEND, and leave no default behind."""
    monkeypatch.delenv("XPNET_BACKEND", raising=False)
    with xn.use("numpy"):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


