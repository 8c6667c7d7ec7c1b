"""The Layer protocol from the outside: a user's layer, shape inference, checkpoints old and new, the step choice."""
import ast
import pathlib

import numpy as np
import pytest

import xpnet as xn

from fakecupy import fake_cupy  # noqa: F401 (fixture)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
SRC = pathlib.Path(xn.__file__).parent


@xn.layers.register  # makes it loadable from checkpoints by name
class Scale(xn.layers.Layer):
    """y = x * s, one learnable factor per feature."""

    param_names = ("s",)

    def __init__(self, init=1.0):
        super().__init__()
        self.init = float(init)

    def config(self):
        return {"init": self.init}

    def build(self, input_shape, rng):  # input_shape excludes the batch axis; returns the output shape
        self.add_param("s", np.full(input_shape[-1:], self.init))  # host array; moved to the backend, net dtype
        return input_shape

    def forward(self, x, training=False):
        s = self.params["s"]

        def backward(grad_y, need_grad_x=True):
            self.grads["s"] = self.xp.sum(grad_y * x, axis=tuple(range(x.ndim - 1)))
            return grad_y * s

        return x * s, backward


def scaled_net(backend, dtype="float32", seed=0):
    xn.layers.register(Scale)  # again: another test file may have registered a class of the same name since
    return xn.Sequential([Scale(0.5), xn.layers.Dense(8, activation="tanh"), Scale(2.0), xn.layers.Dense(3)],
                         input_shape=(4,), backend=backend, dtype=dtype, seed=seed)


def blobs(n=60):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    return rng.standard_normal((n, 4)) + 2.0 * np.eye(3, 4)[y], y


# ---- a layer of the user's own, everywhere ------------------------------------------------------------------

def test_a_users_layer_gradchecks_trains_saves_loads_and_traces(backend, tmp_path):
    X, y = blobs()
    net = scaled_net(backend)
    assert net.param_names() == ["0.s", "1.W", "1.b", "2.s", "3.W", "3.b"]
    errors = xn.gradcheck(net, "softmax_ce", X[:6], y[:6])
    assert max(errors.values()) < 1e-6, errors
    before = net.evaluate(X, y, loss="softmax_ce")["loss"]
    hist = net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.Adam(0.05), epochs=15, batch_size=20, progress=False)
    assert hist.history["loss"][-1] < 0.5 * before
    assert not np.allclose(net.get_weights()[0], 0.5)  # the factors themselves learned
    path = tmp_path / "scaled.npz"
    net.save(path)
    loaded = xn.load(path, backend="numpy")
    assert [type(layer).__name__ for layer in loaded.layers] == ["Scale", "Dense", "Scale", "Dense"]
    np.testing.assert_allclose(loaded.predict(X), net.predict(X), rtol=1e-6, atol=1e-6)
    traced = xn.trace(net, "softmax_ce", X[:2], y[:2])
    assert [t.kind for t in traced.layers] == ["Scale", "Dense", "Scale", "Dense"]
    for got, want in zip(traced.gradients(), xn.backprop(net, "softmax_ce", X[:2], y[:2])):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert "∂C/∂s¹" in str(traced) and "BP4" in str(traced)


def test_a_users_layer_moves_between_backends(backend):
    X, _ = blobs(10)
    net = scaled_net("numpy", dtype="float64")
    expected = net.predict(X)
    net.to(backend)
    assert net.backend is backend and all(backend.is_native(p) for p in net.parameters())
    np.testing.assert_allclose(net.predict(X), expected, rtol=1e-12)


def test_a_users_layer_on_the_fake_gpu(fake_cupy, tmp_path):
    X, y = blobs(20)
    gpu_backend = xn.get_backend("cupy", graphs=False)
    ref, gpu = scaled_net("numpy", dtype="float64"), scaled_net(gpu_backend, dtype="float64")
    assert max(xn.gradcheck(gpu, "softmax_ce", X[:4], y[:4]).values()) < 1e-6
    for net in (ref, gpu):
        net.fit(X, y, loss="softmax_ce", optimizer="adam", epochs=3, batch_size=10, progress=False)
    for a, b in zip(gpu.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    gpu.save(tmp_path / "gpu.npz")
    np.testing.assert_allclose(xn.load(tmp_path / "gpu.npz", backend="numpy").predict(X), ref.predict(X), rtol=1e-9)
    for got, want in zip(xn.trace(gpu, "softmax_ce", X[:2], y[:2]).gradients(),
                         xn.trace(ref, "softmax_ce", X[:2], y[:2]).gradients()):
        np.testing.assert_allclose(got, want, rtol=1e-9)


def test_unregistered_layers_cannot_be_saved_and_unknown_names_cannot_be_loaded(tmp_path):
    class Mystery(xn.layers.Layer):
        def forward(self, x, training=False):
            return x, lambda grad_y, need_grad_x=True: grad_y

    net = xn.Sequential([Mystery(), xn.layers.Dense(2)], input_shape=(3,))
    assert net.predict(np.ones((1, 3))).shape == (1, 2)  # it works; only saving needs the registry
    with pytest.raises(xn.errors.CheckpointError, match="Mystery is not registered.*@xn.layers.register"):
        net.save(tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())  # nothing half-written

    @xn.layers.register
    class Ephemeral(Mystery):
        pass

    xn.Sequential([Ephemeral(), xn.layers.Dense(2)], input_shape=(3,)).save(tmp_path / "e.npz")
    del xn.layers.REGISTRY["Ephemeral"]
    with pytest.raises(xn.errors.CheckpointError, match="unknown layer type 'Ephemeral'.*@xn.layers.register"):
        xn.load(tmp_path / "e.npz")


# ---- shape inference ----------------------------------------------------------------------------------------

L = xn.layers
GOOD = [  # (layers, input_shape, output shape, parameter count)
    ([L.Dense(2, 3)], None, (3,), 9),
    ([L.Dense(3)], (2,), (3,), 9),
    ([L.Dense(2, 4), L.Dropout(0.5), L.Dense(1)], None, (1,), 17),
    ([L.Flatten(), L.Dense(10)], (1, 8, 8), (10,), 650),
    ([L.Flatten()], (2, 3, 4), (24,), 0),
    ([L.Reshape((2, 3))], (6,), (2, 3), 0),
    ([L.Dense(12), L.Reshape((3, -1)), L.Flatten(), L.Dense(2)], (5,), (2,), 72 + 26),
    ([L.Reshape(-1), L.Dense(2)], (2, 2), (2,), 10),
    ([Scale(), L.Flatten(), Scale()], (3, 2), (6,), 2 + 6),
    ([L.Reshape((1, 4, 4)), L.Flatten(), L.Dense(4, activation="relu"), L.Dense(3)], (16,), (3,), 68 + 15),
]
BAD = [  # (layers, input_shape, the index and name the error gives, a piece of the message)
    ([L.Dense(3, 4), L.Dense(5, 2)], None, "layer 1 (Dense)", r"expects 5 input features.*\(4,\)"),
    ([L.Dense(4)], (1, 8, 8), "layer 0 (Dense)", r"input of shape \(1, 8, 8\).*Flatten"),
    ([L.Flatten(), L.Dense(65, 3)], (1, 8, 8), "layer 1 (Dense)", r"expects 65 input features.*\(64,\)"),
    ([L.Reshape((5, 5))], (24,), "layer 0 (Reshape)", r"\(24,\).*\(5, 5\)"),
    ([L.Reshape((5, -1))], (24,), "layer 0 (Reshape)", r"\(24,\)"),
    ([L.Dense(3), L.Reshape((2, 2))], (2,), "layer 1 (Reshape)", r"\(3,\).*\(2, 2\)"),
    ([L.Dense(2, 3), L.Flatten(), L.Reshape((4,))], None, "layer 2 (Reshape)", r"\(3,\).*\(4,\)"),
    ([L.Reshape((2, 3)), L.Dense(2)], (6,), "layer 1 (Dense)", r"\(2, 3\)"),
]


@pytest.mark.parametrize("stack,input_shape,shape,count", GOOD, ids=[str(i) for i in range(len(GOOD))])
def test_shapes_are_inferred(stack, input_shape, shape, count):
    net = xn.Sequential(stack, input_shape=input_shape, seed=0)
    assert net.output_shape == shape and net.count_params() == count
    X = np.ones((3, *net.input_shape))
    assert net.forward(X).shape == (3, *shape)
    assert all(line in net.summary() for line in ("Output shape", f"{count:,} parameters"))


@pytest.mark.parametrize("stack,input_shape,layer,message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_stack_that_does_not_fit_names_the_layer_and_the_shapes(stack, input_shape, layer, message):
    with pytest.raises(xn.errors.ShapeError, match=message) as error:
        xn.Sequential(stack, input_shape=input_shape)
    assert str(error.value).startswith(layer)


def test_the_readme_shows_the_summary_this_code_prints():
    readme = (SRC.parent.parent / "README.md").read_text(encoding="utf-8")
    net = xn.Sequential([L.Flatten(), L.Dense(32, activation="relu"), L.Dropout(0.1), L.Dense(10)],
                        input_shape=(1, 8, 8), seed=0, backend="numpy")
    assert "\n".join(f"# {line}" for line in net.summary().splitlines()) in readme


def test_missing_or_bad_input_shapes_and_inputs_are_refused():
    with pytest.raises(xn.errors.ConfigError, match="input_shape"):
        xn.Sequential([L.Dense(3)])
    with pytest.raises(xn.errors.ConfigError, match="positive integers"):
        xn.Sequential([L.Flatten()], input_shape=(0, 2))
    net = xn.Sequential([L.Flatten(), L.Dense(2)], input_shape=(1, 2, 2))
    with pytest.raises(xn.errors.ShapeError, match=r"must be 4-D \(samples, 1, 2, 2\)"):
        net.predict(np.ones((3, 4)))
    with pytest.raises(xn.errors.ShapeError, match=r"samples of shape \(2, 2, 1\), the network expects \(1, 2, 2\)"):
        net.predict(np.ones((3, 2, 2, 1)))
    with pytest.raises(xn.errors.ShapeError, match="end it with xn.layers.Flatten"):
        xn.Sequential([L.Reshape((2, 2))], input_shape=(4,)).fit(np.ones((2, 4)), np.ones((2, 4)), progress=False)


def test_image_inputs_train_end_to_end(backend):
    X, y = xn.datasets.digits()
    X = X.reshape(-1, 1, 8, 8)[:200]
    net = xn.Sequential([L.Flatten(), L.Dense(32, activation="relu"), L.Dense(10)], input_shape=(1, 8, 8),
                        backend=backend, seed=0)
    hist = net.fit(X, y[:200], loss="softmax_ce", optimizer=xn.optim.Adam(0.01), epochs=5, progress=False)
    assert hist.history["accuracy"][-1] > 0.8


def test_parameters_are_row_major_copies_however_they_arrive():
    """Built, set from column-major arrays, or moved: every parameter is a C-contiguous copy (a conv W once
    stayed a transposed view, which cost a copy of it every step), never the caller's array."""
    net = xn.models.lenet((1, 28, 28), backend="numpy")
    assert all(p.flags.c_contiguous for p in net.parameters())
    weights = [np.asfortranarray(w) for w in net.get_weights()]
    net.set_weights(weights)
    assert all(p.flags.c_contiguous and not np.shares_memory(p, w) for p, w in zip(net.parameters(), weights))
    assert all(p.flags.c_contiguous for p in net.to("numba" if "numba" in xn.backends.available() else
                                                    "numpy").parameters())


# ---- checkpoints ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["xpnet-0.1-mlp.npz", "xpnet-0.1-sequential.npz"])
def test_checkpoints_of_xpnet_0_1_load_and_predict_exactly_as_before(name, tmp_path):
    net = xn.load(FIXTURES / name, backend="numpy")
    _, _, extra = xn.checkpoint.load(FIXTURES / name)
    expected = np.asarray(extra["predictions"], dtype=net.dtype)
    np.testing.assert_array_equal(net.predict(np.asarray(extra["X"])), expected)
    net.save(tmp_path / "again.npz")  # saved again, with today's names, it still predicts the same
    np.testing.assert_array_equal(xn.load(tmp_path / "again.npz").predict(np.asarray(extra["X"])), expected)


def test_checkpoint_arrays_are_named_as_a_state_dict(tmp_path):
    xn.Sequential([L.Flatten(), L.Dense(3), L.Dropout(0.1), L.Dense(2)], input_shape=(2, 2)).save(tmp_path / "n.npz")
    _, arrays, _ = xn.checkpoint.load(tmp_path / "n.npz")
    assert sorted(arrays) == ["1.W", "1.b", "3.W", "3.b"]


# ---- the layering of the package, and which step runs which network --------------------------------------------

def test_backends_import_nothing_from_the_model():
    forbidden = {"layers", "network", "losses", "optim", "steps", "training", "gradients"}
    for path in sorted((SRC / "backends").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                names = {(node.module or "").split(".")[0]} | {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("xpnet."):
                names = {node.module.split(".")[1]}
            elif isinstance(node, ast.Import):
                names = {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("xpnet.")}
            else:
                continue
            assert not names & forbidden, f"{path.name} imports {sorted(names & forbidden)}"


def test_nothing_outside_a_layer_file_tests_a_layer_class():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.parent.name == "layers":
            continue
        text = path.read_text()
        for needle in ("isinstance(layer, (", "layers.Dense)", "layers.Dropout)", "layer.fan_in", "layer.p ",
                       "getattr(layer, "):
            if needle in text:
                offenders.append(f"{path.relative_to(SRC)}: {needle}")
    assert not offenders


@pytest.mark.parametrize("stack,fused", [
    (lambda: xn.MLP([2, 16, 16, 2]), True),
    (lambda: xn.MLP([2, 8, 1], output_activation="sigmoid"), True),
    (lambda: xn.Sequential([L.Dense(2, 8), L.Dropout(0.0), L.Dense(2)]), True),
    (lambda: xn.MLP([2, 8, 2], dropout=0.2), False),
    (lambda: xn.Sequential([Scale(), L.Dense(2)], input_shape=(3,)), False),
    (lambda: xn.Sequential([L.Flatten(), L.Dense(2)], input_shape=(1, 3)), False),
])
def test_the_fused_numba_step_runs_the_same_mlps_as_before(stack, fused):
    if xn.backends.unavailable_reason("numba"):
        pytest.skip(f"numba: {xn.backends.unavailable_reason('numba')}")
    with xn.use("numba"):
        step = stack().compile("softmax_ce" if stack().n_outputs > 1 else "bce", "adam")
    assert repr(step).startswith("<numba fused MLP step" if fused else
                                 "<plain layer-by-layer step (numba fused step unavailable: layer ")


def test_the_graph_step_runs_any_deterministic_network(fake_cupy):
    backend = xn.get_backend("cupy", graphs="auto")
    for net, graph in ((xn.MLP([2, 16, 2], backend=backend), True),
                       (xn.Sequential([Scale(), L.Dense(2)], input_shape=(3,), backend=backend), True),
                       (xn.MLP([2, 8, 2], dropout=0.2, backend=backend), False)):
        step = net.compile("softmax_ce", "sgd")
        assert repr(step).startswith("<CUDA-graph step" if graph else "<plain layer-by-layer step (no CUDA graph")


# ---- buffers: saved, moved and resumed with the parameters, never trained -------------------------------------

@xn.layers.register
class Center(xn.layers.Layer):
    """y = x − m, m a running mean of the training batches (a buffer, as BatchNorm's statistics)."""

    buffer_names = ("mean",)

    def build(self, input_shape, rng):
        self.add_buffer("mean", np.zeros(input_shape))
        return input_shape

    def forward(self, x, training=False):
        if training:
            mean = self.buffers["mean"]
            mean[...] = 0.9 * mean + 0.1 * self.xp.mean(x, axis=0)
        return x - self.buffers["mean"], lambda grad_y, need_grad_x=True: grad_y


def centered_net(backend="numpy"):
    xn.layers.register(Center)
    return xn.Sequential([Center(), xn.layers.Dense(6, activation="tanh"), xn.layers.Dense(3)], input_shape=(4,),
                         backend=backend, dtype="float64", seed=0)


def test_buffers_are_saved_loaded_moved_and_resumed_but_not_trained(backend, tmp_path):
    X, y = blobs(40)
    net = centered_net(backend)
    assert net.buffer_names() == ["0.mean"] and net.param_names() == ["1.W", "1.b", "2.W", "2.b"]
    net.fit(X, y, loss="softmax_ce", optimizer="adam", epochs=2, batch_size=10, progress=False,
            checkpoint=tmp_path / "run")
    mean = backend.to_numpy(net.buffers()[0])
    assert np.abs(mean).max() > 0.1  # the buffer followed the batches
    net.save(tmp_path / "c.npz")
    loaded = xn.load(tmp_path / "c.npz", backend="numpy")
    np.testing.assert_array_equal(loaded.buffers()[0], mean)
    np.testing.assert_allclose(loaded.predict(X), net.predict(X), rtol=1e-12)
    loaded.to(backend)
    assert backend.is_native(loaded.buffers()[0])
    np.testing.assert_array_equal(backend.to_numpy(loaded.buffers()[0]), mean)
    straight = centered_net(backend)
    straight.fit(X, y, loss="softmax_ce", optimizer="adam", epochs=4, batch_size=10, progress=False)
    resumed = centered_net(backend)
    resumed.fit(X, y, loss="softmax_ce", optimizer="adam", epochs=4, batch_size=10, progress=False,
                resume=tmp_path / "run")
    for a, b in zip(resumed.get_weights() + [backend.to_numpy(resumed.buffers()[0])],
                    straight.get_weights() + [backend.to_numpy(straight.buffers()[0])]):
        np.testing.assert_array_equal(a, b)
