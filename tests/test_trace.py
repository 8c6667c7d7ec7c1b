"""xn.trace: its gradients are backprop's, its δ are ∂C/∂z by finite differences, its table names BP1–BP4."""
import numpy as np
import pytest

import xpnet as xn
from xpnet import kernels, losses
from xpnet.validation import prepare

CASES = {  # loss → (output activation, targets for n samples and k outputs)
    "mse": ("sigmoid", lambda rng, n, k: rng.standard_normal((n, k))),
    "bce": ("sigmoid", lambda rng, n, k: rng.integers(0, 2, (n, k)).astype(float)),
    "softmax_ce": ("identity", lambda rng, n, k: rng.integers(0, k, n)),
}


def make(backend, loss, activation="tanh", sizes=(3, 5, 4, 3), n=4, seed=0):
    rng = np.random.default_rng(seed)
    net = xn.MLP(list(sizes), activation=activation, output_activation=CASES[loss][0], dtype="float64",
                 seed=seed, backend=backend)
    return net, rng.standard_normal((n, sizes[0])), CASES[loss][1](rng, n, sizes[-1])


@pytest.mark.parametrize("loss", list(CASES))
def test_trace_gradients_are_backprop_gradients(backend, loss):
    net, X, y = make(backend, loss)
    traced = xn.trace(net, loss, X, y)
    exact = xn.backprop(net, loss, X, y)
    assert len(traced.gradients()) == len(exact) == 6
    for got, want in zip(traced.gradients(), exact):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert traced.loss == pytest.approx(net.evaluate(X, y, loss)["loss"], rel=1e-12)


def cost_from_z(net, loss, layer_index, z, T):
    """C as a function of the pre-activation z of Dense layer ``layer_index``, the rest of the net fixed."""
    backend = net.backend
    layer = net.layers[layer_index]
    out = backend.activation(backend.asarray(z, dtype=backend.dtype("float64")), layer.activation, layer.alpha)
    for above in net.layers[layer_index + 1:]:
        out, _ = above.forward(out)
    return backend.scalar(loss.value(backend, out, T))


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "leaky_relu", "gelu"])
@pytest.mark.parametrize("loss", list(CASES))
def test_trace_delta_is_dC_dz_by_finite_differences(backend, loss, activation):
    net, X, y = make(backend, loss, activation=activation)
    traced = xn.trace(net, loss, X, y)
    loss_obj = losses.get(loss)
    _, T = prepare(net, loss_obj, X, y)
    eps = 1e-6
    for index, record in enumerate(traced.layers):
        z = record.z.copy()
        numeric = np.zeros_like(z)
        for i in np.ndindex(*z.shape):
            old = z[i]
            z[i] = old + eps
            plus = cost_from_z(net, loss_obj, index, z, T)
            z[i] = old - eps
            minus = cost_from_z(net, loss_obj, index, z, T)
            z[i] = old
            numeric[i] = (plus - minus) / (2 * eps)
        scale = np.max(np.abs(numeric))
        assert scale > 0
        assert np.max(np.abs(record.delta - numeric)) / scale < 1e-6, f"layer {index + 1}"


def test_trace_records_what_each_equation_says():
    net, X, y = make("numpy", "mse", activation="sigmoid")
    traced = xn.trace(net, "mse", X, y)
    weights = net.get_weights()
    below = X
    for k, t in enumerate(traced.layers):
        W, b = weights[2 * k], weights[2 * k + 1]
        np.testing.assert_array_equal(t.x, below)
        np.testing.assert_allclose(t.z, below @ W + b, rtol=1e-12)
        np.testing.assert_allclose(t.a, kernels.sigmoid(np, t.z, 0.0), rtol=1e-12)
        np.testing.assert_allclose(t.grad_b, t.delta.sum(axis=0), rtol=1e-12)  # BP3
        np.testing.assert_allclose(t.grad_W, t.x.T @ t.delta, rtol=1e-12)  # BP4
        below = t.a
    for t, above, W_above in zip(traced.layers, traced.layers[1:], weights[2::2]):
        np.testing.assert_allclose(t.delta, (above.delta @ W_above.T) * t.a * (1 - t.a), rtol=1e-12)  # BP2
    np.testing.assert_allclose(traced.output, traced.layers[-1].a)


def test_trace_prints_a_table_labelled_with_the_equations():
    X, y = xn.datasets.xor()
    net = xn.MLP([2, 2, 1], activation="sigmoid", output_activation="sigmoid", seed=0)
    text = str(xn.trace(net, "mse", X[1:2], y[1:2]))
    for label in ("BP1", "BP2", "BP3", "BP4", "z¹ = a⁰W¹ + b¹", "a² = sigmoid(z²)", "δ¹ = (δ²W²ᵀ) ⊙ σ'(z¹)"):
        assert label in text, label
    assert text.count("    BP2 ") == 1 and text.count("    BP3 ") == 2  # BP2 only below the output layer
    numbers = [w for line in text.splitlines()[1:] for w in line.replace("[", " ").replace("]", " ").split()
               if w.lstrip("-").replace(".", "", 1).isdigit()]
    assert numbers and all(len(w.lstrip("-").replace(".", "").lstrip("0")) <= 4 for w in numbers)  # 4 digits


def test_large_tensors_are_summarised_and_softmax_output_is_named():
    net = xn.MLP([10, 32, 3], seed=0)
    X = np.random.default_rng(0).standard_normal((20, 10))
    traced = xn.trace(net, "softmax_ce", X, np.arange(20) % 3)
    text = repr(traced)
    assert "shape (20, 32), mean" in text and "shape (10, 32), mean" in text
    assert "δ² = (softmax(z²) − y) / n" in text
    assert traced.layers[0].grad_W.shape == (10, 32) and len(text.splitlines()) < 40


def test_dropout_layers_are_skipped_and_dropout_is_off():
    net = xn.Sequential([xn.layers.Dense(3, 4, activation="relu"), xn.layers.Dropout(0.5),
                         xn.layers.Dense(4, 1)], seed=0)
    X = np.random.default_rng(1).standard_normal((5, 3))
    y = np.random.default_rng(2).standard_normal((5, 1))
    first, second = xn.trace(net, "mse", X, y), xn.trace(net, "mse", X, y)
    assert [t.index for t in first.layers] == [1, 2]
    np.testing.assert_array_equal(first.layers[1].x, first.layers[0].a)  # dropout passed a through unchanged
    for a, b in zip(first.gradients(), second.gradients()):
        np.testing.assert_array_equal(a, b)
