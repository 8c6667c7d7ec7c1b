"""The CUDA-graph training step, on the fake GPU.

The fake records what a capture launches and replays that work on the same
arrays, refusing what CuPy refuses during capture (cuBLAS, host copies and
reads, synchronisation). So the decisions and bookkeeping run for real: which
nets get a graph, warm-up then capture per batch shape, input buffers, Adam's
device step counter, recapture when parameters or settings change, and a clean
fallback to the plain step when capture fails. Real capture: test_cupy_gpu.py.
"""
import contextlib

import numpy as np
import pytest

import xpnet as xn
from xpnet.steps import GraphStep
from xpnet.steps import PlainStep

import test_training
from fakecupy import fake_cupy  # noqa: F401 (fixture)


@pytest.fixture
def graphs(fake_cupy):
    """The CuPy backend with graphs="auto"; ``.captures`` lists each graph captured."""
    backend = xn.get_backend("cupy", graphs="auto")
    backend.captures = []
    capture = backend.capture_graph

    def counted(record):
        graph, memory = capture(record)
        backend.captures.append(graph)
        return graph, memory

    backend.capture_graph = counted
    return backend


def plain_fake_gpu():
    return xn.get_backend("cupy", graphs=False)


def data(n=40):
    X, y = xn.datasets.spirals(n=n, seed=0)
    return X, y


def run_fit(backend, optimizer, epochs=3, batch_size=16, **kwargs):
    X, y = data()
    net = xn.MLP([2, 8, 8, 2], activation="tanh", backend=backend, seed=0)
    opt = xn.optim.get(dict(optimizer.config()))
    hist = net.fit(X, y, loss="softmax_ce", optimizer=opt, epochs=epochs, batch_size=batch_size, progress=False,
                   seed=1, **kwargs)
    return net, opt, hist


def test_compile_gives_a_graph_step_only_where_a_graph_can_work(graphs, fake_cupy):
    net = xn.MLP([2, 4, 2], backend=graphs)
    assert isinstance(net.compile("mse", "sgd"), GraphStep)
    assert repr(net.compile("mse", "sgd")).startswith("<CUDA-graph step (0 graph(s) captured): cupy")
    for step, reason in ((net.compile("mse", "sgd", gradient="finite_difference"), "finite differences"),
                         (xn.MLP([2, 4, 2], dropout=0.2, backend=graphs).compile("mse", "sgd"), "dropout"),
                         (xn.MLP([2, 4, 2], backend=plain_fake_gpu()).compile("mse", "sgd"), "graphs=False")):
        assert type(step) is PlainStep and reason in repr(step)
    forced = xn.get_backend("cupy", graphs=True)
    with pytest.warns(UserWarning, match="dropout"):
        forced_step = xn.MLP([2, 4, 2], dropout=0.2, backend=forced).compile("mse", "sgd")
    assert type(forced_step) is PlainStep


@pytest.mark.parametrize("optimizer", [xn.optim.SGD(0.1, momentum=0.9), xn.optim.Adam(0.01, weight_decay=0.01)],
                         ids=["sgd-momentum", "adam"])
def test_graph_fit_matches_the_plain_step(graphs, optimizer):
    net, opt, hist = run_fit(graphs, optimizer)
    ref, ref_opt, ref_hist = run_fit(plain_fake_gpu(), optimizer)
    np.testing.assert_allclose(hist.history["loss"], ref_hist.history["loss"], rtol=1e-5)
    for a, b in zip(net.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # 40 samples in batches of 16: shapes 16 and 8, each run eagerly once, then captured and launched.
    assert len(graphs.captures) == 2
    assert sum(g.launches for g in graphs.captures) == 3 * 3 - 2  # every step but the two warm-ups
    assert opt.steps == ref_opt.steps == 9  # the host step count stays right across replays
    for name in opt.state:
        for a, b in zip(opt.state[name], ref_opt.state[name]):
            np.testing.assert_allclose(graphs.to_numpy(a), graphs.to_numpy(b), rtol=1e-4, atol=1e-6)


def test_repeat_launches_one_graph_and_the_gradients_stay_readable(graphs):
    X, y = xn.datasets.xor()
    results = []
    for backend in (graphs, plain_fake_gpu()):
        net = xn.MLP([2, 2, 1], activation="sigmoid", output_activation="sigmoid", init=xn.init.Uniform(0, 1),
                     backend=backend, seed=0)
        step = net.compile("mse", xn.optim.Adam(0.1))
        results.append((step.repeat(X, y, 25), net.get_weights(), [backend.to_numpy(g) for g in net.gradients()]))
    (loss, weights, grads), (ref_loss, ref_weights, ref_grads) = results
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for a, b in zip(weights + grads, ref_weights + ref_grads):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert len(graphs.captures) == 1 and graphs.captures[0].launches == 24


def test_replaced_weights_recapture_and_a_new_learning_rate_does_not(graphs):
    X, y = data(16)
    net = xn.MLP([2, 8, 2], backend=graphs, seed=0)
    opt = xn.optim.SGD(0.1)
    step = net.compile("softmax_ce", opt)
    for _ in range(3):
        step(X, y)
    assert len(graphs.captures) == 1
    net.set_weights(net.get_weights())  # new arrays: the graph would update the old ones
    step(X, y)
    step(X, y)
    opt.lr = 0.05  # read from a device scalar by the captured update kernels
    step(X, y)
    step(X, y)
    assert len(graphs.captures) == 2
    ref = xn.MLP([2, 8, 2], backend=plain_fake_gpu(), seed=0)
    ref_opt = xn.optim.SGD(0.1)
    ref_step = ref.compile("softmax_ce", ref_opt)
    for i in range(7):
        ref_opt.lr = 0.05 if i >= 5 else 0.1
        ref_step(X, y)
    for a, b in zip(net.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_large_layers_use_the_plain_step_unless_graphs_are_forced(fake_cupy, graphs):
    X, y = data(16)
    wide = xn.MLP([2, 1024, 2], backend=graphs)  # 16 · 1024 · 2 multiply-adds fit; 16 · 1024 · 1024 would not
    step = wide.compile("softmax_ce", "sgd")
    step(X, y)
    assert len(step.entries) == 1 and None not in step.entries.values()
    deep = xn.MLP([2, 1024, 1024, 2], backend=graphs)
    step = deep.compile("softmax_ce", "sgd")
    step(X, y)
    assert list(step.entries.values()) == [None]


def test_a_failed_capture_falls_back_to_the_plain_step_for_good(fake_cupy, graphs):
    X, y = data(16)
    graphs.capture_graph = type(graphs).capture_graph.__get__(graphs)  # the real capture, on the fake stream
    fake_cupy.capture_error = "cudaErrorStreamCaptureUnsupported: operation not permitted when stream is capturing"
    net = xn.MLP([2, 8, 2], backend=graphs, seed=0)
    step = net.compile("softmax_ce", xn.optim.Adam(0.01))
    losses = [step(X, y) for _ in range(4)]
    assert "CUDA graph capture failed: CUDARuntimeError: cudaErrorStreamCaptureUnsupported" in repr(step)
    ref = xn.MLP([2, 8, 2], backend=plain_fake_gpu(), seed=0)
    ref_step = ref.compile("softmax_ce", xn.optim.Adam(0.01))
    np.testing.assert_allclose(losses, [ref_step(X, y) for _ in range(4)], rtol=1e-5)
    assert step.optimizer.steps == 4


def test_a_call_refused_during_capture_falls_back_cleanly(fake_cupy, graphs, monkeypatch):
    # Without graph_kernels, products go to cuBLAS, which CuPy refuses while a stream captures.
    monkeypatch.setattr(type(graphs), "graph_kernels", lambda self, counter: contextlib.nullcontext())
    forced = xn.get_backend("cupy", graphs=True)
    X, y = data(16)
    net = xn.MLP([2, 8, 2], backend=graphs, seed=0)
    step = net.compile("softmax_ce", "sgd")
    step(X, y)
    step(X, y)
    assert "RuntimeError: a cuBLAS call (matmul) is not allowed while the stream is capturing" in repr(step)
    assert fake_cupy.calls["end_capture"] == 1 and not fake_cupy.capturing  # capture mode was left
    ref_step = xn.MLP([2, 8, 2], backend=plain_fake_gpu(), seed=0).compile("softmax_ce", "sgd")
    assert step(X, y) == pytest.approx([ref_step(X, y) for _ in range(3)][-1], rel=1e-5)
    forced_step = xn.MLP([2, 8, 2], backend=forced, seed=0).compile("softmax_ce", "sgd")
    forced_step(X, y)
    with pytest.warns(UserWarning, match="capture failed"):
        forced_step(X, y)


def test_capture_uses_a_non_blocking_stream_and_keeps_every_block(fake_cupy, graphs):
    backend = graphs
    allocations = []

    def record():
        allocations.append(fake_cupy.allocator(256))  # what CuPy calls for each new array during capture
        allocations.append(fake_cupy.allocator(512))

    graph, kept = type(backend).capture_graph(backend, record)
    assert kept == allocations == [("block", 256), ("block", 512)]
    assert fake_cupy.calls["begin_capture"] == fake_cupy.calls["end_capture"] == 1
    assert fake_cupy.allocator is None and not fake_cupy.capturing

    def broken():
        raise RuntimeError("synchronisation is not allowed while the stream is capturing")

    with pytest.raises(RuntimeError, match="while the stream is capturing"):
        type(backend).capture_graph(backend, broken)
    assert fake_cupy.calls["end_capture"] == 2 and fake_cupy.allocator is None and not fake_cupy.capturing


def test_a_launch_replays_the_captured_work_without_running_its_python(fake_cupy, graphs):
    x = graphs.asarray(np.arange(3.0))
    runs = []

    def record():
        runs.append("python")
        x[...] = graphs.activation(x * 2.0, "identity", 0.0) + graphs.activation(x, "relu", 0.0)  # ops and a kernel

    graph, _ = graphs.capture_graph(record)
    for _ in range(2):
        graphs.launch_graph(graph)
    assert runs == ["python"] and graph.launches == 2
    np.testing.assert_array_equal(graphs.to_numpy(x), np.arange(3.0) * 9)  # tripled by each launch; capture runs nothing


@pytest.mark.parametrize("refused", ["cuBLAS call", "device-to-host copy", "host-to-device copy", "reading an array",
                                     "synchronising", "boolean-mask"])
def test_capture_refuses_what_cuda_refuses_while_a_stream_captures(fake_cupy, graphs, refused):
    x = graphs.asarray(np.ones((2, 2)))
    calls = {"cuBLAS call": lambda: fake_cupy.module.matmul(x, x),
             "device-to-host copy": lambda: graphs.to_numpy(x),
             "host-to-device copy": lambda: graphs.asarray(np.ones(2)),
             "reading an array": lambda: float(x[0, 0]),
             "synchronising": graphs.synchronize,
             "boolean-mask": lambda: graphs.xp.clip(x, 0.0, 0.5)}
    with pytest.raises(RuntimeError, match=f"{refused}.* is not allowed while the stream is capturing"):
        graphs.capture_graph(calls[refused])
    assert not fake_cupy.capturing
    calls[refused]()  # outside a capture, all of them run


def test_bce_nets_run_from_a_graph(graphs):
    X, y = xn.datasets.xor()
    net = xn.MLP([2, 4, 1], output_activation="sigmoid", backend=graphs, seed=0)
    step = net.compile("bce", xn.optim.SGD(0.5))
    ref = xn.MLP([2, 4, 1], output_activation="sigmoid", backend=plain_fake_gpu(), seed=0).compile("bce", xn.optim.SGD(0.5))
    np.testing.assert_allclose([step(X, y) for _ in range(4)], [ref(X, y) for _ in range(4)], rtol=1e-5)
    assert step.failure is None and "1 graph(s) captured" in repr(step)


def test_the_training_suites_step_test_passes_on_a_graph_step(graphs):
    test_training.test_step_call_returns_the_loss_before_its_update(graphs)


def test_a_float64_spirals_fit_from_graphs_equals_numpys(graphs):
    """test_cupy_gpu.py's (and gpu_check.sh's) check, shortened, with the fake's captured graphs replayed."""
    import test_cupy_gpu

    for got, want in zip(test_cupy_gpu.spirals_fit(graphs, epochs=5), test_cupy_gpu.spirals_fit("numpy", epochs=5)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert len(graphs.captures) == 2 and sum(g.launches for g in graphs.captures) == 5 * 10 - 2


def test_the_collector_runs_before_a_capture_not_during_it(fake_cupy, graphs, monkeypatch):
    """An old graph freed by the garbage collector in the middle of a capture would break it."""
    from xpnet.backends import cupy_backend

    order = []
    monkeypatch.setattr(cupy_backend.gc, "collect", lambda: order.append(("collect", fake_cupy.capturing)))
    graphs.capture_graph(lambda: order.append(("record", fake_cupy.capturing)))
    assert order == [("collect", False), ("record", True)]
