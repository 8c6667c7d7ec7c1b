"""Backend parametrisation shared by the whole suite.

Every test that takes the ``backend`` fixture runs once per backend: NumPy,
array-api-strict on a fake non-default device (so an array created without
``device=`` fails loudly), torch CPU tensors, numba, and CuPy on a real GPU
(marked ``gpu``). A backend that cannot run here is skipped with the reason
the registry gives.
"""

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
IDS = [name for name, _ in BACKENDS]
PARAMS = [pytest.param(b, marks=pytest.mark.gpu) if b[0] == "cupy" else b for b in BACKENDS]


def make_backend(name, options):
    reason = xn.backends.unavailable_reason(name)
    if reason is not None:
        pytest.skip(f"backend {name} unavailable: {reason}")
    return xn.get_backend(name, **options)


@pytest.fixture(params=PARAMS, ids=IDS)
def backend(request):
    """Each backend in turn (skipped, with the reason, where it cannot run)."""
    return make_backend(*request.param)


@pytest.fixture(autouse=True)
def _default_backend(monkeypatch):
    """Tests start from the numpy default and no $XPNET_BACKEND, and leave no default behind."""
    monkeypatch.delenv("XPNET_BACKEND", raising=False)
    with xn.use("numpy"):
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


