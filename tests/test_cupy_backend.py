"""The CuPy backend's logic on a machine without a GPU, through the fake cupy in tests/fakecupy.py.

Probing, device selection, host-transfer rules, every kernel override (against
the base kernels and float64 finite differences), TF32, memory accounting,
checkpoints and whole fits. The CUDA C itself is checked in test_cuda_source.py.
test_cupy_gpu.py runs the tests here that take only ``gpu`` (and ``rng``) again on a real GPU.
"""
import sys
import weakref

import numpy as np
import pytest
import array_api_strict as strict

import xpnet as xn
from xpnet import checkpoint, cli, kernels
from xpnet.backends import Backend, cupy_backend

import fakecupy
import test_backends
import test_kernels
from checker import strided
from fakecupy import FakeCupy, fake_cupy, gpu, install  # noqa: F401 (fixtures)

ACTIVATIONS = list(kernels.ACTIVATIONS)


def base_on(backend):
    """The base Backend, plain xp, on the same namespace and device: the reference every override must match."""
    return Backend(backend.xp, device=backend.device)


def both(backend, a, dtype, layout="contiguous"):
    dt = backend.dtype(dtype)
    return backend.asarray(a, dtype=dt) if layout == "contiguous" else strided(backend, a, dt)


TOL = {"float32": dict(rtol=2e-6, atol=2e-6), "float64": dict(rtol=1e-12, atol=1e-13)}


# ---- probing and the registry ------------------------------------------------------------------

def test_probe_says_why_cupy_cannot_run(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert cupy_backend.probe() == "CuPy is not installed"
    install(monkeypatch, FakeCupy(available=False))
    assert "finds no usable CUDA GPU" in cupy_backend.probe()
    install(monkeypatch, FakeCupy(runtime_error="cudaErrorInsufficientDriver: CUDA driver version is insufficient"))
    assert cupy_backend.probe() == ("CuPy cannot use the GPU (CUDARuntimeError: cudaErrorInsufficientDriver: "
                                    "CUDA driver version is insufficient)")
    fake = install(monkeypatch, FakeCupy())

    def broken():
        raise RuntimeError("libcuda.so.1: cannot open shared object file")

    monkeypatch.setattr(fake.module.cuda, "is_available", broken)
    assert "libcuda.so.1" in cupy_backend.probe()
    for stage, target in (("compile and run a kernel (NVRTC)", "ElementwiseKernel"),
                          ("multiply matrices (cuBLAS)", "matmul")):
        fake = install(monkeypatch, FakeCupy())

        def fails(*args, **kwargs):
            raise RuntimeError("CUDA_ERROR_NOT_FOUND: library missing")

        monkeypatch.setattr(fake.module, target, fails)
        assert cupy_backend.probe() == f"CuPy cannot {stage} (RuntimeError: CUDA_ERROR_NOT_FOUND: library missing)"
    fake = install(monkeypatch, FakeCupy())
    monkeypatch.setattr(fake.module, "matmul", lambda a, b: a)
    assert cupy_backend.probe().startswith("the GPU computed a wrong matmul in the probe: [[1.0, 2.0], [3.0, 4.0]]")
    fake = install(monkeypatch, FakeCupy())
    assert cupy_backend.probe() is None
    assert fake.calls["kernel"] == fake.calls["matmul"] == 1  # a kernel really ran, and cuBLAS


def test_an_installed_cupy_without_a_gpu_is_left_out_and_explained(monkeypatch, capsys):
    install(monkeypatch, FakeCupy(available=False))
    assert "cupy" not in xn.backends.available()
    assert xn.backends.resolve("auto") != "cupy"
    with pytest.raises(xn.errors.BackendUnavailableError) as info:
        xn.use("cupy")
    assert "no usable CUDA GPU" in str(info.value) and "pip install 'xpnet[cuda13]'" in str(info.value)
    assert cli.main(["info"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.strip().startswith("cupy"))
    assert "no" in line and "no usable CUDA GPU" in line


def test_auto_picks_a_working_gpu_and_info_describes_it(fake_cupy):
    assert xn.backends.resolve("auto") == "cupy"
    backend = xn.get_backend("auto")
    assert backend.name == "cupy" and backend.device == strict.Device("device2")
    info = backend.info()
    assert info["device"] == "cuda:0 Fake GPU 0" and info["cupy"] == "13.6.0+fake" and info["cuda runtime"] == "12.8"
    row = next(r for r in xn.backends.describe() if r["name"] == "cupy")
    assert row["usable"] and row["device"] == "cuda:0 Fake GPU 0"


def test_overrides_keep_the_base_signatures(fake_cupy):
    assert cupy_backend.CupyBackend in test_backends.all_backend_classes()
    test_backends.test_every_override_keeps_the_base_signature()


# ---- devices and host transfers ------------------------------------------------------------------

def test_device_selection_and_mixing_devices(monkeypatch):
    fake = install(monkeypatch, FakeCupy(n_devices=2))
    on1 = xn.get_backend("cupy", device=1)
    net = xn.MLP([2, 3, 1], backend=on1)
    assert all(p.device == strict.Device("device1") for p in net.parameters())
    on0 = xn.get_backend("cupy", device=0)
    assert fake.current == 0
    net.predict(np.zeros((2, 2)))
    assert fake.current == 1  # data entering a backend makes its GPU current
    with pytest.raises(xn.errors.DeviceError, match="device1.*device2|device2.*device1"):
        on0.asarray(net.parameters()[0])
    with pytest.raises(xn.errors.ConfigError, match="from 0 to 1"):
        xn.get_backend("cupy", device=2)
    with pytest.raises(xn.errors.ConfigError, match="GPU index"):
        xn.get_backend("cupy", device="1")
    with pytest.raises(xn.errors.ConfigError, match="graphs"):
        xn.get_backend("cupy", graphs="yes")


def test_kernels_and_allocations_run_on_the_backends_gpu_whatever_is_current(monkeypatch, rng):
    fake = install(monkeypatch, FakeCupy(n_devices=2))
    on1 = xn.get_backend("cupy", device=1, graphs=False)
    x = on1.asarray(rng.standard_normal((4, 3)))
    fake.current = 0  # another backend, or the user, made GPU 0 current
    for made in (on1.xp.zeros((2,), device=on1.device), on1.xp.arange(3, device=on1.device), on1.zeros_like(x),
                 on1.activation(x, "tanh", 0.0), on1.matmul(x, on1.xp.matrix_transpose(x)),
                 on1.dropout_mask(on1.rng(0), (2, 2), 0.5, x.dtype)):
        assert made.device == on1.device
    assert fake.current == 0  # entered and left, not switched for good
    with pytest.raises(ValueError, match="current device"):  # the fake, as CuPy, launches on the current device
        fake.module.matmul(x, x)


def test_dropout_generators_are_built_once_per_layer_and_reseeded_in_place(gpu, fake_cupy):
    X, y = xn.datasets.spirals(n=64, seed=0)
    built = fake_cupy.calls["generator_built"]
    net = xn.MLP([2, 8, 8, 2], dropout=0.2, backend=gpu, seed=0)  # two Dropout layers
    assert fake_cupy.calls["generator_built"] == built + 2
    first = net.fit(X, y, loss="softmax_ce", epochs=4, progress=False, seed=5).history["loss"]
    assert fake_cupy.calls["generator_built"] == built + 2  # each epoch reseeds, builds nothing
    again = xn.MLP([2, 8, 8, 2], dropout=0.2, backend=gpu, seed=0)
    assert again.fit(X, y, loss="softmax_ce", epochs=4, progress=False, seed=5).history["loss"] == first
    net.to("numpy")
    assert isinstance(net.layers[1].rng, np.random.Generator)  # another backend's generator is not reused


def test_host_arrays_move_once_and_other_libraries_arrays_are_refused(gpu):
    X = gpu.asarray(np.ones((3, 2)), dtype=gpu.dtype("float32"))
    assert X.device == gpu.device and gpu.asarray(X) is X
    torch = pytest.importorskip("torch")
    with pytest.raises(xn.errors.DeviceError, match=r"backend 'cupy', got torch\.Tensor"):
        xn.MLP([2, 1], backend=gpu).predict(torch.zeros(3, 2))
    with pytest.raises(xn.errors.DeviceError, match=r"backend 'numpy', got array_api_strict"):
        xn.MLP([2, 1], backend="numpy").predict(X)


# ---- every override against the base kernel, and the shared kernel tests -----------------------

@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_layer_kernels_match_the_base_kernels(gpu, activation, dtype, layout, rng):
    base = base_on(gpu)
    x, W, b, g = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4), \
        rng.standard_normal((5, 4))
    x, W, b, g = (both(gpu, a, dtype, layout) for a in (x, W, b, g))
    z, a = gpu.dense_forward(x, W, b, activation, 0.02)
    z0, a0 = base.dense_forward(x, W, b, activation, 0.02)
    for got, want in ((z, z0), (a, a0), (gpu.activation(z0, activation, 0.02), a0),
                      (gpu.activation_backward(g, z0, a0, activation, 0.02),
                       base.activation_backward(g, z0, a0, activation, 0.02))):
        assert got.dtype == gpu.dtype(dtype) and got.device == gpu.device
        np.testing.assert_allclose(gpu.to_numpy(got), gpu.to_numpy(want), **TOL[dtype])
    np.testing.assert_allclose(gpu.to_numpy(gpu.matmul(x, W)), gpu.to_numpy(base.matmul(x, W)), **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_cross_entropy_matches_the_base_kernel(gpu, dtype, rng):
    z = both(gpu, rng.standard_normal((6, 4)) * 5, dtype)
    onehot = both(gpu, np.eye(4)[rng.integers(0, 4, 6)], dtype)
    loss, grad = gpu.loss_and_grad("softmax_ce", z, onehot)
    loss0, grad0 = base_on(gpu).loss_and_grad("softmax_ce", z, onehot)
    assert grad.dtype == gpu.dtype(dtype) and loss.shape == ()
    np.testing.assert_allclose(float(loss), float(loss0), **TOL[dtype])
    np.testing.assert_allclose(gpu.to_numpy(grad), gpu.to_numpy(grad0), **TOL[dtype])
    assert float(gpu.loss("softmax_ce", z, onehot)) == pytest.approx(float(loss0), rel=1e-6)


UPDATES = [("sgd", dict(momentum=0.0, nesterov=False, weight_decay=0.0)),
           ("sgd", dict(momentum=0.0, nesterov=False, weight_decay=0.05)),
           ("sgd", dict(momentum=0.9, nesterov=False, weight_decay=0.0)),
           ("sgd", dict(momentum=0.9, nesterov=True, weight_decay=0.05)),
           ("rmsprop", dict(rho=0.9, eps=1e-8, weight_decay=0.0)),
           ("rmsprop", dict(rho=0.9, eps=1e-8, weight_decay=0.05)),
           ("adam", dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)),
           ("adam", dict(beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.05))]


@pytest.mark.parametrize("kind,hp", UPDATES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(UPDATES)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_update_kernels_match_the_base_kernels(gpu, kind, hp, dtype, rng):
    base = base_on(gpu)
    p0 = rng.standard_normal((4, 3))
    state0 = [np.abs(rng.standard_normal((4, 3))) for _ in range({"sgd": 1, "rmsprop": 1, "adam": 2}[kind])]
    runs = []
    for backend in (gpu, base):
        p, state = both(gpu, p0.copy(), dtype), [both(gpu, s.copy(), dtype) for s in state0]
        for step in (1, 2, 3):
            g = both(gpu, np.random.default_rng(step).standard_normal((4, 3)), dtype)
            if kind == "sgd":
                velocity = state[0] if hp["momentum"] else None
                backend.sgd_update(p, g, velocity, 0.1, hp["momentum"], hp["nesterov"], hp["weight_decay"])
            elif kind == "rmsprop":
                backend.rmsprop_update(p, g, state[0], 0.01, hp["rho"], hp["eps"], hp["weight_decay"])
            else:
                backend.adam_update(p, g, *state, 0.01, hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"], step)
        assert p.dtype == gpu.dtype(dtype)
        runs.append([gpu.to_numpy(a).copy() for a in (p, *state)])
    for got, want in zip(*runs):
        np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_graph_kernels_match_the_base_kernels(gpu, fake_cupy, dtype, rng):
    """Inside a CUDA graph: products without cuBLAS (transposed views too), Adam's step count from the device."""
    base, xp = base_on(gpu), gpu.xp
    a, b, c = (both(gpu, rng.standard_normal(s), dtype) for s in ((5, 3), (3, 4), (5, 4)))
    p0, g = rng.standard_normal((3, 4)), both(gpu, rng.standard_normal((3, 4)), dtype)
    params = [both(gpu, p0.copy(), dtype) for _ in range(2)]
    states = [[both(gpu, np.full((3, 4), 0.1), dtype) for _ in range(2)] for _ in range(2)]
    base.adam_update(params[1], g, *states[1], 0.01, 0.9, 0.999, 1e-8, 0.0, 3)
    matmuls = fake_cupy.calls["matmul"]  # the probe made one
    with gpu.graph_kernels(xp.asarray(3.0, dtype=xp.float64, device=gpu.device)):
        products = [gpu.matmul(a, b), gpu.matmul(xp.matrix_transpose(a), c), gpu.matmul(c, xp.matrix_transpose(b))]
        gpu.adam_update(params[0], g, *states[0], 0.01, 0.9, 0.999, 1e-8, 0.0, 999)  # the host step is ignored
    for got, (x, y) in zip(products, ((a, b), (xp.matrix_transpose(a), c), (c, xp.matrix_transpose(b)))):
        np.testing.assert_allclose(gpu.to_numpy(got), gpu.to_numpy(base.matmul(x, y)), **TOL[dtype])
    for got, want in zip((params[0], *states[0]), (params[1], *states[1])):
        np.testing.assert_allclose(gpu.to_numpy(got), gpu.to_numpy(want), **TOL[dtype])
    assert fake_cupy.calls["matmul"] == matmuls  # no cupy.matmul (cuBLAS) inside a graph


def test_dropout_mask_is_the_base_definition_on_the_devices_generator(gpu):
    mask = gpu.dropout_mask(gpu.rng(3), (40, 30), 0.3, gpu.dtype("float64"))
    uniform = gpu.to_numpy(gpu.rng(3).random_sample((40, 30), dtype=gpu.dtype("float64")))
    np.testing.assert_array_equal(gpu.to_numpy(mask), (uniform >= 0.3) / (1 - 0.3))
    assert gpu.dropout_mask(gpu.rng(3), (4, 3), 0.3, gpu.dtype("float32")).dtype == gpu.dtype("float32")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_shared_kernel_checks_pass_on_the_fake_gpu(gpu, activation, rng):
    """tests/test_kernels.py's checks — references, dtypes, strided inputs, float64 finite differences."""
    test_kernels.test_activation_forward_backward(gpu, activation, rng)
    test_kernels.test_dense_forward_backward(gpu, activation, rng)


@pytest.mark.parametrize("loss", list(test_kernels.LOSS_REFERENCE))
def test_shared_loss_checks_pass_on_the_fake_gpu(gpu, loss, rng):
    test_kernels.test_loss_value_and_gradient(gpu, loss, rng)


def test_shared_data_and_random_checks_pass_on_the_fake_gpu(gpu, rng):
    test_kernels.test_sigmoid_and_losses_stay_finite_for_huge_inputs(gpu)
    test_kernels.test_max_norm_caps_column_norms(gpu, rng)
    test_kernels.test_dropout_mask_is_inverted_and_seeded(gpu)
    test_kernels.test_one_hot_and_take_rows(gpu)
    mask = gpu.dropout_mask(gpu.rng(0), (4, 4), 0.5, gpu.dtype("float32"))
    assert isinstance(gpu.rng(0), fakecupy.RandomState) and mask.device == gpu.device  # drawn by CuPy's generator


# ---- TF32 ----------------------------------------------------------------------------------------

def test_tf32_applies_to_float32_products_only_and_is_restored(fake_cupy, rng):
    plain = xn.get_backend("cupy", graphs=False)
    tf32 = xn.get_backend("cupy", graphs=False, tf32=True)
    a32, b32 = (tf32.asarray(rng.standard_normal(s), dtype=tf32.dtype("float32")) for s in ((3, 4), (4, 2)))
    a64 = tf32.asarray(rng.standard_normal((3, 4)), dtype=tf32.dtype("float64"))
    fake_cupy.matmul_compute_types.clear()
    plain.matmul(a32, b32)
    tf32.matmul(a32, b32)
    tf32.matmul(a64, a64.T)
    assert fake_cupy.matmul_compute_types == [1, 7, None]  # CuPy's default (full float32), TF32, untouched float64
    assert fake_cupy.compute_types == {"float32": 1}  # put back after the product
    fake_cupy.compute_types["float32"] = 7  # what $CUPY_TF32=1 makes CuPy's process-wide setting
    plain.matmul(a32, b32)
    assert fake_cupy.matmul_compute_types[-1] == 1 and fake_cupy.compute_types == {"float32": 7}


def test_tf32_on_an_older_gpu_warns_and_stays_off(monkeypatch):
    install(monkeypatch, FakeCupy(compute_capability="75"))
    with pytest.warns(UserWarning, match="compute capability 8.0"):
        backend = xn.get_backend("cupy", tf32=True)
    assert backend.tf32 is False


# ---- memory, moving off the GPU, checkpoints, whole fits -------------------------------------------

def test_history_records_the_pool_and_moving_to_numpy_frees_it(gpu, fake_cupy):
    X, y = xn.datasets.spirals(n=64, seed=0)
    net = xn.MLP([2, 8, 2], backend=gpu, seed=0)
    hist = net.fit(X, y, loss="softmax_ce", epochs=2, progress=False)
    param_bytes = sum(p.size * 4 for p in net.parameters())
    assert len(hist.history["memory_used_bytes"]) == 2
    assert all(isinstance(v, int) for v in hist.history["memory_used_bytes"] + hist.history["memory_total_bytes"])
    assert hist.history["memory_used_bytes"][-1] >= param_bytes
    assert hist.history["memory_total_bytes"][-1] >= hist.history["memory_used_bytes"][-1]
    before = net.predict(X)
    refs = [weakref.ref(p) for p in net.parameters()]
    alive_at_free = []
    fake_cupy.pool.on_free = lambda: alive_at_free.append([r() is not None for r in refs])
    net.to("numpy")
    assert fake_cupy.calls["free_all_blocks"] == 1
    assert alive_at_free == [[False] * len(refs)]  # the pool was emptied after the device arrays were gone
    np.testing.assert_allclose(net.predict(X), before, rtol=1e-6, atol=1e-7)
    assert "memory_used_bytes" not in net.fit(X, y, loss="softmax_ce", epochs=1, progress=False).history


def test_a_model_saved_on_the_gpu_loads_on_a_cpu_only_backend(gpu, tmp_path):
    X, y = xn.datasets.moons(n=64, seed=0)
    net = xn.MLP([2, 8, 2], activation="relu", backend=gpu, seed=1)
    net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.Adam(0.01), epochs=2, progress=False)
    path = tmp_path / "gpu.npz"
    net.save(path)
    _, arrays, _ = checkpoint.load(path)
    assert all(type(a) is np.ndarray for a in arrays.values())
    on_cpu = xn.load(path, backend="numpy")
    assert on_cpu.backend.name == "numpy"
    np.testing.assert_allclose(on_cpu.predict(X), net.predict(X), rtol=1e-6, atol=1e-6)


FITS = [("mse", xn.optim.SGD(0.1, momentum=0.9, nesterov=True), "tanh", None),
        ("bce", xn.optim.RMSProp(0.01, weight_decay=0.01), "sigmoid", None),
        ("softmax_ce", xn.optim.Adam(0.01, weight_decay=0.001), "gelu", None),
        ("softmax_ce", xn.optim.SGD(0.05), "leaky_relu", 1.0)]


@pytest.mark.parametrize("loss,optimizer,activation,max_norm", FITS, ids=[f[0] + "-" + f[2] for f in FITS])
def test_a_fit_on_the_gpu_matches_numpy(gpu, loss, optimizer, activation, max_norm):
    X, y = xn.datasets.circles(n=96, seed=2)
    outputs = 2 if loss == "softmax_ce" else 1
    target = y if outputs == 2 else y.reshape(-1, 1).astype(float)
    out_act = "sigmoid" if loss == "bce" else None
    results = []
    for backend in (gpu, "numpy"):
        net = xn.MLP([2, 8, 8, outputs], activation=activation, output_activation=out_act, backend=backend, seed=3)
        opt = xn.optim.get(dict(optimizer.config()))
        hist = net.fit(X, target, loss=loss, optimizer=opt, epochs=3, batch_size=16, max_norm=max_norm,
                       progress=False, seed=4)
        results.append((hist.history["loss"], net.get_weights()))
    (loss_gpu, w_gpu), (loss_np, w_np) = results
    np.testing.assert_allclose(loss_gpu, loss_np, rtol=1e-5)
    for a, b in zip(w_gpu, w_np):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
