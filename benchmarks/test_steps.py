"""Training steps of the tiny, small and medium MLPs, on each backend and in PyTorch (float32)."""
import math

import numpy as np
import pytest

import xpnet as xn
from xpnet.bench import throughput
from xpnet.validation import prepare


@pytest.mark.parametrize("way", ["step", "epoch"])
def test_training_step(benchmark, backend, case, way):
    spec = throughput.CASES[case]
    X, y = throughput.make_data(spec)
    net = throughput.make_net(spec, backend)
    loss = xn.losses.get(spec["loss"])
    step = net.compile(loss, xn.optim.SGD(lr=spec["lr"]))
    Xd, Td = prepare(net, loss, X, y)
    batch = spec["batch"]
    if way == "step":
        args = (Xd[0:batch, ...], Td[0:batch, ...])
        run = step.step
    else:
        args = (Xd, Td, net.backend.asarray(np.random.default_rng(0).permutation(len(X))), batch)
        run = step.run_epoch
    run(*args)  # a compiled step compiles here, outside the timing
    benchmark.extra_info["samples_per_call"] = batch if way == "step" else len(X)
    losses = net.backend.to_numpy(benchmark(run, *args))
    assert np.all(np.isfinite(losses))


@pytest.mark.parametrize("way", ["step", "epoch"])
@pytest.mark.parametrize("backend", ["pytorch"])  # the peer, named like a backend for --benchmark-group-by
def test_pytorch_step(benchmark, backend, case, way):
    """The peer: PyTorch's eager loop on the same network and initial weights."""
    torch = pytest.importorskip("torch", reason="PyTorch is optional: pip install torch==2.13.0")
    spec = throughput.CASES[case]
    X, y = throughput.make_data(spec)
    model, loss_fn, Xt, Tt, opt = throughput.torch_setup(spec, X, y, 0, torch.device("cpu"))
    batch = spec["batch"]

    def one(xb, tb):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), tb)
        loss.backward()
        opt.step()
        return loss.item()

    def epoch():
        return [one(Xt[i:i + batch], Tt[i:i + batch]) for i in range(0, len(Xt), batch)]

    run = (lambda: [one(Xt[:batch], Tt[:batch])]) if way == "step" else epoch
    benchmark.extra_info["samples_per_call"] = batch if way == "step" else len(X)
    assert all(math.isfinite(v) for v in benchmark(run))


@pytest.mark.parametrize("labels", ["int64", "int32", "one-hot"])
@pytest.mark.parametrize("x_dtype", ["float32", "float64"])
def test_step_call_with_its_checks(benchmark, backend, labels, x_dtype):
    """``step(X, y)`` as users call it on the small net: input checks and label conversion included."""
    spec = throughput.CASES["small"]
    X, y = throughput.make_data(spec)
    X, y = X[:spec["batch"]].astype(x_dtype), y[:spec["batch"]]
    y = np.eye(spec["layers"][-1], dtype=x_dtype)[y] if labels == "one-hot" else y.astype(labels)
    step = throughput.make_net(spec, backend).compile(spec["loss"], xn.optim.SGD(lr=spec["lr"]))
    step(X, y)  # a compiled step compiles here, outside the timing
    assert math.isfinite(benchmark(step, X, y))
