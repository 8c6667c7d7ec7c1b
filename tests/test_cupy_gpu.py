"""The CuPy backend on a real CUDA GPU: ``pytest -m gpu`` on a CUDA machine (docker/README.md).

Skipped, with the reason, anywhere CuPy cannot use a GPU. The whole
backend-parametrised suite also runs on CuPy there (conftest.py); this file
adds what only a GPU can show: the override kernels against the base kernels
compiled by NVRTC, real CUDA-graph capture and replay against the plain step,
the memory pool, TF32, dropout on the device and a second GPU.
"""
import numpy as np
import pytest

import xpnet as xn

REASON = xn.backends.unavailable_reason("cupy")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"needs CuPy and a CUDA GPU: {REASON}")]

# The fake-GPU tests that take only `gpu` (and `rng`), collected again here with the real backend below.
from test_cupy_backend import (  # noqa: E402,F401
    test_a_fit_on_the_gpu_matches_numpy, test_a_model_saved_on_the_gpu_loads_on_a_cpu_only_backend,
    test_layer_kernels_match_the_base_kernels, test_softmax_cross_entropy_matches_the_base_kernel,
    test_update_kernels_match_the_base_kernels)
from test_conv import (  # noqa: E402,F401
    test_a_convnet_on_the_gpu_matches_numpy, test_cupy_kernels_match_the_base_kernels)


@pytest.fixture
def gpu():
    return xn.get_backend("cupy", graphs=False)


def graph_and_plain_steps(sizes, optimizer, loss="softmax_ce", activation="tanh"):
    steps = []
    for graphs in ("auto", False):
        net = xn.MLP(sizes, activation=activation, backend=xn.get_backend("cupy", graphs=graphs), seed=0)
        steps.append(net.compile(loss, xn.optim.get(dict(optimizer.config()))))
    return steps


@pytest.mark.parametrize("optimizer", [xn.optim.SGD(0.1, momentum=0.9), xn.optim.Adam(0.01, weight_decay=1e-3)],
                         ids=["sgd", "adam"])
def test_a_captured_graph_replays_the_plain_step(optimizer):
    X, y = xn.datasets.spirals(n=40, seed=0)
    graph, plain = graph_and_plain_steps([2, 16, 16, 2], optimizer)
    batches = [(X[i:i + 16], y[i:i + 16]) for i in (0, 16, 24)] * 3  # nine batches of 16: warm-up, capture, replays
    batches.append((X[32:], y[32:]))  # a batch of 8 runs eagerly: its first call is a warm-up
    got = [graph(Xb, yb) for Xb, yb in batches]
    want = [plain(Xb, yb) for Xb, yb in batches]
    assert graph.failure is None, graph.failure
    assert "CUDA-graph step (1 graph(s) captured)" in repr(graph)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    for a, b in zip(graph.net.get_weights(), plain.net.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def spirals_fit(backend, epochs=20):
    """Weights after a float64 spirals fit (Adam, mini-batches, shuffled) on ``backend``."""
    X, y = xn.datasets.spirals(n=300, seed=0)
    net = xn.MLP([2, 16, 16, 2], activation="tanh", dtype="float64", backend=backend, seed=0)
    net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.Adam(0.01), epochs=epochs, batch_size=32, progress=False,
            seed=1)
    return net.get_weights()


def test_a_20_epoch_spirals_fit_on_cupy_equals_numpy_in_float64():
    """gpu_check.sh's proof that the GPU computes what NumPy computes: same weights to rtol 1e-9."""
    for got, want in zip(spirals_fit(xn.get_backend("cupy")), spirals_fit("numpy")):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_the_xor_experiment_repeats_from_one_graph():
    X, y = xn.datasets.xor()
    graph, plain = graph_and_plain_steps([2, 2, 1], xn.optim.SGD(1.0), loss="mse", activation="sigmoid")
    assert graph.repeat(X, y, 500) == pytest.approx(plain.repeat(X, y, 500), rel=1e-4, abs=1e-6)
    assert graph.failure is None and "1 graph(s) captured" in repr(graph)


def test_dropout_runs_on_the_device_without_a_graph(gpu):
    net = xn.MLP([2, 32, 2], dropout=0.5, backend=xn.get_backend("cupy"), seed=0)
    step = net.compile("softmax_ce", "sgd")
    assert "dropout" in repr(step)
    mask = gpu.dropout_mask(gpu.rng(5), (64, 64), 0.5, gpu.dtype("float32"))
    again = gpu.dropout_mask(gpu.rng(5), (64, 64), 0.5, gpu.dtype("float32"))
    assert type(mask) is type(gpu.asarray(np.zeros(1)))
    np.testing.assert_array_equal(gpu.to_numpy(mask), gpu.to_numpy(again))
    assert abs(float((mask == 0).mean()) - 0.5) < 0.05


def test_the_pool_is_recorded_and_given_back_when_the_net_leaves_the_gpu(gpu):
    import cupy

    X, y = xn.datasets.spirals(n=4096, seed=0)
    net = xn.MLP([2, 256, 256, 2], backend=gpu, seed=0)
    hist = net.fit(X, y, loss="softmax_ce", epochs=1, batch_size=512, progress=False)
    assert hist.history["memory_used_bytes"][-1] >= sum(p.nbytes for p in net.parameters())
    pool = cupy.get_default_memory_pool()
    held = pool.total_bytes()
    net.to("numpy")
    assert pool.total_bytes() < held and pool.used_bytes() <= pool.total_bytes()


def test_tf32_products_stay_close_to_float32(gpu, rng):
    import cupy

    if int(cupy.cuda.Device().compute_capability) < 80:
        pytest.skip("TF32 needs compute capability 8.0 or newer")
    tf32 = xn.get_backend("cupy", graphs=False, tf32=True)
    a, b = (gpu.asarray(rng.standard_normal(s), dtype=gpu.dtype("float32")) for s in ((256, 512), (512, 128)))
    full, fast = gpu.to_numpy(gpu.matmul(a, b)), tf32.to_numpy(tf32.matmul(a, b))
    np.testing.assert_allclose(fast, full, rtol=0, atol=0.05 * np.abs(full).max())


def test_host_arrays_move_and_cpu_tensors_are_refused(gpu):
    import cupy

    X = gpu.asarray(np.ones((4, 2)))
    assert isinstance(X, cupy.ndarray) and X.device.id == gpu.device_id
    torch = pytest.importorskip("torch")
    with pytest.raises(xn.errors.DeviceError, match="torch.Tensor"):
        gpu.asarray(torch.zeros(2))


def test_a_second_gpu_keeps_its_arrays():
    import cupy

    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two GPUs")
    net = xn.MLP([2, 8, 2], backend=xn.get_backend("cupy", device=1), seed=0)
    assert all(p.device.id == 1 for p in net.parameters())
    X, y = xn.datasets.moons(n=64, seed=0)
    net.fit(X, y, loss="softmax_ce", epochs=1, progress=False)
    with pytest.raises(xn.errors.DeviceError):
        xn.get_backend("cupy", device=0).asarray(net.parameters()[0])
