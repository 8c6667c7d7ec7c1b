"""Arrays of other libraries in and out through DLPack, without copies: same memory on the host, no
transfers on the (fake) GPU, and DeviceError when the array lives elsewhere."""
import numpy as np
import pytest

import xpnet as xn

from fakecupy import ForeignGPUArray, fake_cupy, gpu  # noqa: F401 (fixtures)

torch = pytest.importorskip("torch")


@xn.layers.register
class Spy(xn.layers.Layer):
    """Passes its input through and records where in memory each batch it saw starts."""

    seen: list = []

    def forward(self, x, training=False):
        Spy.seen.append(x.__array_interface__["data"][0] if isinstance(x, np.ndarray) else None)
        return x, lambda grad_y, need_grad_x=True: grad_y


def inside(pointer, tensor):
    start = tensor.data_ptr()
    return pointer is not None and start <= pointer < start + tensor.numel() * tensor.element_size()


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_torch_cpu_tensors_are_used_in_place_everywhere(name):
    if xn.backends.unavailable_reason(name):
        pytest.skip(f"backend {name} unavailable: {xn.backends.unavailable_reason(name)}")
    X = torch.rand(16, 2, dtype=torch.float64)
    y = (X[:, 0] > X[:, 1]).long()
    net = xn.Sequential([Spy(), xn.layers.Dense(4, activation="tanh"), xn.layers.Dense(2)], input_shape=(2,),
                        dtype="float64", backend=name)
    assert np.shares_memory(net.backend.asarray(X), X.numpy())
    uses = {"forward": lambda: net.forward(X), "predict": lambda: net.predict(X),
            "evaluate": lambda: net.evaluate(X, y, loss="softmax_ce"),
            "fit": lambda: net.fit(X, y, loss="softmax_ce", epochs=1, batch_size=16, shuffle=False, progress=False),
            "step": lambda: net.compile("softmax_ce", "sgd")(net.backend.asarray(X), net.backend.asarray(
                np.eye(2)[y.numpy()]))}
    for use, call in uses.items():
        Spy.seen = []
        call()
        assert Spy.seen and all(inside(p, X) for p in Spy.seen), f"{use} copied the tensor"
    assert net.predict(X).dtype == np.float64


def test_a_cast_is_the_only_copy():
    net = xn.MLP([2, 3], dtype="float32", backend="numpy")
    X = torch.rand(4, 2, dtype=torch.float64)
    shared = net.backend.asarray(X, dtype=np.float32)
    assert shared.dtype == np.float32 and not np.shares_memory(shared, X.numpy())
    np.testing.assert_allclose(net.predict(X), net.predict(X.numpy()), rtol=1e-6)


def test_outputs_go_back_to_torch_without_a_copy():
    net = xn.MLP([2, 3], backend="numpy")
    y = net.forward(np.ones((4, 2)))
    for shared in (torch.from_dlpack(xn.to_dlpack(y)), torch.from_dlpack(y)):
        assert shared.data_ptr() == y.__array_interface__["data"][0]
    with pytest.raises(xn.errors.DataTypeError, match="to_dlpack takes an array with __dlpack__"):
        xn.to_dlpack([1.0, 2.0])


def test_tensors_dlpack_cannot_carry_are_a_clear_error():
    net = xn.MLP([2, 3], backend="numpy")
    with pytest.raises(xn.errors.DataTypeError, match=r"torch.bfloat16.*float32 or float64"):
        net.predict(torch.zeros(3, 2, dtype=torch.bfloat16))
    with pytest.raises(xn.errors.DataTypeError, match="require gradient"):
        net.predict(torch.zeros(3, 2, requires_grad=True))


def test_a_gpu_array_of_another_library_is_shared_on_the_gpu(gpu, fake_cupy):
    memory = np.random.default_rng(0).standard_normal((8, 2)).astype(np.float32)
    net = xn.MLP([2, 3, 1], backend=gpu)
    expected = net.predict(memory)
    fake_cupy.calls.clear()
    shared = gpu.asarray(ForeignGPUArray(memory))
    assert np.shares_memory(shared._array, memory)
    got = net.forward(ForeignGPUArray(memory))
    assert fake_cupy.calls["asarray"] == 0 and fake_cupy.calls["from_dlpack"] == 2
    np.testing.assert_allclose(gpu.to_numpy(got), expected, rtol=1e-6)


def test_arrays_on_another_device_are_refused_naming_both(gpu):
    net = xn.MLP([2, 1], backend=gpu)
    with pytest.raises(xn.errors.DeviceError, match=r"got fakecupy.ForeignGPUArray on cuda:1; arrays shared "
                                                    r"through DLPack must be on cuda:0"):
        net.predict(ForeignGPUArray(np.zeros((3, 2), np.float32), index=1))
    with pytest.raises(xn.errors.DeviceError, match=r"got torch.Tensor on cpu; .* must be on cuda:0"):
        net.predict(torch.zeros(3, 2))
    on_gpu = gpu.asarray(np.zeros((3, 2), np.float32))
    with pytest.raises(xn.errors.DeviceError, match=r"backend 'numpy', got array_api_strict.* on cuda:0; .* on cpu"):
        xn.MLP([2, 1], backend="numpy").predict(on_gpu)
