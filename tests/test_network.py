"""Networks: construction, weights, dtypes, devices, checkpoints."""
import numpy as np
import pytest

import xpnet as xn


def test_one_seed_gives_the_same_initial_weights_on_every_backend(backend):
    reference = xn.MLP([3, 8, 2], activation="relu", seed=7, backend="numpy").get_weights()
    for ours, ref in zip(xn.MLP([3, 8, 2], activation="relu", seed=7, backend=backend).get_weights(), reference):
        np.testing.assert_array_equal(ours, ref)


def test_weight_layout_is_fan_in_by_fan_out_and_z_is_xW_plus_b(backend, rng):
    net = xn.MLP([3, 4, 2], activation="identity", backend=backend, dtype="float64")
    W1, b1, W2, b2 = net.get_weights()
    assert W1.shape == (3, 4) and b1.shape == (4,) and W2.shape == (4, 2) and b2.shape == (2,)
    X = rng.standard_normal((5, 3))
    np.testing.assert_allclose(net.predict(X), (X @ W1 + b1) @ W2 + b2, rtol=1e-12)


def test_float32_stays_float32_end_to_end(backend, rng):
    net = xn.MLP([2, 5, 3], backend=backend)
    X, y = rng.standard_normal((16, 2)), rng.integers(0, 3, 16)
    assert net.forward(X).dtype == backend.dtype("float32")
    net.fit(X, y, loss="softmax_ce", optimizer="adam", epochs=2, batch_size=4, progress=False)
    assert all(p.dtype == backend.dtype("float32") for p in net.parameters())
    assert all(w.dtype == np.float32 for w in net.get_weights())
    assert net.predict(X).dtype == np.float32


def test_initialisers(rng):
    big = lambda init, act="tanh": xn.MLP([400, 300, 1], activation=act, init=init, seed=0).get_weights()[0]  # noqa: E731
    assert abs(big("he").std() - np.sqrt(2 / 400)) < 0.002
    assert abs(big("xavier").std() - np.sqrt(2 / 700)) < 0.002
    assert abs(big("auto", "relu").std() - np.sqrt(2 / 400)) < 0.002
    assert abs(big("auto", "tanh").std() - np.sqrt(2 / 700)) < 0.002
    assert np.abs(big("he_uniform")).max() <= np.sqrt(6 / 400)
    assert np.abs(big("xavier_uniform")).max() <= np.sqrt(6 / 700)
    assert not big("zeros").any()
    W, b, *_ = xn.MLP([2, 2, 1], init=xn.init.Uniform(0, 1)).get_weights()
    assert (W >= 0).all() and (W < 1).all() and (b > 0).all()  # the articles draw biases too


def test_set_weights_round_trip_and_validation(backend):
    net = xn.MLP([2, 3, 1], backend=backend)
    new = [np.full(w.shape, i, dtype=np.float64) for i, w in enumerate(net.get_weights())]
    net.set_weights(new)
    for got, want in zip(net.get_weights(), new):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(xn.errors.ShapeError, match="expected 4 arrays"):
        net.set_weights(new[:3])
    with pytest.raises(xn.errors.ShapeError, match=r"1.W must have shape \(3, 1\), got \(1, 3\)"):
        net.set_weights(new[:2] + [np.zeros((1, 3)), new[3]])


def test_sequential_with_dropout(backend, rng):
    net = xn.Sequential([xn.layers.Dense(2, 16, activation="relu"), xn.layers.Dropout(0.5),
                         xn.layers.Dense(16, 2)], seed=0, backend=backend)
    X = rng.standard_normal((8, 2))
    np.testing.assert_array_equal(net.predict(X), net.predict(X))  # dropout off outside training
    train_a = backend.to_numpy(net.forward(X, training=True))
    train_b = backend.to_numpy(net.forward(X, training=True))
    assert not np.allclose(train_a, train_b)
    assert net.param_names() == ["0.W", "0.b", "2.W", "2.b"]  # "<layer index>.<param>", as a state_dict


def test_sequential_rejects_layers_that_do_not_chain():
    with pytest.raises(xn.errors.ShapeError, match=r"layer 1 \(Dense\).*expects 4 input features"):
        xn.Sequential([xn.layers.Dense(2, 3), xn.layers.Dense(4, 1)])


def test_save_load_round_trips_exactly_on_every_backend(backend, tmp_path, rng):
    net = xn.MLP([3, 6, 2], activation="leaky_relu", alpha=0.2, seed=5)
    net.fit(rng.standard_normal((20, 3)), rng.integers(0, 2, 20), loss="softmax_ce", epochs=2, progress=False)
    path = tmp_path / "net.npz"
    net.save(path)
    loaded = xn.load(path, backend=backend)
    assert loaded.backend is backend and isinstance(loaded, xn.MLP) and loaded.sizes == [3, 6, 2]
    assert loaded.layers[0].alpha == 0.2 and loaded.dtype == "float32"
    for a, b in zip(loaded.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)
    X = rng.standard_normal((4, 3))
    np.testing.assert_allclose(loaded.predict(X), net.predict(X), rtol=1e-6, atol=1e-6)


def test_sequential_checkpoint_keeps_layers(tmp_path):
    net = xn.Sequential([xn.layers.Dense(2, 4, activation="gelu", init=xn.init.Uniform(-1, 1)),
                         xn.layers.Dropout(0.2), xn.layers.Dense(4, 1, activation="sigmoid")], dtype="float64")
    net.save(tmp_path / "s.npz")
    loaded = xn.load(tmp_path / "s.npz")
    assert [type(layer).__name__ for layer in loaded.layers] == ["Dense", "Dropout", "Dense"]
    assert loaded.layers[1].p == 0.2 and loaded.dtype == "float64"
    for a, b in zip(loaded.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_save_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "net.npz"
    xn.MLP([2, 2, 1], seed=0).save(path)
    xn.MLP([2, 2, 1], seed=1).save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]
    np.testing.assert_array_equal(xn.load(path).get_weights()[0], xn.MLP([2, 2, 1], seed=1).get_weights()[0])


def test_to_moves_parameters_between_backends(backend, rng):
    net = xn.MLP([2, 4, 2], seed=3)
    X = rng.standard_normal((5, 2))
    before = net.predict(X)
    net.to(backend)
    assert net.backend is backend
    assert all(backend.is_native(p) for p in net.parameters())
    np.testing.assert_allclose(net.predict(X), before, rtol=1e-6, atol=1e-6)
    net.to("numpy")
    np.testing.assert_allclose(net.predict(X), before, rtol=1e-6, atol=1e-6)


def test_copy_to_float64():
    net = xn.MLP([2, 3, 1])
    net64 = net.copy(dtype="float64")
    assert net64.dtype == "float64" and net.dtype == "float32"
    np.testing.assert_allclose(net64.get_weights()[0], net.get_weights()[0])


def test_call_equals_forward_and_predict_batches(rng):
    net = xn.MLP([2, 3, 2])
    X = rng.standard_normal((10, 2))
    np.testing.assert_array_equal(np.asarray(net(X)), np.asarray(net.forward(X)))
    np.testing.assert_allclose(net.predict(X, batch_size=3), net.predict(X), rtol=1e-6)
    assert net.predict(np.zeros((0, 2))).shape == (0, 2)


def test_count_params_summary_and_repr():
    net = xn.MLP([2, 8, 8, 2], activation="relu")
    assert net.count_params() == 2 * 8 + 8 + 8 * 8 + 8 + 8 * 2 + 2
    assert "114 parameters" in net.summary() and "0: Dense (relu)      (None, 8)         24" in net.summary()
    assert "2→2" in repr(net)
