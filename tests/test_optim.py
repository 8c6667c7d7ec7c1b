"""Optimisers and losses against PyTorch (the test oracle, when installed): whole training runs, float64."""
import numpy as np
import pytest

import xpnet as xn

torch = pytest.importorskip("torch", reason="PyTorch is the oracle here: pip install torch==2.13.0")

OPTIMIZERS = [
    (xn.optim.SGD(0.1), lambda p: torch.optim.SGD(p, lr=0.1)),
    (xn.optim.SGD(0.1, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    (xn.optim.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    (xn.optim.RMSProp(0.01, rho=0.9, weight_decay=0.001),
     lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, weight_decay=0.001)),
    (xn.optim.Adam(0.01), lambda p: torch.optim.Adam(p, lr=0.01)),
    (xn.optim.Adam(0.01, beta1=0.8, beta2=0.99, weight_decay=0.01),
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.01)),
]
LOSSES = {
    "mse": lambda out, y: torch.nn.functional.mse_loss(out, y),
    "bce_logits": lambda out, y: torch.nn.functional.binary_cross_entropy_with_logits(out, y),
    "bce": lambda out, y: torch.nn.functional.binary_cross_entropy(torch.sigmoid(out), y),
    "softmax_ce": lambda out, y: torch.nn.functional.cross_entropy(out, y),
}


def torch_run(weights, X, y, loss, make_optimizer, steps, activation=torch.tanh):
    params = [torch.tensor(w, requires_grad=True) for w in weights]
    opt = make_optimizer(params)
    for _ in range(steps):
        opt.zero_grad()
        h = torch.tensor(X)
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            if i < len(params) - 2:
                h = activation(h)
        LOSSES[loss](h, torch.tensor(y)).backward()
        opt.step()
    return [p.detach().numpy() for p in params]


@pytest.mark.parametrize("ours,theirs", OPTIMIZERS, ids=["sgd", "momentum", "nesterov-l2", "rmsprop-l2", "adam",
                                                         "adam-l2"])
def test_training_matches_pytorch(backend, ours, theirs, rng):
    X, y = rng.standard_normal((8, 3)), rng.integers(0, 3, 8)
    net = xn.MLP([3, 5, 3], activation="tanh", dtype="float64", seed=0, backend=backend)
    expected = torch_run(net.get_weights(), X, y, "softmax_ce", theirs, 10)
    step = net.compile("softmax_ce", xn.optim.get(ours.config()))
    for _ in range(10):
        step(X, y)
    for got, want in zip(net.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", list(LOSSES))
def test_losses_match_pytorch(loss, rng):
    X = rng.standard_normal((8, 3))
    n_out = 3 if loss == "softmax_ce" else 2
    y = rng.integers(0, 3, 8) if loss == "softmax_ce" else \
        rng.standard_normal((8, 2)) if loss == "mse" else rng.integers(0, 2, (8, 2)).astype(float)
    out_act = "sigmoid" if loss == "bce" else None
    net = xn.MLP([3, 4, n_out], activation="tanh", output_activation=out_act, dtype="float64", seed=1)
    weights = net.get_weights()
    expected = torch_run(weights, X, y, loss, lambda p: torch.optim.SGD(p, lr=0.5), 3)
    step = net.compile(loss, xn.optim.SGD(0.5))
    for _ in range(3):
        step(X, y)
    for got, want in zip(net.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_one_hot_and_integer_labels_agree(rng):
    X, y = rng.standard_normal((6, 2)), rng.integers(0, 3, 6)
    net = xn.MLP([2, 3], dtype="float64")
    np.testing.assert_allclose(xn.backprop(net, "softmax_ce", X, y)[0],
                               xn.backprop(net, "softmax_ce", X, np.eye(3)[y])[0])


def test_optimizer_state_round_trips(rng):
    X, y = rng.standard_normal((8, 3)), rng.integers(0, 3, 8)
    net = xn.MLP([3, 4, 3], dtype="float64")
    opt = xn.optim.Adam(0.01)
    step = net.compile("softmax_ce", opt)
    step(X, y)
    state = opt.state_dict(net.backend)
    twin_net, twin_opt = net.copy(), xn.optim.get(state["config"])
    twin_opt.load_state_dict(twin_net.backend, state, twin_net.parameters())
    step(X, y)
    twin_net.compile("softmax_ce", twin_opt)(X, y)
    for a, b in zip(net.get_weights(), twin_net.get_weights()):
        np.testing.assert_array_equal(a, b)
