"""PyTorch twins both ways: random architectures give the same outputs and the same SGD step (float64, 1e-6)."""
import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the property tests need Hypothesis (pip install -e '.[dev]')")
torch = pytest.importorskip("torch", reason="the twins need PyTorch (pip install -e '.[torch]')")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import xpnet as xn  # noqa: E402

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ACTIVATIONS = ["identity", "relu", "tanh", "sigmoid", "leaky_relu", "gelu", "gelu_tanh"]


@st.composite
def architectures(draw, dropout=True):
    """(input shape, [("dense", width, activation, alpha) | ("dropout", p) | ("reshape", ...) | ("identity",)])."""
    flat_first = draw(st.booleans())
    features = draw(st.integers(1, 4))
    spec = [("flatten",)] if flat_first else []
    for _ in range(draw(st.integers(1, 3))):
        spec.append(("dense", draw(st.integers(1, 5)), draw(st.sampled_from(ACTIVATIONS)),
                     draw(st.floats(0.0, 0.5))))
        extra = draw(st.sampled_from(["none", "dropout", "reshape", "identity"]))
        if extra == "dropout":
            spec.append(("dropout", draw(st.floats(0.0, 0.9)) if dropout else 0.0))
        elif extra != "none":
            spec.append((extra,))
    return ((2, features) if flat_first else (features,)), spec


def xpnet_layers(spec):
    stack = []
    for item in spec:
        if item[0] == "dense":
            stack.append(xn.layers.Dense(item[1], activation=item[2], alpha=item[3]))
        elif item[0] == "dropout":
            stack.append(xn.layers.Dropout(item[1]))
        elif item[0] == "flatten":
            stack.append(xn.layers.Flatten())
        elif item[0] == "reshape":
            stack += [xn.layers.Reshape((-1, 1)), xn.layers.Flatten()]
    return stack


def torch_modules(spec, input_shape):
    nn, modules, width = torch.nn, [], input_shape[-1] * (2 if len(input_shape) == 2 else 1)
    make = {"relu": lambda a: nn.ReLU(), "tanh": lambda a: nn.Tanh(), "sigmoid": lambda a: nn.Sigmoid(),
            "leaky_relu": nn.LeakyReLU, "gelu": lambda a: nn.GELU(), "gelu_tanh": lambda a: nn.GELU("tanh")}
    for item in spec:
        if item[0] == "dense":
            modules.append(nn.Linear(width, item[1]))
            width = item[1]
            if item[2] != "identity":
                modules.append(make[item[2]](item[3]))
        elif item[0] == "dropout":
            modules.append(nn.Dropout(item[1]))
        elif item[0] == "flatten":
            modules.append(nn.Flatten())
        elif item[0] == "reshape":
            modules += [nn.Unflatten(1, (width, 1)), nn.Flatten()]
        else:
            modules.append(nn.Identity())
    return nn.Sequential(*modules).double()


def data(input_shape, n_out, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((5, *input_shape)), rng.standard_normal((5, n_out))


def same_step(net, twin, X, T, lr=0.1):
    """One SGD step on MSE in both; returns (xpnet weights, torch weights as xpnet lays them out)."""
    net.compile("mse", xn.optim.SGD(lr))(X, T)
    twin.train()
    optimizer = torch.optim.SGD(twin.parameters(), lr=lr)
    optimizer.zero_grad()
    torch.nn.functional.mse_loss(twin(torch.from_numpy(X)), torch.from_numpy(T)).backward()
    optimizer.step()
    linears = [m for m in twin.modules() if isinstance(m, torch.nn.Linear)]
    ours = net.get_weights()
    theirs = [w for m in linears for w in (m.weight.detach().numpy().T, m.bias.detach().numpy())]
    return ours, theirs


def assert_twins(net, twin, seed):
    X, T = data(net.input_shape, net.n_outputs, seed)
    np.testing.assert_allclose(net.predict(X), twin.eval()(torch.from_numpy(X)).detach().numpy(), rtol=1e-6,
                               atol=1e-6)


@FEW
@given(architectures(), st.integers(0, 2**16))
def test_to_torch_gives_the_same_outputs(arch, seed):
    input_shape, spec = arch
    net = xn.Sequential(xpnet_layers(spec), input_shape=input_shape, dtype="float64", seed=seed, backend="numpy")
    twin = net.to_torch()
    assert all(p.dtype == torch.float64 for p in twin.parameters())
    assert_twins(net, twin, seed)


@FEW
@given(architectures(), st.integers(0, 2**16))
def test_from_torch_gives_the_same_outputs(arch, seed):
    input_shape, spec = arch
    torch.manual_seed(seed)
    module = torch_modules(spec, input_shape)
    net = xn.from_torch(module, input_shape=input_shape, backend="numpy")
    assert net.dtype == "float64"
    assert_twins(net, module, seed)


@FEW
@given(architectures(dropout=False), st.integers(0, 2**16), st.booleans())
def test_one_sgd_step_agrees_both_ways(arch, seed, from_torch):
    input_shape, spec = arch
    torch.manual_seed(seed)
    if from_torch:
        twin = torch_modules(spec, input_shape)
        net = xn.from_torch(twin, input_shape=input_shape, backend="numpy")
    else:
        net = xn.Sequential(xpnet_layers(spec), input_shape=input_shape, dtype="float64", seed=seed, backend="numpy")
        twin = net.to_torch()
    X, T = data(input_shape, net.n_outputs, seed)
    ours, theirs = same_step(net, twin, X, T)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_the_round_trip_keeps_weights_and_float32():
    net = xn.MLP([3, 4, 2], activation="leaky_relu", alpha=0.2, seed=1)
    back = xn.from_torch(net.to_torch())
    assert back.dtype == "float32" and back.layers[0].activation == "leaky_relu" and back.layers[0].alpha == \
        pytest.approx(0.2)
    for a, b in zip(net.get_weights(), back.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_modules_are_named_with_their_index():
    nn = torch.nn
    with pytest.raises(xn.errors.ConfigError, match=r"module 1 \(Conv3d\) has no xpnet layer; from_torch maps"):
        xn.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Conv3d(1, 1, 1)))
    with pytest.raises(xn.errors.ConfigError, match=r"module 1\.0 \(Softplus\)"):
        xn.from_torch(nn.Sequential(nn.Linear(2, 3), nn.Sequential(nn.Softplus())))
    with pytest.raises(xn.errors.ConfigError, match=r"module 0 \(ReLU\) follows no Linear or Conv"):
        xn.from_torch(nn.Sequential(nn.ReLU(), nn.Linear(2, 3)))
    with pytest.raises(xn.errors.ConfigError, match=r"module 2 \(Tanh\) follows no Linear or Conv without an activation"):
        xn.from_torch(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Tanh()))
    with pytest.raises(xn.errors.ConfigError, match=r"takes a torch.nn.Sequential, got torch.nn.modules.linear.Linear"):
        xn.from_torch(nn.Linear(2, 3))
    with pytest.raises(xn.errors.DataTypeError, match=r"torch.float16; xpnet supports one of torch.float32, "
                                                      r"torch.float64"):
        xn.from_torch(nn.Sequential(nn.Linear(2, 3)).half())


def test_a_layer_without_a_twin_is_named():
    @xn.layers.register
    class Twice(xn.layers.Layer):
        def forward(self, x, training=False):
            return 2 * x, lambda grad_y, need_grad_x=True: 2 * grad_y

    net = xn.Sequential([xn.layers.Dense(2, 3), Twice()])
    with pytest.raises(xn.errors.ConfigError, match=r"layer 1 \(Twice\) has no PyTorch twin; to_torch maps AvgPool1D, AvgPool2D, BatchNorm"):
        net.to_torch()


# ---- convolution, pooling and normalisation ---------------------------------------------------------

def conv_2d(nn):
    return (1, 12, 12), nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, (3, 2), stride=(1, 2), dilation=(2, 1)), nn.Tanh(), nn.AvgPool2d(2, padding=1),
        nn.Flatten(), nn.LayerNorm(24), nn.Linear(24, 3))


def conv_1d(nn):
    return (2, 16), nn.Sequential(
        nn.Conv1d(2, 5, 3, stride=2, padding=1), nn.GELU(), nn.BatchNorm1d(5), nn.MaxPool1d(3, stride=2, padding=1),
        nn.Conv1d(5, 3, 2), nn.AvgPool1d(2), nn.Flatten(), nn.Linear(3, 2))


def dense_batch_norm(nn):
    return (4,), nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.BatchNorm1d(6), nn.Linear(6, 2))


@pytest.mark.parametrize("make", [conv_2d, conv_1d, dense_batch_norm])
def test_conv_pool_and_norm_twins_agree_on_outputs_a_step_and_running_statistics(make):
    torch.manual_seed(0)
    input_shape, twin = make(torch.nn)
    twin = twin.double()
    X, T = data(input_shape, 0, 0)[0], np.random.default_rng(1).standard_normal((5, list(twin)[-1].out_features))
    twin.train()(torch.from_numpy(X))  # running statistics away from their start
    net = xn.from_torch(twin, input_shape=input_shape, backend="numpy")
    assert_twins(net, twin, 0)
    again = net.to_torch().double()  # and back: the same modules, weights and buffers
    assert [type(m).__name__ for m in again] == [type(m).__name__ for m in twin]
    assert_twins(net, again, 0)
    same_step(net, twin, X, T)
    after = xn.from_torch(twin, input_shape=input_shape, backend="numpy")
    for a, b in zip(net.get_weights() + net.buffers(), after.get_weights() + after.buffers(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("module, message", [
    (lambda nn: nn.Conv2d(1, 2, 3, groups=1, padding="same"), r"Conv2d\(padding='same'\) has no xpnet layer"),
    (lambda nn: nn.Conv2d(2, 2, 3, groups=2), r"Conv2d\(groups=2\) has no xpnet layer; xpnet's Conv2d has groups=1"),
    (lambda nn: nn.Conv1d(1, 2, 3, padding=1, padding_mode="reflect"), r"Conv1d\(padding_mode='reflect'\)"),
    (lambda nn: nn.MaxPool2d(2, ceil_mode=True), r"MaxPool2d\(ceil_mode=True\)"),
    (lambda nn: nn.MaxPool1d(2, dilation=2), r"MaxPool1d\(dilation=2\) has no xpnet layer"),
    (lambda nn: nn.AvgPool2d(2, padding=1, count_include_pad=False), r"AvgPool2d\(count_include_pad=False\)"),
    (lambda nn: nn.BatchNorm2d(1, affine=False), r"BatchNorm2d\(momentum=0.1, affine=False"),
    (lambda nn: nn.BatchNorm2d(1, momentum=None), r"BatchNorm2d\(momentum=None"),
    (lambda nn: nn.LayerNorm(8, elementwise_affine=False), r"LayerNorm\(elementwise_affine=False or bias=False\)"),
    (lambda nn: nn.LayerNorm(8), r"layer 0: LayerNorm\(8,\) normalises part of each sample's shape \(1, 8, 8\)"),
])
def test_torch_modules_xpnet_cannot_mirror_are_refused_with_the_reason(module, message):
    with pytest.raises(xn.errors.ConfigError, match=message):
        xn.from_torch(torch.nn.Sequential(module(torch.nn)), input_shape=(1, 8, 8))
