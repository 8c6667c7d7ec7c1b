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
