"""Property tests: random architectures, batch sizes and dtypes keep shapes, dtypes, gradients and checkpoints right."""
import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property tests need Hypothesis (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import xpnet as xn
from xpnet import kernels
from xpnet.gradients import backprop, finite_difference, relative_error

PROPERTY = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# ReLU and leaky ReLU have a kink at 0 where finite differences straddling it disagree with the
# one-sided derivative, so gradcheck draws from the smooth activations only.
SMOOTH = ["identity", "sigmoid", "tanh", "gelu", "gelu_tanh"]

# Batching or another backend changes only rounding: a z may differ in its last bits, which GELU's
# float32 tail (1 + erf(z/√2) for z ≪ 0, a cancellation) can turn into ~1e-6 absolute.
ROUNDING = {"float32": dict(rtol=1e-4, atol=1e-5), "float64": dict(rtol=1e-10, atol=1e-12)}

sizes = st.lists(st.integers(1, 6), min_size=2, max_size=5)
dtypes = st.sampled_from(["float32", "float64"])


@st.composite
def networks(draw, activations=tuple(kernels.ACTIVATIONS), dropout=True):
    """An MLP or a Sequential (with Dropout between Dense layers) of random widths and activations."""
    widths, dtype, seed = draw(sizes), draw(dtypes), draw(st.integers(0, 2**32))
    if draw(st.booleans()):
        return dict(kind="MLP", sizes=widths, activation=draw(st.sampled_from(activations)),
                    output_activation=draw(st.sampled_from(activations)), dtype=dtype, seed=seed,
                    dropout=draw(st.sampled_from([0.0, 0.3])) if dropout else 0.0)
    layers = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers.append(("Dense", fan_in, fan_out, draw(st.sampled_from(activations))))
        if dropout and draw(st.booleans()):
            layers.append(("Dropout", draw(st.floats(0.0, 0.9))))
    return dict(kind="Sequential", layers=layers[:-1] if layers[-1][0] == "Dropout" else layers, dtype=dtype, seed=seed)


def build(spec, backend="numpy", dtype=None):
    dtype = dtype or spec["dtype"]
    if spec["kind"] == "MLP":
        return xn.MLP(spec["sizes"], activation=spec["activation"], output_activation=spec["output_activation"],
                      dtype=dtype, seed=spec["seed"], dropout=spec["dropout"], backend=backend)
    layers = []
    for kind, *args in spec["layers"]:
        if kind == "Dense":
            fan_in, fan_out, activation = args
            layers.append(xn.layers.Dense(fan_in, fan_out, activation=activation))
        else:
            layers.append(xn.layers.Dropout(args[0]))
    return xn.Sequential(layers, seed=spec["seed"], dtype=dtype, backend=backend)


@PROPERTY
@given(spec=networks(), n=st.integers(0, 12), batch=st.integers(1, 13), data=st.data())
def test_outputs_have_the_right_shape_and_dtype(backend, spec, n, batch, data):
    net = build(spec, backend)
    X = data.draw(st.lists(st.floats(-5, 5), min_size=n * net.n_inputs, max_size=n * net.n_inputs))
    X = np.array(X, dtype=np.float64).reshape(n, net.n_inputs)
    out = net.forward(X, training=True) if n else None
    if n:
        assert tuple(out.shape) == (n, net.n_outputs) and out.dtype == backend.dtype(spec["dtype"])
    predicted = net.predict(X, batch_size=batch)
    assert predicted.shape == (n, net.n_outputs) and predicted.dtype == np.dtype(spec["dtype"])
    assert np.all(np.isfinite(predicted))
    np.testing.assert_allclose(predicted, net.predict(X), **ROUNDING[spec["dtype"]])  # batching changes nothing


@PROPERTY
@given(spec=networks(activations=SMOOTH, dropout=False), n=st.integers(1, 6),
       loss=st.sampled_from(["mse", "bce_logits", "softmax_ce"]), data=st.data())
def test_backprop_matches_finite_differences_in_float64(spec, n, loss, data):
    net = build(spec)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32)))
    X = rng.uniform(-2, 2, (n, net.n_inputs))
    if loss == "softmax_ce" and net.n_outputs < 2:
        loss = "mse"
    y = {"mse": lambda: rng.standard_normal((n, net.n_outputs)),
         "bce_logits": lambda: rng.integers(0, 2, (n, net.n_outputs)).astype(float),
         "softmax_ce": lambda: rng.integers(0, net.n_outputs, n)}[loss]()
    # xn.gradcheck's comparison, with a floor: a central difference in float64 carries a rounding error of
    # about ε·|C|/h (h = 1e-6), so an array whose gradients are all that small (a GELU unit near 0 in front
    # of it: 4.9e-6 with 5e-11 of rounding) has no meaningful relative error. Allowed: 10× that rounding.
    net64 = net.copy(dtype="float64")
    exact, approx = backprop(net64, loss, X, y), finite_difference(net64, loss, X, y, eps=1e-6)
    cost = net64.evaluate(X, y, loss)["loss"]
    rounding = 10 * np.finfo(np.float64).eps * max(1.0, abs(cost)) / 1e-6
    for name, a, b in zip(net64.param_names(), exact, approx):
        scale = max(np.max(np.abs(a)), np.max(np.abs(b)))
        assert np.max(np.abs(a - b)) <= max(1e-5 * scale, rounding), (name, relative_error(a, b), scale)


@PROPERTY
@given(spec=networks(), n=st.integers(1, 20), batch=st.integers(1, 20), epochs=st.integers(0, 3))
def test_fit_keeps_dtypes_and_records_every_epoch(spec, n, batch, epochs):
    net = build(spec)
    rng = np.random.default_rng(spec["seed"])
    X, y = rng.standard_normal((n, net.n_inputs)), rng.standard_normal((n, net.n_outputs))
    hist = net.fit(X, y, optimizer=xn.optim.SGD(0.01), epochs=epochs, batch_size=min(batch, n), progress=False)
    assert hist.epochs == epochs and len(hist.history.get("loss", [])) == epochs
    assert np.all(np.isfinite(hist.history.get("loss", [])))
    assert all(w.dtype == np.dtype(spec["dtype"]) for w in net.get_weights())


@PROPERTY
@given(spec=networks())
def test_save_load_round_trips_exactly(backend, tmp_path, spec):
    net = build(spec)
    net.save(tmp_path / "net.npz")
    loaded = xn.load(tmp_path / "net.npz", backend=backend)
    assert loaded.config() == net.config() and type(loaded) is type(net)
    for a, b in zip(loaded.get_weights(), net.get_weights()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    X = np.random.default_rng(0).standard_normal((3, net.n_inputs))
    np.testing.assert_allclose(loaded.predict(X), net.predict(X), **ROUNDING[spec["dtype"]])
