"""Numerical safety on every backend: huge logits, the gradient-norm clip, and divergence."""
import contextlib
import math
import re
import warnings

import numpy as np
import pytest

special = pytest.importorskip("scipy.special", reason="SciPy gives the reference values (pip install scipy)")

import xpnet as xn  # noqa: E402 (after the importorskip)

# Rows mixing the extremes: |z| up to 1e4, where e^z overflows even float64.
Z = np.array([[-1e4, -1e3, -100.0, -20.0, -1.0, 0.0],
              [1.0, 20.0, 100.0, 1e3, 1e4, 0.0],
              [1e4, -1e4, 1e4, -1e4, 0.5, -0.5],
              [1e4, 1e4, 1e4, 1e4, 1e4, 9999.0]])
T = np.array([[0, 1, 0, 1, 0, 1], [1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 1], [1, 1, 0, 0, 1, 0]], dtype=float)
LABELS = np.eye(6)[[0, 4, 1, 5]]  # one-hot, each on a different kind of entry
TOL = {"float32": dict(rtol=1e-6, atol=1e-30), "float64": dict(rtol=1e-12, atol=1e-300)}


@contextlib.contextmanager
def strict_numerics():
    """No warning and no silent overflow, invalid or divide-by-zero: any of them raises here."""
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sigmoid_softmax_logsumexp_stay_finite_and_right_for_huge_inputs(backend, dtype):
    z = backend.asarray(Z, dtype=backend.dtype(dtype))
    with strict_numerics():
        got = {"sigmoid": backend.activation(z, "sigmoid", 0.0), "softmax": backend.softmax(z),
               "logsumexp": backend.logsumexp(z)}
    want = {"sigmoid": special.expit(Z), "softmax": special.softmax(Z, axis=1),
            "logsumexp": special.logsumexp(Z, axis=1, keepdims=True)}
    for name, value in got.items():
        assert value.dtype == backend.dtype(dtype), name
        host = backend.to_numpy(value)
        assert np.all(np.isfinite(host)), name
        np.testing.assert_allclose(host, want[name].astype(dtype), **TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["bce", "bce_logits", "softmax_ce"])
def test_losses_stay_finite_for_huge_inputs(backend, dtype, loss):
    """BCE on probabilities gets σ(z) (exactly 0 or 1 at the extremes, then clipped); the others get z."""
    xp_dtype = backend.dtype(dtype)
    z = backend.asarray(Z, dtype=xp_dtype)
    pred = backend.activation(z, "sigmoid", 0.0) if loss == "bce" else z
    target = backend.asarray(LABELS if loss == "softmax_ce" else T, dtype=xp_dtype)
    with strict_numerics():
        value, grad = backend.loss_and_grad(loss, pred, target)
    assert value.dtype == xp_dtype and grad.dtype == xp_dtype
    value, grad = float(backend.to_numpy(value)), backend.to_numpy(grad)
    assert math.isfinite(value) and np.all(np.isfinite(grad))
    if loss == "bce_logits":  # log(1 + e^z) − z t, exactly
        np.testing.assert_allclose(value, np.mean(np.logaddexp(0, Z) - Z * T), rtol=1e-6)
    elif loss == "softmax_ce":
        np.testing.assert_allclose(value, np.mean(special.logsumexp(Z, axis=1) - np.sum(LABELS * Z, axis=1)),
                                   rtol=1e-6)
        np.testing.assert_allclose(grad, (special.softmax(Z, axis=1) - LABELS) / len(Z), atol=1e-7)
    else:  # clipped at eps, so a confident wrong answer costs about −log(eps), not inf
        eps = 1e-7 if dtype == "float32" else 1e-12
        # 1 − eps rounded to the dtype is not 1 − eps: a kernel that clips in the dtype pays −log(1 − fl(1 − eps)),
        # one that clips in float64 (numba's) pays −log(eps). Either is right; the value lies between them.
        bounds = []
        for clip_dtype in (dtype, "float64"):
            p = np.clip(special.expit(Z).astype(dtype).astype(clip_dtype), eps, 1 - eps).astype(np.float64)
            bounds.append(-np.mean(T * np.log(p) + (1 - T) * np.log(1 - p)))
        assert min(bounds) * (1 - 1e-5) <= value <= max(bounds) * (1 + 1e-5), (value, bounds)


# ---- the global gradient-norm clip ---------------------------------------------------------------------

def global_norm(grads):
    """The L2 norm of all the gradients together, by math.hypot (which does not overflow)."""
    return math.hypot(*np.concatenate([np.asarray(g, np.float64).ravel() for g in grads]))


def reference_clip(grads, limit):
    norm = global_norm(grads)
    return [np.asarray(g, np.float64) * min(1.0, limit / (norm + 1e-6)) for g in grads]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e30], ids=["small", "unit", "huge"])
def test_clip_grad_norm_matches_the_reference(backend, rng, dtype, scale):
    """'huge': squaring 1e30 overflows float32, the scaled norm must not."""
    if dtype == "float64" and scale == 1e30:
        scale = 1e200
    host = [rng.standard_normal(s) * scale for s in ((3, 4), (4,), (4, 2), (2,))]
    grads = [backend.asarray(g, dtype=backend.dtype(dtype)) for g in host]
    with strict_numerics():
        clipped = backend.clip_grad_norm(grads, 0.5)
    for got, want in zip(clipped, reference_clip([backend.to_numpy(g) for g in grads], 0.5)):
        assert got.dtype == backend.dtype(dtype)
        np.testing.assert_allclose(backend.to_numpy(got), want, rtol=2e-6 if dtype == "float32" else 1e-12)
    norm = global_norm([backend.to_numpy(g) for g in clipped])
    assert norm <= 0.5 * (1 + 1e-5) and (scale < 1 or norm > 0.49)


def test_clip_grad_norm_leaves_small_gradients_exactly_alone(backend, rng):
    grads = [backend.asarray(rng.standard_normal((3, 2)) * 1e-3)]
    np.testing.assert_array_equal(backend.to_numpy(backend.clip_grad_norm(grads, 10.0)[0]),
                                  backend.to_numpy(grads[0]))


def test_fit_with_clip_norm_takes_exactly_the_clipped_step(backend):
    """One full-batch SGD epoch with clip_norm = the update computed by hand from backprop's gradients."""
    X, y = xn.datasets.moons(n=40, seed=0)
    net = xn.MLP([2, 6, 2], activation="tanh", dtype="float64", seed=0, backend=backend)
    before = net.get_weights()
    grads = xn.backprop(net.copy(backend="numpy"), "softmax_ce", X, y)
    assert global_norm(grads) > 0.05  # so the clip below bites
    net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.SGD(0.5), epochs=1, batch_size=None, clip_norm=0.05,
            shuffle=False, progress=False)
    for got, w, g in zip(net.get_weights(), before, reference_clip(grads, 0.05)):
        np.testing.assert_allclose(got, w - 0.5 * g, rtol=1e-10, atol=1e-12)


def test_every_compiled_step_honours_clip_norm(backend):
    """A backend whose fast step cannot clip must fall back to one that does."""
    X, y = xn.datasets.xor()
    net = xn.MLP([2, 3, 1], activation="sigmoid", dtype="float64", seed=0, backend=backend)
    grads = xn.backprop(net.copy(backend="numpy"), "mse", X, y)
    before = net.get_weights()
    net.compile("mse", xn.optim.SGD(1.0), clip_norm=1e-3)(X, y)
    for got, w, g in zip(net.get_weights(), before, reference_clip(grads, 1e-3)):
        np.testing.assert_allclose(got, w - g, rtol=1e-10, atol=1e-12)


def test_clip_norm_keeps_an_overflowing_run_finite():
    X, y = np.full((8, 2), 1e3), np.full(8, 1e3)
    net = xn.MLP([2, 8, 1], activation="relu", seed=0)
    with np.errstate(all="ignore"), pytest.raises(xn.errors.DivergenceError):
        net.copy().fit(X, y, optimizer=xn.optim.SGD(1.0), epochs=30, batch_size=4, progress=False)
    hist = net.fit(X, y, optimizer=xn.optim.SGD(1.0), epochs=30, batch_size=4, clip_norm=1.0, progress=False)
    assert all(math.isfinite(v) for v in hist.history["loss"])


# ---- divergence -------------------------------------------------------------------------------------------

def test_divergence_names_epoch_and_batch_and_rolls_back_net_and_optimiser(backend):
    """Also through compiled steps (numba's fused step keeps weights and state as views it updates in place)."""
    def make():
        return xn.MLP([2, 8, 1], activation="relu", seed=0, backend=backend), xn.optim.SGD(1.0, momentum=0.5)

    def train(net, opt, epochs):
        with np.errstate(all="ignore"):
            net.fit(np.full((8, 2), 1e3), np.full(8, 1e3), optimizer=opt, epochs=epochs, batch_size=4,
                    progress=False)

    net, opt = make()
    with pytest.raises(xn.errors.DivergenceError, match=r"in epoch \d+, batch \d of 2; .* after epoch \d+") as info:
        train(net, opt, 30)
    assert isinstance(info.value, FloatingPointError)
    epoch = int(re.search(r"in epoch (\d+)", str(info.value)).group(1))
    assert epoch >= 2, "the test needs an epoch that completed before the divergence"
    good_net, good_opt = make()
    train(good_net, good_opt, epoch - 1)
    for got, want in zip(net.get_weights(), good_net.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert opt.steps == good_opt.steps == 2 * (epoch - 1)
    for got, want in zip(opt.state["velocity"], good_opt.state["velocity"]):
        np.testing.assert_array_equal(backend.to_numpy(got), backend.to_numpy(want))


def test_weights_that_overflow_in_an_epochs_last_update_are_not_kept():
    """The loss of that batch was computed before the update, so it is finite: the weights must be checked too."""
    net = xn.MLP([2, 8, 1], activation="relu", seed=0)
    with np.errstate(all="ignore"), pytest.raises(xn.errors.DivergenceError, match="last update of epoch 3"):
        net.fit(np.full((8, 2), 1e3), np.full(8, 1e3), optimizer=xn.optim.SGD(10.0), epochs=30, progress=False)
    assert all(np.all(np.isfinite(w)) for w in net.get_weights())
