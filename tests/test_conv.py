"""Convolution, pooling and normalisation layers: float64 gradchecks on every backend, PyTorch as the oracle,
each compiled or generated kernel against the base kernel, BatchNorm's statistics, and convnets that train."""
import importlib.util

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import xpnet as xn
from xpnet.backends.base import Backend

from checker import strided
from fakecupy import fake_cupy, gpu  # noqa: F401 (fixtures)
from fakempi import run_ranks

L = xn.layers
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_NUMBA = importlib.util.find_spec("numba") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is the oracle here: pip install torch")
needs_numba = pytest.mark.skipif(not HAVE_NUMBA, reason="numba is not installed (pip install -e '.[numba]')")


def built(layer, shape, backend, seed=0):
    """``layer`` alone in a float64 network for batches of ``shape``, its parameters made random (γ ≠ 1, b ≠ 0)."""
    xn.Sequential([layer], input_shape=shape[1:], dtype="float64", backend=backend, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for name in layer.param_names:
        layer.add_param(name, rng.standard_normal(tuple(layer.params[name].shape)))
    return layer


def gradcheck_layer(layer, x, backend, training=True, eps=1e-6):
    """Largest relative error of ∂C/∂x and every ∂C/∂θ against central differences, C = Σ g ⊙ y (float64),
    the backward pass run on a non-contiguous copy of x."""
    dt = backend.dtype("float64")
    y, backward = layer.forward(strided(backend, x, dt), training)
    g = np.random.default_rng(7).standard_normal(tuple(y.shape))
    analytic = {"x": backend.to_numpy(backward(backend.asarray(g, dtype=dt)))}
    analytic.update({name: backend.to_numpy(layer.grads[name]) for name in layer.param_names})

    def cost(xh):
        return float(np.sum(g * backend.to_numpy(layer.forward(backend.asarray(xh, dtype=dt), training)[0])))

    def numeric(f, a):
        grad = np.zeros_like(a)
        for index in np.ndindex(*a.shape):
            old = a[index]
            a[index] = old + eps
            plus = f(a)
            a[index] = old - eps
            minus = f(a)
            a[index] = old
            grad[index] = (plus - minus) / (2 * eps)
        return grad

    numerical = {"x": numeric(cost, x.copy())}
    for name in layer.param_names:
        saved = backend.to_numpy(layer.params[name]).copy()

        def cost_of_param(p, name=name):
            layer.add_param(name, p)
            return cost(x)

        numerical[name] = numeric(cost_of_param, saved.copy())
        layer.add_param(name, saved)
    return {k: float(np.max(np.abs(analytic[k] - numerical[k])) / max(np.max(np.abs(numerical[k])), 1e-8))
            for k in numerical}


GRADCHECKS = [  # (layer, input shape, training)
    (lambda: L.Conv2D(4, 3), (2, 3, 5, 5), True),
    (lambda: L.Conv2D(2, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)), (1, 1, 6, 7), True),
    (lambda: L.Conv2D(3, 2, stride=2, padding=1, activation="tanh"), (2, 2, 5, 4), True),
    (lambda: L.Conv1D(3, 3, stride=2, padding=1, dilation=2), (2, 2, 9), True),
    (lambda: L.Conv1D(1, 4, activation="sigmoid"), (1, 1, 7), True),
    (lambda: L.MaxPool2D(2), (2, 2, 4, 6), True),
    (lambda: L.MaxPool2D(3, stride=2, padding=1), (1, 3, 7, 5), True),
    (lambda: L.MaxPool1D(3, stride=2, padding=1), (2, 2, 9), True),
    (lambda: L.AvgPool2D(3, stride=2, padding=1), (2, 2, 5, 5), True),
    (lambda: L.AvgPool1D(2), (1, 3, 8), True),
    (lambda: L.GlobalAvgPool(), (2, 3, 4, 5), True),
    (lambda: L.GlobalAvgPool(), (1, 3, 7), True),
    (lambda: L.BatchNorm(), (5, 3), True),
    (lambda: L.BatchNorm(), (2, 3, 7), True),
    (lambda: L.BatchNorm(), (1, 2, 3, 5), True),
    (lambda: L.BatchNorm(), (2, 3, 4), False),
    (lambda: L.LayerNorm(), (3, 4), True),
    (lambda: L.LayerNorm(), (2, 3, 5), True),
]


@pytest.mark.parametrize("make,shape,training", GRADCHECKS, ids=[f"{i}" for i in range(len(GRADCHECKS))])
def test_every_layer_gradchecks_on_every_backend(backend, make, shape, training):
    layer = built(make(), shape, backend)
    if not training:  # inference: the running statistics, made non-trivial
        layer.add_buffer("running_mean", np.array([0.5, -1.0, 0.2]))
        layer.add_buffer("running_var", np.array([2.0, 0.5, 1.5]))
    x = np.random.default_rng(3).standard_normal(shape)
    errors = gradcheck_layer(layer, x, backend, training)
    assert max(errors.values()) < 1e-6, errors


# ---- PyTorch as the oracle, for random configurations -------------------------------------------------------

@st.composite
def windows(draw, ndim, conv):
    """(input shape, layer arguments) for a conv (conv=True) or pooling layer whose window fits its input."""
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim)) if conv else (1,) * ndim
    span = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    padding = tuple(draw(st.integers(0, s - 1 if conv else k // 2)) for s, k in zip(span, kernel))
    size = tuple(draw(st.integers(max(1, s - 2 * p), s + 5)) for s, p in zip(span, padding))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)), *size)
    one = (lambda t: t[0]) if ndim == 1 else tuple  # 1-D layers take ints, as torch's
    return shape, {"kernel_size": one(kernel), "stride": one(stride), "padding": one(padding),
                   **({"dilation": one(dilation)} if conv else {})}


def torch_pass(fn, x, g, *params):
    """y and the gradients of Σ g ⊙ y with respect to x and params, through PyTorch's autograd (float64)."""
    import torch

    tensors = [torch.tensor(a, requires_grad=True) for a in (x, *params)]
    y = fn(*tensors)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), [t.grad.numpy() for t in tensors]


def xpnet_pass(layer, x, g, backend, training=True):
    dt = backend.dtype("float64")
    y, backward = layer.forward(backend.asarray(x, dtype=dt), training)
    grad_x = backward(backend.asarray(g, dtype=dt))
    return backend.to_numpy(y), [backend.to_numpy(grad_x)] + [backend.to_numpy(layer.grads[n]) for n in
                                                              layer.param_names]


def assert_same(got, want):
    (y, grads), (y_ref, grads_ref) = got, want
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-10)
    assert len(grads) == len(grads_ref)
    for a, b in zip(grads, grads_ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-10)


ORACLE = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@needs_torch
@pytest.mark.parametrize("name", ["numpy", pytest.param("numba", marks=needs_numba)])
@pytest.mark.parametrize("ndim", [1, 2])
@ORACLE
@given(data=st.data())
def test_conv_equals_torch(name, ndim, data):
    import torch.nn.functional as F

    shape, args = data.draw(windows(ndim, conv=True))
    out_channels = data.draw(st.integers(1, 3))
    layer = built((L.Conv1D if ndim == 1 else L.Conv2D)(out_channels, **args), shape, name)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    backend = layer.backend
    W, b = (backend.to_numpy(layer.params[n]) for n in ("W", "b"))
    g = rng.standard_normal((shape[0], *layer.output_shape))
    conv = F.conv1d if ndim == 1 else F.conv2d
    options = {k: v for k, v in args.items() if k != "kernel_size"}  # torch reads it from W
    assert_same(xpnet_pass(layer, x, g, backend), torch_pass(lambda x, W, b: conv(x, W, b, **options), x, g, W, b))


@needs_torch
@pytest.mark.parametrize("name", ["numpy", pytest.param("numba", marks=needs_numba)])
@pytest.mark.parametrize("kind", ["max1", "max2", "avg1", "avg2"])
@ORACLE
@given(data=st.data())
def test_pooling_equals_torch(name, kind, data):
    import torch.nn.functional as F

    ndim = int(kind[-1])
    shape, args = data.draw(windows(ndim, conv=False))
    layer_class = {"max1": L.MaxPool1D, "max2": L.MaxPool2D, "avg1": L.AvgPool1D, "avg2": L.AvgPool2D}[kind]
    torch_fn = {"max1": F.max_pool1d, "max2": F.max_pool2d, "avg1": F.avg_pool1d, "avg2": F.avg_pool2d}[kind]
    layer = built(layer_class(**args), shape, name)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    g = rng.standard_normal((shape[0], *layer.output_shape))
    assert_same(xpnet_pass(layer, x, g, layer.backend), torch_pass(lambda x: torch_fn(x, **args), x, g))


@needs_torch
@pytest.mark.parametrize("name", ["numpy", pytest.param("numba", marks=needs_numba)])
@ORACLE
@given(shape=st.sampled_from([(4, 3), (2, 3, 5), (3, 2, 4, 3), (1, 4, 6), (2, 1, 1, 2)]), seed=st.integers(0, 99))
def test_batch_norm_and_layer_norm_equal_torch(name, shape, seed):
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    x, g = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
    bn = built(L.BatchNorm(momentum=0.2, eps=1e-3), shape, name, seed)
    gamma, beta = (bn.backend.to_numpy(bn.params[n]) for n in ("gamma", "beta"))
    running = [torch.zeros(shape[1], dtype=torch.float64), torch.ones(shape[1], dtype=torch.float64)]
    assert_same(xpnet_pass(bn, x, g, bn.backend),
                torch_pass(lambda x, w, b: F.batch_norm(x, *running, w, b, training=True, momentum=0.2, eps=1e-3),
                           x, g, gamma, beta))
    for mine, theirs in zip(("running_mean", "running_var"), running):
        np.testing.assert_allclose(bn.backend.to_numpy(bn.buffers[mine]), theirs.numpy(), rtol=1e-12)
    ln = built(L.LayerNorm(eps=1e-4), shape, name, seed)
    gamma, beta = (ln.backend.to_numpy(ln.params[n]) for n in ("gamma", "beta"))
    assert_same(xpnet_pass(ln, x, g, ln.backend),
                torch_pass(lambda x, w, b: F.layer_norm(x, shape[1:], w, b, eps=1e-4), x, g, gamma, beta))


# ---- every numba and CuPy kernel against the base kernel ---------------------------------------------------

WINDOW = ((3, 2), (2, 1), (1, 1), (1, 2))  # kernel, stride, padding, dilation
WINDOW_ACROSS = ((2, 3), (1, 2), (0, 1), (1, 1))  # a stride across the rows too (col2im's other loop)
POOL = ((3, 2), (2, 2), (1, 1))
TILES = ((2, 2), (2, 2), (0, 0))  # windows that tile the input, as LeNet's
TOL = {"float32": dict(rtol=2e-5, atol=2e-5), "float64": dict(rtol=1e-12, atol=1e-12)}


def kernel_calls(backend, rng, dtype, layout):
    """{name: (kernel result)} for every convolution, pooling and batch-norm kernel on the same random inputs."""
    dt = backend.dtype(dtype)
    put = (lambda a: backend.asarray(a, dtype=dt)) if layout == "contiguous" else (lambda a: strided(backend, a, dt))
    x = put(rng.standard_normal((2, 3, 7, 6)))
    x3 = put(rng.standard_normal((4, 3, 5)))
    wide = put(rng.standard_normal((2, 2, 12, 12)))  # 6·12 outputs per channel: numba's loop over rows, not samples
    wide_cols = (2 * 3 * 2, 2 * 6 * 12)
    cols_shape = (3 * 3 * 2, 2 * 4 * 6)  # C·kh·kw rows, N·oh·ow columns for WINDOW on x
    vectors = [put(rng.uniform(0.5, 1.5, (1, 3)))[0, ...] for _ in range(4)]
    pooled = (2, 3, 4, 4)
    argmax = backend.asarray(rng.integers(0, 6, pooled))
    g_pool = put(rng.standard_normal(pooled))
    z, a, g = (put(rng.standard_normal((2, 3, 5))) for _ in range(3))
    return {  # conv_activation's product (C_out, N·P), a new one each time: the base adds the bias in place
        **{f"conv_activation {name}": backend.conv_activation(put(rng.standard_normal((3, 2 * 5))), vectors[0], 2,
                                                              name, 0.1) for name in ("identity", "relu", "tanh")},
        **{f"conv_delta {name}": backend.conv_delta(g, z, a, name, 0.1) for name in ("identity", "leaky_relu", "tanh")},
        "im2col": backend.im2col(x, *WINDOW),
        "im2col -inf": backend.im2col(x, *WINDOW, pad_value=-float("inf")),
        "im2col across": backend.im2col(x, *WINDOW_ACROSS),
        "col2im": backend.col2im(put(rng.standard_normal(cols_shape)), x.shape, *WINDOW),
        "col2im across": backend.col2im(put(rng.standard_normal((3 * 2 * 3, 2 * 6 * 3))), x.shape, *WINDOW_ACROSS),
        "im2col wide": backend.im2col(wide, *WINDOW),
        "col2im wide": backend.col2im(put(rng.standard_normal(wide_cols)), wide.shape, *WINDOW),
        "max_pool": backend.max_pool(x, *POOL),
        "max_pool_backward": backend.max_pool_backward(g_pool, argmax, x.shape, *POOL),
        "max_pool tiles": backend.max_pool(x, *TILES),  # 7 rows: the last one in no window
        "max_pool_backward tiles": backend.max_pool_backward(put(rng.standard_normal((2, 3, 3, 3))),
                                                             backend.asarray(rng.integers(0, 4, (2, 3, 3, 3))),
                                                             x.shape, *TILES),
        "avg_pool": backend.avg_pool(x, *POOL),
        "avg_pool_backward": backend.avg_pool_backward(g_pool, x.shape, *POOL),
        "batch_norm_statistics": backend.batch_norm_statistics(x3),
        "batch_norm_forward": backend.batch_norm_forward(x3, *vectors),
        "batch_norm_sums": backend.batch_norm_sums(x3, put(rng.standard_normal((4, 3, 5)))),
        "batch_norm_backward": backend.batch_norm_backward(x3, put(rng.standard_normal((4, 3, 5))), *vectors),
    }


def assert_kernels_match(backend, base, dtype, layout):
    got = kernel_calls(backend, np.random.default_rng(5), dtype, layout)
    want = kernel_calls(base, np.random.default_rng(5), dtype, layout)
    for name in want:
        pairs = zip(got[name], want[name]) if isinstance(want[name], tuple) else [(got[name], want[name])]
        for a, b in pairs:
            assert a.dtype == b.dtype, f"{name}: {a.dtype} != {b.dtype}"
            np.testing.assert_allclose(backend.to_numpy(a), backend.to_numpy(b), **TOL[dtype], err_msg=name)


@needs_numba
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("parallel", [False, True])
def test_numba_kernels_match_the_base_kernels(dtype, layout, parallel, monkeypatch):
    from xpnet.backends import numba_backend

    monkeypatch.setattr(numba_backend, "PARALLEL_MIN", 0 if parallel else 1 << 62)  # force either variant
    assert_kernels_match(numba_backend.NumbaBackend(), Backend(np, device="cpu"), dtype, layout)


@pytest.mark.parametrize("name", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_max_pool_takes_the_first_nan_of_a_window_as_numpys_argmax_does(name):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    x[0, 0].reshape(-1)[::5] = np.nan  # windows with no NaN, one, and several
    x[0, 1, ::2] = np.inf  # infinities of both signs (their sum is NaN too), with ties among them
    x[0, 1, 1::2] = -np.inf
    x[1] = rng.integers(-1, 2, (3, 7, 6))  # ties everywhere: the first maximum wins
    without_nan = x.copy()
    without_nan[0, 0] = 0.0  # a plane of ties instead: NumPy's comparisons take another path without NaN
    backend, base = xn.get_backend(name), Backend(np, device="cpu")
    for window in (((2, 2), (2, 2), (0, 0)), ((2, 2), (1, 1), (0, 0)), ((2, 2), (2, 2), (1, 1)), POOL):
        for data in (x, without_nan):
            (y, where), (want_y, want_where) = backend.max_pool(data, *window), base.max_pool(data, *window)
            np.testing.assert_array_equal(y, want_y)  # NaN where the base has NaN
            np.testing.assert_array_equal(where, want_where)
        assert np.isnan(backend.max_pool(x, *window)[0]).any() and not np.isnan(y).any()


@pytest.mark.parametrize("name", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_max_pool_backward_keeps_zeros_off_the_maximum_when_the_gradient_is_not_finite(name):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 4))
    backend, base = xn.get_backend(name), Backend(np, device="cpu")
    _, where = base.max_pool(x, *TILES)
    grad_y = rng.standard_normal(where.shape)
    grad_y[0, 0, 0, 0], grad_y[1, 2, 1, 1] = np.inf, np.nan
    got = backend.max_pool_backward(grad_y, where, x.shape, *TILES)
    np.testing.assert_array_equal(got, base.max_pool_backward(grad_y, where, x.shape, *TILES))
    assert np.count_nonzero(np.isnan(got)) == 1 and np.count_nonzero(np.isinf(got)) == 1  # not 0·inf = NaN


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_numpy_kernels_match_the_base_kernels(dtype, layout):
    assert_kernels_match(xn.get_backend("numpy"), Backend(np, device="cpu"), dtype, layout)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_kernels_match_the_base_kernels(gpu, dtype):
    assert_kernels_match(gpu, Backend(gpu.xp, device=gpu.device), dtype, "contiguous")


def test_a_convnet_on_the_gpu_matches_numpy(gpu):
    X, y = np.random.default_rng(0).standard_normal((12, 1, 6, 6)), np.arange(12) % 3
    nets = [xn.Sequential(bn_stack(), input_shape=(1, 6, 6), dtype="float64", backend=b, seed=0)
            for b in ("numpy", gpu)]
    for net in nets:
        net.fit(X, y, loss="softmax_ce", optimizer="adam", epochs=2, batch_size=6, progress=False, seed=0)
    got, want = nets[1].state(), nets[0].state()
    for name in want:  # parameters and BatchNorm's running statistics
        np.testing.assert_allclose(got[name], want[name], rtol=1e-9, atol=1e-12, err_msg=name)


# ---- BatchNorm's statistics ------------------------------------------------------------------------------------

def test_batch_norm_normalises_with_the_batch_in_training_and_the_running_statistics_in_inference(backend):
    layer = L.BatchNorm()
    xn.Sequential([layer], input_shape=(3, 4), dtype="float64", backend=backend)
    x = np.random.default_rng(0).standard_normal((5, 3, 4)) * [[[1.0], [2.0], [3.0]]] + 4.0
    y = backend.to_numpy(layer.forward(backend.asarray(x, dtype=backend.dtype("float64")), training=True)[0])
    np.testing.assert_allclose(y.mean(axis=(0, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2)), x.var(axis=(0, 2)) / (x.var(axis=(0, 2)) + 1e-5), rtol=1e-12)
    mean, var = backend.to_numpy(layer.buffers["running_mean"]), backend.to_numpy(layer.buffers["running_var"])
    np.testing.assert_allclose(mean, 0.1 * x.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(var, 0.9 + 0.1 * x.var(axis=(0, 2), ddof=1), rtol=1e-12)  # unbiased, as PyTorch
    y = backend.to_numpy(layer.forward(backend.asarray(x, dtype=backend.dtype("float64")), training=False)[0])
    np.testing.assert_allclose(y, (x - mean[:, None]) / np.sqrt(var[:, None] + 1e-5), rtol=1e-12)
    np.testing.assert_array_equal(backend.to_numpy(layer.buffers["running_mean"]), mean)  # inference leaves them


@needs_torch
def test_running_statistics_equal_torchs_after_10_steps():
    import torch

    x = np.random.default_rng(2).standard_normal((10, 6, 2, 3, 5)) * 2 + 1
    net = xn.Sequential([L.BatchNorm(momentum=0.3)], input_shape=(2, 3, 5), dtype="float64")
    ref = torch.nn.BatchNorm2d(2, momentum=0.3, dtype=torch.float64)
    for batch in x:
        net.forward_prepared(net.backend.asarray(batch), training=True)
        ref(torch.tensor(batch))
    state = net.state()
    np.testing.assert_allclose(state["0.running_mean"], ref.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(state["0.running_var"], ref.running_var.numpy(), rtol=1e-12)


def bn_stack():
    return [L.Conv2D(3, 3, padding=1, activation="relu"), L.BatchNorm(), L.MaxPool2D(2), L.Flatten(), L.Dense(3)]


def test_checkpoints_keep_the_running_statistics_and_to_moves_them(backend, tmp_path):
    X, y = np.random.default_rng(0).standard_normal((20, 1, 6, 6)), np.arange(20) % 3
    net = xn.Sequential(bn_stack(), input_shape=(1, 6, 6), dtype="float64", seed=0)
    net.fit(X, y, loss="softmax_ce", optimizer="adam", epochs=2, batch_size=5, progress=False)
    assert net.buffer_names() == ["1.running_mean", "1.running_var"]
    assert not np.allclose(net.state()["1.running_mean"], 0.0)
    net.save(tmp_path / "bn.npz")
    loaded = xn.load(tmp_path / "bn.npz", backend=backend)
    for name in net.buffer_names():
        np.testing.assert_array_equal(loaded.state()[name], net.state()[name])
    np.testing.assert_allclose(loaded.predict(X), net.predict(X), rtol=1e-12)
    net.to(backend)
    assert all(backend.is_native(b) for b in net.buffers())
    np.testing.assert_allclose(net.predict(X), loaded.predict(X), rtol=1e-12)


def test_two_ranks_with_batch_norm_equal_one_process():
    X, y = np.random.default_rng(1).standard_normal((35, 2, 5, 5)) + 0.5, np.arange(35) % 3  # last batch: 3 rows

    def train(comm=None):
        net = xn.Sequential([L.Conv2D(3, 3, padding=1), L.BatchNorm(), L.MaxPool2D(2), L.Flatten(), L.BatchNorm(),
                             L.Dense(3)], input_shape=(2, 5, 5), dtype="float64", seed=0)
        dp = None if comm is None else xn.distributed.DataParallel(net, comm=comm, transport="mpi")
        net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.SGD(0.1, momentum=0.9), epochs=2, batch_size=8,
                progress=False, seed=0, distributed=dp or False)
        return net.state()

    want = train()
    results, group = run_ranks(2, train)
    for got in results:
        if isinstance(got, BaseException):
            raise got
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-10, atol=1e-13, err_msg=name)
    steps = 2 * -(-35 // 8)
    assert group.calls["allreduce"] == steps * (1 + 2 * 2)  # the gradients, then one each way per BatchNorm


def test_batches_too_small_for_every_rank_are_refused_with_batch_norm():
    def train(comm):
        net = xn.Sequential([L.BatchNorm(), L.Dense(2)], input_shape=(3,), dtype="float64", seed=0)
        dp = xn.distributed.DataParallel(net, comm=comm, transport="mpi")
        net.fit(np.ones((5, 3)), np.arange(5) % 2, loss="softmax_ce", batch_size=4, progress=False, distributed=dp)

    results, _ = run_ranks(3, train)
    assert all(isinstance(r, xn.errors.DataError) and "at least 3 rows" in str(r) for r in results), results


# ---- convnets that train --------------------------------------------------------------------------------------

TRAJECTORY_STACKS = {
    "2d": (lambda: [L.Conv2D(3, 3, padding=1, activation="relu"), L.BatchNorm(), L.MaxPool2D(2),
                    L.Conv2D(4, 2, stride=1, dilation=1, activation="tanh"), L.AvgPool2D(2, stride=1),
                    L.LayerNorm(), L.Flatten(), L.Dense(3)], (1, 6, 6)),
    "1d": (lambda: [L.Conv1D(3, 3, stride=2, padding=1, activation="relu"), L.BatchNorm(), L.MaxPool1D(2),
                    L.Conv1D(4, 2, dilation=2), L.AvgPool1D(2, padding=1), L.GlobalAvgPool(), L.Dense(3)], (2, 17)),
}


@pytest.mark.parametrize("stack", list(TRAJECTORY_STACKS))
def test_the_same_convnet_follows_the_same_trajectory_on_every_backend(backend, stack):
    make, shape = TRAJECTORY_STACKS[stack]
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((10, *shape)), rng.integers(0, 3, 10)
    runs = []
    for b in ("numpy", backend):
        net = xn.Sequential(make(), input_shape=shape, dtype="float64", backend=b, seed=0)
        step = net.compile("softmax_ce", xn.optim.SGD(0.05, momentum=0.9))
        losses = [float(step(X, y)) for _ in range(20)]
        runs.append((losses, net.state()))
    (losses, state), (losses_ref, state_ref) = runs[1], runs[0]
    np.testing.assert_allclose(losses, losses_ref, rtol=1e-9)
    assert losses[-1] < 0.5 * losses[0]  # it learns, so the trajectory is not a flat line
    for name in state_ref:
        np.testing.assert_allclose(state[name], state_ref[name], rtol=1e-9, atol=1e-12, err_msg=name)


def digits_split():
    X, y = xn.datasets.digits(images=True)
    order = np.random.default_rng(0).permutation(len(X))
    return X[order[:1437]] / 16.0, y[order[:1437]], X[order[1437:]] / 16.0, y[order[1437:]]


@needs_numba
def test_a_small_convnet_learns_the_digits():
    threadpool_limits = pytest.importorskip("threadpoolctl", reason="pins BLAS to one thread (comes with "
                                            "scikit-learn: pip install -e '.[sklearn]')").threadpool_limits

    X, y, X_test, y_test = digits_split()
    # One thread for the kernels and for BLAS: on a shared 2-core machine, spinning thread pools make
    # this fit 15× slower, and a test's time should not depend on the neighbours' load.
    net = xn.Sequential(DIGITS_STACK(), input_shape=(1, 8, 8), seed=0, backend=xn.get_backend("numba", parallel=False))
    with threadpool_limits(1):
        net.fit(X, y, optimizer=xn.optim.Adam(0.003), **DIGITS_FIT)  # a fresh optimiser: no state carried over
    accuracy = float(np.mean(net.predict(X_test).argmax(axis=1) == y_test))
    assert accuracy >= 0.985, accuracy  # its time (6–12 s here) is a benchmark's business, not a test's


DIGITS_STACK = lambda: [L.Conv2D(16, 3, padding=1, activation="relu"), L.BatchNorm(),  # noqa: E731
                        L.Conv2D(32, 3, padding=1, activation="relu"), L.MaxPool2D(2), L.Flatten(),
                        L.Dropout(0.3), L.Dense(10)]
DIGITS_FIT = dict(loss="softmax_ce", epochs=15, batch_size=32, progress=False, seed=0)


# ---- data, models, the command line, trace ----------------------------------------------------------------------

def test_image_data_and_lenet():
    X, y = xn.datasets.digits(images=True)
    assert X.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    np.testing.assert_array_equal(X.reshape(1797, -1), xn.datasets.digits()[0])
    for shape, params in (((1, 28, 28), 61_706), ((1, 8, 8), 42_794)):
        net = xn.models.lenet(shape)
        assert net.output_shape == (10,) and net.count_params() == params
    assert xn.models.lenet((1, 8, 8), batch_norm=True).buffer_names() == ["1.running_mean", "1.running_var",
                                                                          "4.running_mean", "4.running_var"]


def test_mnist_images(tmp_path):
    import struct

    for name, magic, shape, data in (("train-images-idx3-ubyte", 0x0803, (3, 28, 28), np.arange(3 * 784) % 256),
                                     ("train-labels-idx1-ubyte", 0x0801, (3,), np.array([1, 2, 3]))):
        (tmp_path / name).write_bytes(struct.pack(">I", magic) + struct.pack(f">{len(shape)}I", *shape) +
                                      data.astype(np.uint8).tobytes())
    X, y = xn.datasets.mnist(tmp_path, images=True)
    assert X.shape == (3, 1, 28, 28) and X.max() == 1.0 and y.tolist() == [1, 2, 3]


def test_trace_shows_a_conv_layers_z_delta_and_weight_gradient():
    X, y = xn.datasets.digits(images=True)
    net = xn.models.lenet((1, 8, 8), dtype="float64", backend="numpy")
    traced = xn.trace(net, "softmax_ce", X[:2] / 16, y[:2])
    conv = traced.layers[0]
    assert conv.conv and conv.z.shape == conv.delta.shape == (2, 6, 8, 8) and conv.grad_W.shape == (6, 1, 3, 3)
    for got, want in zip(traced.gradients(), xn.backprop(net, "softmax_ce", X[:2] / 16, y[:2])):
        np.testing.assert_allclose(got, want, rtol=1e-10)
    text = str(traced)
    assert "Conv2D 1→6 channels, kernel 3×3" in text and "z¹ = W¹ ∗ a⁰ + b¹" in text and "BP4  ∂C/∂W²" in text


def test_the_command_line_trains_and_explains_lenet(capsys):
    from xpnet import cli

    assert cli.main(["train", "--data", "digits", "--model", "lenet", "--activation", "relu", "--epochs", "2",
                     "--backend", "numpy", "--quiet"]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test: loss")[1].split("accuracy")[1].split()[0])
    assert accuracy > 0.8
    assert cli.main(["explain", "--model", "lenet", "--backend", "numpy"]) == 0
    assert "δ¹ = ∂C/∂a¹ ⊙ σ'(z¹)" in capsys.readouterr().out
    assert cli.main(["train", "--data", "moons", "--model", "lenet", "--quiet"]) == 2
    assert "--model lenet takes images (--data digits or mnist), got --data moons" in capsys.readouterr().err


# ---- xpnet bench conv ----------------------------------------------------------------------------------------

def test_the_conv_benchmark_counts_the_im2col_products_and_matches_torchs_first_loss():
    from xpnet.bench import conv

    # 64→64 3×3 on 32×32, batch 32: W₂ cols and δ₂ colsᵀ (no ∂C/∂x below the first layer).
    assert conv.products(conv.CASES["conv64"]) == [(64, 576, 32768, False, False), (64, 32768, 576, False, True)]
    lenet = conv.products(conv.CASES["lenet5"])
    assert len(lenet) == 2 + 3 + 3 * 3 and lenet[2] == (16, 150, 64 * 10 * 10, False, False)
    assert conv.make_net(conv.CASES["lenet5"]).count_params() == xn.models.lenet().count_params() == 61_706
    if not HAVE_TORCH:
        pytest.skip("PyTorch is the peer here: pip install torch")
    import torch

    for name in ("conv1d", "lenet5"):
        case = dict(conv.CASES[name], batch=3)
        X, y = conv.make_data(case)
        ours = conv.make_net(case, "numpy").evaluate(X, y, case["loss"])["loss"]
        theirs = torch.nn.CrossEntropyLoss()(conv.torch_model(case, 0)(torch.from_numpy(X)),
                                             torch.from_numpy(np.asarray(y, dtype=np.int64))).item()
        assert ours == pytest.approx(theirs, rel=1e-5)


def test_the_conv_benchmark_runs_a_case_and_fills_its_rows():
    from xpnet.bench import conv

    result = conv.run(["numpy"], cases=["conv1d"], min_time=0.001, repeats=2, pytorch=HAVE_TORCH)
    (case,) = result["cases"]
    assert case["bound_seconds"] > 0 and case["sgemm_flops_per_s"] == case["flops_per_step"] / case["bound_seconds"]
    rows = {row["implementation"].split()[0] + " " + row["implementation"].split()[-1]: row for row in case["rows"]}
    ours = rows["xpnet numpy"]
    assert ours["seconds"] > 0 and ours["sgemm_fraction"] == case["bound_seconds"] / ours["seconds"]
    if HAVE_TORCH:  # the peer timed in the same rounds, from the same weights
        theirs = rows["pytorch cpu"]
        assert ours["vs_pytorch"] == theirs["seconds"] / ours["seconds"]
        assert ours["first_loss"] == pytest.approx(theirs["first_loss"], rel=1e-5)
    assert "| conv1d | xpnet numpy |" in conv.table(result)


@pytest.mark.parametrize("stack", list(TRAJECTORY_STACKS))
def test_onnx_export_of_a_convnet_gives_predicts_outputs(stack, tmp_path):
    pytest.importorskip("onnx", reason="the export needs onnx (pip install 'xpnet[onnx]')")
    ort = pytest.importorskip("onnxruntime", reason="running the export needs onnxruntime (pip install 'xpnet[onnx]')")
    make, shape = TRAJECTORY_STACKS[stack]
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((10, *shape)).astype(np.float32), rng.integers(0, 3, 10)
    net = xn.Sequential(make(), input_shape=shape, seed=0)
    net.fit(X, y, loss="softmax_ce", optimizer="adam", epochs=3, batch_size=5, progress=False)  # running stats move
    net.export_onnx(tmp_path / "c.onnx")
    got = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": X})[0]
    np.testing.assert_allclose(got, net.predict(X), rtol=1e-4, atol=1e-5)


CONV_NOTICE_CHILD = """
import warnings
import numpy as np
import xpnet as xn
X, y = np.random.default_rng(0).standard_normal((8, 1, 6, 6)), np.arange(8) % 2
layers = lambda: [xn.layers.Conv2D(2, 3, activation="relu"), xn.layers.MaxPool2D(2), xn.layers.Flatten(),
                  xn.layers.Dense(2)]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    net = xn.Sequential(layers(), input_shape=(1, 6, 6), backend="numba", dtype="float32")
    net.fit(X, y, loss="softmax_ce", optimizer="sgd", epochs=1, progress=False)
    quiet = len(caught)
    step = xn.Sequential(layers(), input_shape=(1, 6, 6), backend="numba", dtype="float64").compile("softmax_ce", "sgd")
    step(X, y)
    step(X, y)
notices = [w for w in caught if issubclass(w.category, xn.errors.CompileWarning)]
print(quiet, len(notices), notices[0].filename if notices else "-", "kernels" in str(notices[0].message) if notices else "-")
"""


@needs_numba
def test_a_convnets_first_compile_on_numba_says_so_once_and_not_with_progress_false():
    """The layer-by-layer step compiles numba's conv, pooling and activation kernels on its first call: with
    nothing cached, fit(progress=False) does it silently, then the first compiling step(X, y) (float64 kernels)
    warns once, at the caller's line, as the fused MLP step does."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, XPNET_NUMBA_CACHE="0")
    result = subprocess.run([sys.executable, "-c", CONV_NOTICE_CHILD], capture_output=True, text=True, env=env,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1", "<string>", "True"]
