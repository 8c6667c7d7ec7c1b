"""Every base kernel against a NumPy reference and float64 finite differences, on every backend."""
import math

import numpy as np
import pytest

import xpnet as xn
from xpnet import kernels

from checker import check_op

ACTIVATIONS = list(kernels.ACTIVATIONS)
_erf = np.vectorize(math.erf)
REFERENCE = {
    "identity": lambda z: z,
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z),
    "gelu": lambda z: 0.5 * z * (1 + _erf(z / np.sqrt(2))),
    "gelu_tanh": lambda z: 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3))),
}


def away_from_kinks(rng, shape):
    """Random pre-activations at least 0.01 from 0, where ReLU's slope jumps."""
    z = rng.uniform(-3, 3, shape)
    return np.where(np.abs(z) < 0.01, 0.5, z)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_forward_backward(backend, activation, rng):
    z = away_from_kinks(rng, (4, 5))

    def forward(z):
        return backend.activation(z, activation, 0.01)

    def backward(grad_a, z):
        return [backend.activation_backward(grad_a, z, forward(z), activation, 0.01)]

    check_op(backend, forward, [z], reference=REFERENCE[activation], backward=backward)


def dense_layer(backend, W, b, activation):
    """A Dense layer on ``backend`` holding W and b (backend arrays, kept as they are)."""
    layer = xn.layers.Dense(W.shape[0], W.shape[1], activation=activation)
    layer.attach(backend, "float64" if W.dtype == backend.dtype("float64") else "float32")
    layer.params = {"W": W, "b": b}
    return layer


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_forward_backward(backend, activation, rng):
    """The Dense layer's forward and its backward (BP1–BP4) against NumPy and float64 finite differences."""
    x, W, b = away_from_kinks(rng, (3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)

    def forward(x, W, b):
        return dense_layer(backend, W, b, activation).forward(x)[0]

    def backward(grad_a, x, W, b):
        layer = dense_layer(backend, W, b, activation)
        grad_x = layer.forward(x)[1](grad_a)
        return grad_x, layer.grads["W"], layer.grads["b"]

    check_op(backend, forward, [x, W, b], reference=lambda x, W, b: REFERENCE[activation](x @ W + b),
             backward=backward)


def test_dense_backward_skips_grad_x(backend, rng):
    x, W, b = (backend.asarray(a) for a in (rng.standard_normal((3, 2)), rng.standard_normal((2, 4)),
                                            rng.standard_normal(4)))
    layer = dense_layer(backend, W, b, "tanh")
    a, backward = layer.forward(x)
    assert backward(a, need_grad_x=False) is None
    assert tuple(layer.grads["W"].shape) == (2, 4) and tuple(layer.grads["b"].shape) == (4,)


def test_sigmoid_and_losses_stay_finite_for_huge_inputs(backend):
    for dtype in ("float32", "float64"):
        z = backend.asarray(np.array([[-1e4, -50.0, 0.0, 50.0, 1e4]]), dtype=backend.dtype(dtype))
        assert np.all(np.isfinite(backend.to_numpy(backend.activation(z, "sigmoid", 0.0))))
        target = backend.asarray(np.array([[0.0, 1.0, 0.0, 1.0, 0.0]]), dtype=backend.dtype(dtype))
        for loss in ("bce_logits", "softmax_ce"):
            value, grad = backend.loss_and_grad(loss, z, target)
            assert math.isfinite(float(value)) and np.all(np.isfinite(backend.to_numpy(grad)))


LOSS_REFERENCE = {
    "mse": lambda p, t: np.mean((p - t) ** 2),
    "bce": lambda p, t: -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)),
    "bce_logits": lambda z, t: -np.mean(t * np.log(1 / (1 + np.exp(-z))) + (1 - t) * np.log(1 - 1 / (1 + np.exp(-z)))),
    "softmax_ce": lambda z, t: -np.mean(np.sum(t * (z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))), axis=1)),
}


@pytest.mark.parametrize("loss", list(LOSS_REFERENCE))
def test_loss_value_and_gradient(backend, loss, rng):
    pred = rng.uniform(0.05, 0.95, (6, 3)) if loss == "bce" else rng.standard_normal((6, 3))
    if loss == "softmax_ce":
        target = np.eye(3)[rng.integers(0, 3, 6)]
    elif loss.startswith("bce"):
        target = rng.integers(0, 2, (6, 3)).astype(float)
    else:
        target = rng.standard_normal((6, 3))
    tgt = {dtype: backend.asarray(target, dtype=backend.dtype(dtype)) for dtype in ("float32", "float64")}

    def forward(pred):
        return backend.loss(loss, pred, tgt[str(pred.dtype).split(".")[-1]])

    def backward(grad_out, pred):
        return [backend.loss_and_grad(loss, pred, tgt[str(pred.dtype).split(".")[-1]])[1] * grad_out]

    check_op(backend, forward, [pred], reference=lambda p: LOSS_REFERENCE[loss](p, target), backward=backward)


def test_erf_series_matches_math_erf():
    x = np.linspace(-8, 8, 2001)
    np.testing.assert_allclose(kernels.erf_series(np, x), _erf(x), rtol=0, atol=4e-15)


def test_backend_erf_matches_math_erf(backend):
    x = np.linspace(-5, 5, 101)
    got = backend.to_numpy(backend.math.erf(backend.asarray(x, dtype=backend.dtype("float64"))))
    np.testing.assert_allclose(got, _erf(x), rtol=0, atol=4e-15)


# ---- optimiser updates against plain NumPy transcriptions of PyTorch's formulas ----

def reference_update(kind, p, g, state, hp, step):
    g = g + hp.get("weight_decay", 0.0) * p
    if kind == "sgd":
        if not hp["momentum"]:
            return p - hp["lr"] * g, state
        v = hp["momentum"] * state[0] + g
        d = g + hp["momentum"] * v if hp["nesterov"] else v
        return p - hp["lr"] * d, [v]
    if kind == "rmsprop":
        s = hp["rho"] * state[0] + (1 - hp["rho"]) * g * g
        return p - hp["lr"] * g / (np.sqrt(s) + hp["eps"]), [s]
    m = hp["beta1"] * state[0] + (1 - hp["beta1"]) * g
    v = hp["beta2"] * state[1] + (1 - hp["beta2"]) * g * g
    mhat, vhat = m / (1 - hp["beta1"] ** step), v / (1 - hp["beta2"] ** step)
    return p - hp["lr"] * mhat / (np.sqrt(vhat) + hp["eps"]), [m, v]


UPDATES = [
    ("sgd", {"lr": 0.1, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.01}),
    ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0}),
    ("rmsprop", {"lr": 0.01, "rho": 0.9, "eps": 1e-8, "weight_decay": 0.01}),
    ("adam", {"lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}),
    ("adam", {"lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind,hp", UPDATES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(UPDATES)])
def test_update_kernels_match_reference(backend, kind, hp, dtype, rng):
    n_state = {"sgd": 1 if hp.get("momentum") else 0, "rmsprop": 1, "adam": 2}[kind]
    p0 = rng.standard_normal((5, 3))
    state0 = [np.abs(rng.standard_normal((5, 3))) for _ in range(n_state)]
    dt = backend.dtype(dtype)
    p, state = backend.asarray(p0.copy(), dtype=dt), [backend.asarray(s.copy(), dtype=dt) for s in state0]
    expected_p, expected_state = p0, state0
    for step in (1, 2, 3):
        g0 = rng.standard_normal((5, 3))
        g = backend.asarray(g0, dtype=dt)
        if kind == "sgd":
            backend.sgd_update(p, g, state[0] if state else None, hp["lr"], hp["momentum"], hp["nesterov"],
                               hp["weight_decay"])
        elif kind == "rmsprop":
            backend.rmsprop_update(p, g, state[0], hp["lr"], hp["rho"], hp["eps"], hp["weight_decay"])
        else:
            backend.adam_update(p, g, state[0], state[1], hp["lr"], hp["beta1"], hp["beta2"], hp["eps"],
                                hp["weight_decay"], step)
        expected_p, expected_state = reference_update(kind, expected_p, g0, expected_state, hp, step)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-14)
    assert p.dtype == dt
    np.testing.assert_allclose(backend.to_numpy(p), expected_p, **tol)
    for s, e in zip(state, expected_state):
        np.testing.assert_allclose(backend.to_numpy(s), e, **tol)


def test_max_norm_caps_column_norms(backend, rng):
    W0 = rng.standard_normal((6, 4)) * np.array([0.01, 1.0, 3.0, 10.0])
    W = backend.asarray(W0.copy(), dtype=backend.dtype("float64"))
    backend.max_norm(W, 1.5)
    norms_before = np.linalg.norm(W0, axis=0)
    expected = W0 * np.minimum(1.0, 1.5 / norms_before)
    np.testing.assert_allclose(backend.to_numpy(W), expected, rtol=1e-12)
    assert np.all(np.linalg.norm(backend.to_numpy(W), axis=0) <= 1.5 + 1e-12)


def test_dropout_mask_is_inverted_and_seeded(backend):
    mask = backend.to_numpy(backend.dropout_mask(backend.rng(3), (200, 50), 0.25, backend.dtype("float32")))
    assert set(np.unique(mask)) <= {0.0, np.float32(1 / 0.75)}
    assert abs((mask == 0).mean() - 0.25) < 0.02
    again = backend.to_numpy(backend.dropout_mask(backend.rng(3), (200, 50), 0.25, backend.dtype("float32")))
    np.testing.assert_array_equal(mask, again)


def test_one_hot_and_take_rows(backend):
    labels = backend.asarray(np.array([2, 0, 1]))
    onehot = backend.to_numpy(backend.one_hot(labels, 3, backend.dtype("float32")))
    np.testing.assert_array_equal(onehot, np.eye(3)[[2, 0, 1]])
    X = backend.asarray(np.arange(12.0).reshape(4, 3))
    rows = backend.to_numpy(backend.take_rows(X, backend.asarray(np.array([3, 1]))))
    np.testing.assert_array_equal(rows, np.arange(12.0).reshape(4, 3)[[3, 1]])
