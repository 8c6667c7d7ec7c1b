"""The registry: available(), use() as setter and context manager, XPNET_BACKEND, auto, and readable failures."""
import inspect
import os
import platform
import re
import subprocess
import sys

import numpy as np
import pytest

import xpnet as xn
from xpnet.backends import REGISTRY, Backend, numpy_backend


def test_available_lists_numpy_and_only_usable_backends():
    names = xn.backends.available()
    assert names[0] == "numpy"
    for name in REGISTRY:
        assert (name in names) == (xn.backends.unavailable_reason(name) is None)


def test_use_sets_the_default_and_restores_it_as_a_context_manager():
    assert xn.get_backend().name == "numpy"
    with xn.use("array_api_strict") as backend:
        assert xn.get_backend() is backend and backend.name == "array_api_strict"
        assert xn.MLP([2, 1]).backend is backend
    assert xn.get_backend().name == "numpy"
    xn.use("array_api_strict")
    assert xn.get_backend().name == "array_api_strict"  # the conftest fixture restores numpy afterwards


def test_environment_variable_picks_the_default(monkeypatch):
    with xn.use("numpy"):
        pass
    import xpnet.backends as registry

    monkeypatch.setattr(registry, "_default", None)
    monkeypatch.setenv("XPNET_BACKEND", "array_api_strict")
    assert xn.get_backend().name == "array_api_strict"
    monkeypatch.setenv("XPNET_BACKEND", "auto")
    assert xn.get_backend().name == xn.backends.resolve("auto")


def test_auto_prefers_cupy_then_numba_then_numpy():
    usable = xn.backends.available()
    expected = next(name for name in ("cupy", "numba", "numpy") if name in usable)
    assert xn.backends.resolve("auto") == expected
    assert xn.get_backend("auto").name == expected


def test_unknown_backend_name_suggests_the_closest():
    with pytest.raises(xn.errors.ConfigError, match="Did you mean 'numba'"):
        xn.use("numbaa")


def test_unusable_backend_says_why_and_how_to_install(monkeypatch):
    import xpnet.backends as registry

    monkeypatch.setitem(registry._probes, "cupy", "CuPy is not installed")
    with pytest.raises(xn.errors.BackendUnavailableError) as info:
        xn.use("cupy")
    assert "CuPy is not installed" in str(info.value) and "pip install -e '.[cuda13]'" in str(info.value)
    assert isinstance(info.value, ImportError)
    assert "cupy" not in xn.backends.available()


def test_backend_instances_are_shared_and_options_make_new_ones():
    assert xn.get_backend("numpy") is xn.get_backend("numpy")
    strict = xn.get_backend("array_api_strict", device="device2")
    assert strict.device == __import__("array_api_strict").Device("device2")
    assert strict is not xn.get_backend("array_api_strict")


def test_any_array_api_module_can_be_a_backend():
    strict = pytest.importorskip("array_api_strict")
    backend = xn.get_backend(strict)
    assert backend.xp is strict
    net = xn.MLP([2, 3, 1], backend=backend)
    assert net.predict(np.zeros((1, 2))).shape == (1, 1)


def test_describe_reports_every_backend():
    rows = {row["name"]: row for row in xn.backends.describe()}
    assert set(rows) == set(REGISTRY)
    assert rows["numpy"]["usable"] and rows["numpy"]["device"] == "cpu"
    for row in rows.values():
        assert row["usable"] or row["reason"]


def all_backend_classes():
    classes = []
    for name in REGISTRY:
        if xn.backends.unavailable_reason(name) is None:
            classes.append(type(xn.get_backend(name)))
    return set(classes)


def test_every_override_keeps_the_base_signature():
    for cls in all_backend_classes():
        for name, member in vars(cls).items():
            base = getattr(Backend, name, None)
            if name.startswith("_") or not callable(member) or not callable(base):
                continue
            assert inspect.signature(member) == inspect.signature(base), f"{cls.__name__}.{name}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_numpy_activations_keep_the_base_values_on_special_inputs(activation, dtype):
    """The NumPy backend's own ReLU (two passes) gives the base formula's values, bit for bit: NaN where the
    base has NaN (−inf, NaN), the same signed zeros."""
    z = np.array([-np.inf, -2.0, -0.0, 0.0, 1e-30, 1.5, np.inf, np.nan], dtype=dtype)
    grad = np.array([1.0, np.inf, -np.inf, np.nan, 2.0, -1.0, 3.0, 4.0], dtype=dtype)
    numpy, base = xn.get_backend("numpy"), Backend(np, device="cpu")
    with np.errstate(invalid="ignore", over="ignore"):  # 0·inf, as in the base formula
        a = base.activation(z, activation, 0.0)
        got = [numpy.activation(z, activation, 0.0), numpy.activation_backward(grad, z, a, activation, 0.0)]
        want = [a, base.activation_backward(grad, z, a, activation, 0.0)]
    for g, w in zip(got, want):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(np.signbit(g), np.signbit(w))


def test_backward_kernels_take_grad_out_first():
    for name, member in vars(Backend).items():
        if name.endswith("_backward"):
            params = list(inspect.signature(member).parameters)
            assert params[1].startswith("grad_"), f"{name}{params}"


def test_arrays_from_another_backend_are_refused_unless_shared_on_the_same_device(backend):
    from conftest import make_backend
    from fakecupy import ForeignGPUArray

    other = make_backend("torch" if backend.name == "array_api_strict" else "array_api_strict", {})
    net = xn.MLP([2, 1], backend=backend)
    if backend.dlpack_device == (1, 0):  # a host backend shares any CPU array through DLPack
        assert net.predict(other.asarray(np.zeros((3, 2)))).shape == (3, 1)
        with pytest.raises(xn.errors.DeviceError, match=r"got fakecupy.ForeignGPUArray on cuda:0; arrays shared "
                                                        r"through DLPack must be on cpu"):
            net.predict(ForeignGPUArray(np.zeros((3, 2))))
        return
    with pytest.raises(xn.errors.DeviceError, match="expected a NumPy array or an array of backend"):
        backend.asarray(other.asarray(np.zeros((2, 2))))
    with pytest.raises(xn.errors.DeviceError):
        net.predict(other.asarray(np.zeros((3, 2))))


def test_array_on_another_device_is_refused():
    strict = pytest.importorskip("array_api_strict")
    on2 = xn.get_backend("array_api_strict", device="device2")
    on1 = xn.get_backend("array_api_strict", device="device1")
    with pytest.raises(xn.errors.DeviceError, match="device2"):
        on1.asarray(on2.asarray(np.zeros(2)))
    assert strict  # imported for the skip


@pytest.mark.skipif(numpy_backend.numpy_openblas() is None, reason="NumPy is not the wheel with scipy-openblas")
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the kernel names are x86-64's")
def test_reports_name_the_kernels_openblas_runs_and_why():
    """OpenBLAS picks its kernels at load, from the CPU or from OPENBLAS_CORETYPE; reports say which."""
    show = "from xpnet.backends.numpy_backend import blas_name; print(blas_name())"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    own = subprocess.run([sys.executable, "-c", show], env=env, capture_output=True, text=True, check=True).stdout
    forced = subprocess.run([sys.executable, "-c", show], env=dict(env, OPENBLAS_CORETYPE="Haswell"),
                            capture_output=True, text=True, check=True).stdout
    assert re.search(r"\(\w+ kernels\)$", own.strip()), own
    assert forced.strip().endswith("(Haswell kernels, from OPENBLAS_CORETYPE)"), forced
