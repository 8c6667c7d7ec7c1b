"""Training: the classic XOR experiment both ways, real data sets, early stopping, History."""
import math
import warnings

import numpy as np
import pytest

import xpnet as xn


def xor_net(backend, seed=0):
    return xn.MLP([2, 2, 1], activation="sigmoid", output_activation="sigmoid", init=xn.init.Uniform(0, 1),
                  seed=seed, backend=backend)


@pytest.mark.parametrize("gradient", ["backprop", "finite_difference"])
def test_xor_full_batch_gradient_descent_learns(backend, gradient):
    """The articles' experiment, shortened: 2-2-1 sigmoid, MSE, weights uniform in [0, 1].

    Backprop runs the articles' lr 1; finite differences, 2P forward passes a step, take lr 5 to need fewer steps.
    """
    X, y = xn.datasets.xor()
    net = xor_net(backend)
    lr, steps = (1.0, 3000) if gradient == "backprop" else (5.0, 600)
    step = net.compile("mse", xn.optim.SGD(lr=lr), gradient=gradient)
    assert step.repeat(X, y, steps) < 0.01
    assert net.evaluate(X, y, "mse")["loss"] < 0.01
    assert np.array_equal(net.predict(X) > 0.5, y > 0.5)


def test_fit_with_finite_differences_matches_backprop_closely():
    X, y = xn.datasets.xor()
    by_bp, by_fd = xor_net("numpy").copy(dtype="float64"), xor_net("numpy").copy(dtype="float64")
    by_bp.fit(X, y, loss="mse", optimizer=xn.optim.SGD(1.0), epochs=200, batch_size=None, progress=False)
    by_fd.fit(X, y, loss="mse", optimizer=xn.optim.SGD(1.0), epochs=200, batch_size=None, progress=False,
              gradient="finite_difference")
    for a, b in zip(by_bp.get_weights(), by_fd.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_spirals_reach_95_percent(backend):
    X, y = xn.datasets.spirals(n=600, seed=0)
    net = xn.MLP([2, 16, 16, 2], activation="tanh", seed=0, backend=backend)
    hist = net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.Adam(0.01), epochs=40, batch_size=32, progress=False)
    assert hist.history["accuracy"][-1] >= 0.95
    assert net.evaluate(X, y, "softmax_ce")["accuracy"] >= 0.95


def test_digits_reach_95_percent_test_accuracy():
    pytest.importorskip("sklearn", reason="digits come with scikit-learn (pip install 'xpnet[sklearn]')")
    X, y = xn.datasets.digits()
    (Xtr, ytr), (Xva, yva), (Xte, yte) = xn.datasets.train_val_test_split(X, y, val=0.15, test=0.15, seed=0)
    scaler = xn.datasets.Standardizer().fit(Xtr)
    net = xn.MLP([64, 64, 10], activation="relu", seed=0)
    hist = net.fit(scaler.transform(Xtr), ytr, loss="softmax_ce", optimizer=xn.optim.Adam(0.003), epochs=30,
                   validation_data=(scaler.transform(Xva), yva), early_stopping=5, progress=False)
    assert "val_accuracy" in hist.history
    assert net.evaluate(scaler.transform(Xte), yte, "softmax_ce")["accuracy"] >= 0.95


@pytest.mark.parametrize("optimizer", [xn.optim.SGD(0.1, momentum=0.9, nesterov=True),
                                       xn.optim.RMSProp(0.01), xn.optim.Adam(0.01, weight_decay=1e-4)],
                         ids=["nesterov", "rmsprop", "adam-l2"])
def test_every_optimiser_lowers_the_loss(backend, optimizer):
    X, y = xn.datasets.moons(n=200, seed=1)
    net = xn.MLP([2, 8, 2], activation="relu", seed=0, backend=backend)
    hist = net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.get(optimizer.config()), epochs=15,
                   progress=False)
    assert hist.history["loss"][-1] < 0.7 * hist.history["loss"][0]


def test_history_fields(backend):
    X, y = xn.datasets.circles(n=100, seed=0)
    hist = xn.MLP([2, 8, 2], backend=backend).fit(X, y, loss="softmax_ce", epochs=3, validation_split=0.2,
                                                  progress=False)
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "samples_per_sec"}
    assert all(len(v) == 3 for v in hist.history.values()) and hist.epochs == 3
    assert all(0 <= a <= 1 for a in hist.history["val_accuracy"])
    assert all(s > 0 for s in hist.history["samples_per_sec"])
    mse_hist = xn.MLP([2, 4, 1]).fit(X, y, loss="mse", epochs=2, progress=False)
    assert set(mse_hist.history) == {"loss", "lr", "samples_per_sec"}


def test_early_stopping_restores_the_best_weights():
    X, y = xn.datasets.moons(n=200, seed=0)
    (Xtr, ytr), (Xva, yva), _ = xn.datasets.train_val_test_split(X, y, val=0.3, test=0.0, seed=0)
    net = xn.MLP([2, 32, 2], activation="relu", seed=0)
    # A learning rate high enough that validation loss bounces, so the last epoch is not the best.
    hist = net.fit(Xtr, ytr, loss="softmax_ce", optimizer=xn.optim.SGD(2.0), epochs=60,
                   validation_data=(Xva, yva), early_stopping=xn.EarlyStopping(patience=3), progress=False)
    best = int(np.argmin(hist.history["val_loss"])) + 1
    assert hist.best_epoch == best
    assert hist.stopped_early and hist.epochs == best + 3
    assert math.isclose(net.evaluate(Xva, yva, "softmax_ce")["loss"], min(hist.history["val_loss"]), rel_tol=1e-5)


def test_shuffled_training_is_seeded_and_deterministic():
    X, y = xn.datasets.spirals(n=100, seed=0)

    def train(seed):
        net = xn.MLP([2, 8, 2], seed=0)
        net.fit(X, y, loss="softmax_ce", optimizer="adam", epochs=3, batch_size=10, progress=False, seed=seed)
        return net.get_weights()

    a, b, c = train(1), train(1), train(2)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_batch_size_larger_than_data_is_clipped_with_a_warning():
    X, y = xn.datasets.xor()
    with pytest.warns(UserWarning, match="batch_size=64 is larger than the 4 training samples; using 4"):
        xor_net("numpy").fit(X, y, batch_size=64, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xor_net("numpy").fit(X, y, progress=False)  # the default batch fits small data silently


def test_divergence_stops_with_the_epoch_and_keeps_good_weights():
    X, y = xn.datasets.moons(n=100, seed=0)
    net = xn.MLP([2, 8, 1], activation="relu", seed=0)
    with pytest.raises(xn.errors.DivergenceError, match=r"epoch \d+"):
        with np.errstate(all="ignore"):
            net.fit(X * 1e3, y * 1e3, loss="mse", optimizer=xn.optim.SGD(10.0), epochs=50, progress=False)
    assert all(np.all(np.isfinite(w)) for w in net.get_weights())


def test_max_norm_limits_every_unit(backend):
    X, y = xn.datasets.moons(n=100, seed=0)
    net = xn.MLP([2, 16, 2], activation="relu", seed=0, backend=backend)
    net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.SGD(1.0), epochs=5, max_norm=0.5, progress=False)
    for W in net.get_weights()[::2]:
        assert np.all(np.linalg.norm(W, axis=0) <= 0.5 + 1e-5)


def test_progress_bar_can_be_turned_off(capsys):
    X, y = xn.datasets.xor()
    xor_net("numpy").fit(X, y, epochs=5, progress=False)
    assert capsys.readouterr().err == ""
    xor_net("numpy").fit(X, y, epochs=5, progress=True)
    assert "epoch" in capsys.readouterr().err


def test_step_call_returns_the_loss_before_its_update(backend):
    X, y = xn.datasets.xor()
    net = xor_net(backend)
    before = net.evaluate(X, y, "mse")["loss"]
    step = net.compile("mse", xn.optim.SGD(1.0))
    assert {"numba": "numba fused", "cupy": "CUDA-graph step"}.get(backend.name, "plain layer-by-layer") in repr(step)
    assert math.isclose(step(X, y), before, rel_tol=1e-6)
    assert net.evaluate(X, y, "mse")["loss"] < before
