"""Backprop against float64 central finite differences: every activation × loss, 1–3 hidden layers, odd sizes."""
import numpy as np
import pytest

import xpnet as xn
from xpnet import kernels

LOSSES = {  # loss → (output activation, target maker)
    "mse": ("identity", lambda rng, n, k: rng.standard_normal((n, k))),
    "bce": ("sigmoid", lambda rng, n, k: rng.integers(0, 2, (n, k)).astype(float)),
    "bce_logits": ("identity", lambda rng, n, k: rng.integers(0, 2, (n, k)).astype(float)),
    "softmax_ce": ("identity", lambda rng, n, k: rng.integers(0, k, n)),
}
HIDDEN = {1: [7], 2: [7, 3], 3: [5, 7, 4]}


def data(rng, n_in, n, loss, n_out):
    return rng.standard_normal((n, n_in)), LOSSES[loss][1](rng, n, n_out)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("activation", list(kernels.ACTIVATIONS))
def test_gradcheck_every_activation_and_loss(backend, activation, loss, depth, rng):
    n_out = 3 if loss == "softmax_ce" else 2
    net = xn.MLP([3, *HIDDEN[depth], n_out], activation=activation, output_activation=LOSSES[loss][0],
                 dtype="float64", seed=1, backend=backend)
    X, y = data(rng, 3, 6, loss, n_out)
    errors = xn.gradcheck(net, loss, X, y)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("loss", ["mse", "softmax_ce", "bce"])
def test_gradcheck_depths_and_odd_sizes(backend, depth, loss, rng):
    n_in, n_out = 1, (2 if loss == "softmax_ce" else 1)  # 1 input, 1 output (2 classes for softmax)
    net = xn.MLP([n_in, *HIDDEN[depth], n_out], activation="tanh", output_activation=LOSSES[loss][0],
                 seed=2, backend=backend)
    X, y = data(rng, n_in, 5, loss, n_out)
    errors = xn.gradcheck(net, loss, X, y)
    assert len(errors) == 2 * (depth + 1)
    assert max(errors.values()) < 1e-6, errors


def test_gradcheck_on_non_contiguous_inputs(backend, rng):
    wide = rng.standard_normal((8, 6))
    X = wide[::2, ::2]  # 4 × 3, strided in both axes
    assert not X.flags.c_contiguous
    y = rng.integers(0, 3, 4)
    net = xn.MLP([3, 7, 3], activation="gelu", backend=backend, seed=3)
    assert max(xn.gradcheck(net, "softmax_ce", X, y).values()) < 1e-6
    np.testing.assert_allclose(np.concatenate([g.ravel() for g in xn.backprop(net, "softmax_ce", X, y)]),
                               np.concatenate([g.ravel() for g in
                                               xn.backprop(net, "softmax_ce", np.ascontiguousarray(X), y)]))


def test_gradcheck_catches_a_wrong_gradient(rng, monkeypatch):
    """The check can fail: a backward pass with BP3 off by a factor is reported."""
    from xpnet.backends.numpy_backend import NumpyBackend

    @xn.layers.register
    class WrongBias(xn.layers.Dense):
        """A Dense layer whose bias gradient is 10 % too large."""

        def forward(self, x, training=False):
            y, backward = super().forward(x, training)

            def wrong(grad_y, need_grad_x=True):
                grad_x = backward(grad_y, need_grad_x)
                self.grads["b"] = 1.1 * self.grads["b"]
                return grad_x

            return y, wrong

    net = xn.Sequential([WrongBias(2, 3, activation="tanh"), WrongBias(3, 1)], backend=NumpyBackend())
    errors = xn.gradcheck(net, "mse", *data(rng, 2, 4, "mse", 1))
    assert errors["0.b"] > 0.05 and errors["1.b"] > 0.05 and errors["0.W"] < 1e-6


@pytest.mark.parametrize("method", ["central", "forward"])
def test_finite_difference_approximates_backprop(backend, method, rng):
    net = xn.MLP([2, 4, 1], activation="sigmoid", dtype="float64", backend=backend)
    X, y = data(rng, 2, 5, "mse", 1)
    exact = xn.backprop(net, "mse", X, y)
    approx = xn.finite_difference(net, "mse", X, y, eps=1e-5, method=method)
    for e, a in zip(exact, approx):
        np.testing.assert_allclose(a, e, rtol=0, atol=1e-4 if method == "forward" else 1e-8)


def test_finite_difference_leaves_weights_unchanged(backend, rng):
    net = xn.MLP([2, 3, 2], backend=backend)
    before = net.get_weights()
    xn.finite_difference(net, "softmax_ce", *data(rng, 2, 4, "softmax_ce", 2))
    for b, a in zip(before, net.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_gradients_are_float32_for_float32_nets(backend, rng):
    net = xn.MLP([2, 3, 2], backend=backend)
    grads = xn.backprop(net, "softmax_ce", *data(rng, 2, 4, "softmax_ce", 2))
    assert all(g.dtype == np.float32 for g in grads)


def test_backprop_matches_torch_autograd(rng):
    torch = pytest.importorskip("torch")
    net = xn.MLP([3, 5, 4, 3], activation="gelu", dtype="float64", seed=4)
    X, y = rng.standard_normal((6, 3)), rng.integers(0, 3, 6)
    params = [torch.tensor(w, requires_grad=True) for w in net.get_weights()]
    h = torch.tensor(X)
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i < len(params) - 2:
            h = torch.nn.functional.gelu(h)
    torch.nn.functional.cross_entropy(h, torch.tensor(y)).backward()
    for ours, theirs in zip(xn.backprop(net, "softmax_ce", X, y), params):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-13)
