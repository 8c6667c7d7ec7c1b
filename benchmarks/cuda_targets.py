"""The CUDA targets of issue 4, measured in one run on one GPU, as ratios.

    python benchmarks/cuda_targets.py            (docker/README.md runs it in Dockerfile.cuda)

1. 784-256-256-10, batch 128: xpnet training steps/s over PyTorch eager CUDA steps/s (goal ≥ 1).
2. 2-16-16-2, batch 32, replayed from a CUDA graph: xpnet over PyTorch eager (goal ≥ 3).
3. 4096-4096-4096-4096, batch 4096: the time the step's matrix products take at the cuBLAS sgemm
   rate measured in this run (2·m·n·k FLOPs per product) over the step's time (goal ≥ 0.70).
4.–6. The convnets of `xpnet bench conv` (xpnet/bench/conv.py): a small 1-D convnet, LeNet-5 on
   (1, 28, 28) batch 64, and a 64→64 3×3 conv on 32×32 batch 32, each xpnet steps/s over PyTorch
   eager CUDA steps/s (goal ≥ 1), and for the 64→64 conv the im2col products at the sgemm rate
   over the step's time (goal ≥ 0.70).

Every step is one SGD-with-momentum update on softmax cross-entropy with ReLU hidden layers,
float32, same shapes on both sides; times are the best of 3 rounds after warm-up, with the device
synchronised. Without a usable GPU it prints why and exits 0; without PyTorch's CUDA build the
PyTorch ratios are reported as missing.
"""
import argparse
import math
import sys
import time

import numpy as np

import xpnet as xn
from xpnet.validation import prepare


def timed(fn, synchronize, repeats, rounds=3, warmup=3):
    """Seconds per call of ``fn``: best of ``rounds`` rounds of ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize()
    best = math.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        synchronize()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def xpnet_step(sizes, batch, graphs):
    """One xpnet training step on device-resident data; returns (call, synchronize, step object)."""
    backend = xn.get_backend("cupy", graphs=graphs)
    net = xn.MLP(sizes, activation="relu", backend=backend, seed=0)
    rng = np.random.default_rng(0)
    X = backend.asarray(rng.standard_normal((batch, sizes[0])), dtype=backend.dtype("float32"))
    T = backend.one_hot(backend.asarray(rng.integers(0, sizes[-1], batch)), sizes[-1], backend.dtype("float32"))
    step = net.compile("softmax_ce", xn.optim.SGD(0.01, momentum=0.9))
    return (lambda: step.step(X, T)), backend.synchronize, step


def torch_step(sizes, batch):
    """The same step in PyTorch eager mode on the GPU, or None when PyTorch has no CUDA here."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    X = torch.randn(batch, sizes[0], device="cuda")
    y = torch.randint(0, sizes[-1], (batch,), device="cuda")

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(X), y).backward()
        optimizer.step()

    return step, torch.cuda.synchronize


def product_flops(sizes, batch):
    """FLOPs of the matrix products in one xpnet step: x W, xᵀ δ and δ Wᵀ per layer (the first skips δ Wᵀ)."""
    return sum(2 * batch * fan_in * fan_out * (2 if i == 0 else 3)
               for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:])))


def conv_step(case):
    """(call, synchronize) of one xpnet training step of a `xpnet bench conv` case on the GPU."""
    from xpnet.bench import conv

    backend = xn.get_backend("cupy", graphs=False)
    net = conv.make_net(case, backend)
    X, y = conv.make_data(case)
    loss = xn.losses.get(case["loss"])
    X, T = prepare(net, loss, X, y)
    step = net.compile(loss, xn.optim.SGD(case["lr"]))
    return (lambda: step.step(X, T)), backend.synchronize


def torch_conv_step(case):
    """The same case in PyTorch eager mode on the GPU, or None when PyTorch has no CUDA here."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    from xpnet.bench import conv

    model = conv.torch_model(case, 0).cuda()
    X, y = conv.make_data(case)
    X = torch.from_numpy(X).cuda()
    if case["loss"] == "mse":
        loss_fn, T = torch.nn.MSELoss(), torch.from_numpy(y).cuda()
    else:
        loss_fn, T = torch.nn.CrossEntropyLoss(), torch.from_numpy(np.asarray(y, dtype=np.int64)).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=case["lr"])

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(X), T).backward()
        optimizer.step()

    return step, torch.cuda.synchronize


def conv_rows(scale):
    """The three convnet rows (steps/s against PyTorch) and the 64→64 conv's sgemm fraction."""
    from xpnet.bench import conv

    rows = []
    for name, repeats in (("conv1d", 500), ("lenet5", 300), ("conv64", 50)):
        case = conv.CASES[name]
        call, sync = conv_step(case)
        seconds = timed(call, sync, max(1, int(repeats * scale)))
        peer = torch_conv_step(case)
        theirs = None if peer is None else 1.0 / timed(*peer, max(1, int(repeats * scale)))
        rows.append(row(f"conv {name} b{case['batch']} steps/s", 1.0 / seconds, theirs, "PyTorch eager CUDA", 1.0))
        if name == "conv64":
            flops = sum(2 * m * k * n for m, k, n, _, _ in conv.products(case))
            ideal = flops / sgemm_rate(4096, max(1, int(50 * scale)))
            rows.append(row("conv conv64: sgemm-time / step-time", ideal / seconds, 1.0, "cuBLAS sgemm, this run",
                            0.70))
    return rows


def sgemm_rate(n, repeats):
    """FLOP/s of cupy.matmul on two n×n float32 matrices (cuBLAS sgemm)."""
    import cupy

    a = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    b = cupy.random.standard_normal((n, n), dtype=cupy.float32)
    return 2 * n**3 / timed(lambda: cupy.matmul(a, b), cupy.cuda.Device().synchronize, repeats)


def row(name, ours, peer, peer_name, goal):
    """A result line: the ratio ours/peer and whether it meets ``goal`` (None when the peer is missing)."""
    ratio = None if peer is None else ours / peer
    return {"target": name, "xpnet": ours, "peer": peer, "peer_name": peer_name, "ratio": ratio, "goal": goal,
            "met": None if ratio is None else ratio >= goal}


def report(rows):
    lines = [f"{'target':<44} {'xpnet':>12} {'peer':>12}  {'ratio':>6}  goal   met"]
    for r in rows:
        peer = "missing" if r["peer"] is None else f"{r['peer']:.4g}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        met = "-" if r["met"] is None else ("yes" if r["met"] else "NO")
        lines.append(f"{r['target']:<44} {r['xpnet']:>12.4g} {peer:>12}  {ratio:>6}  ≥{r['goal']:.2f}  {met}"
                     f"   (peer: {r['peer_name']})")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, not a measurement)")
    args = parser.parse_args(argv)
    reason = xn.backends.unavailable_reason("cupy")
    if reason is not None:
        print(f"cuda_targets: needs CuPy and a CUDA GPU: {reason}")
        return 0
    scale = 0.1 if args.quick else 1.0
    backend = xn.get_backend("cupy")
    print(f"xpnet {xn.__version__} on {backend.info()['device']}, CuPy {backend.info()['cupy']}")
    rows = []

    for name, sizes, batch, graphs, repeats, goal in (
            ("784-256-256-10 b128 steps/s", [784, 256, 256, 10], 128, False, 500, 1.0),
            ("2-16-16-2 b32 steps/s (CUDA graph)", [2, 16, 16, 2], 32, "auto", 2000, 3.0)):
        call, sync, step = xpnet_step(sizes, batch, graphs)
        ours = 1.0 / timed(call, sync, max(1, int(repeats * scale)))
        if graphs == "auto" and "CUDA-graph" not in repr(step):
            print(f"warning: {name} did not run from a CUDA graph: {step!r}")
        peer = torch_step(sizes, batch)
        theirs = None if peer is None else 1.0 / timed(*peer, max(1, int(repeats * scale)))
        rows.append(row(name, ours, theirs, "PyTorch eager CUDA", goal))

    sizes, batch = [4096, 4096, 4096, 4096], 4096
    call, sync, _ = xpnet_step(sizes, batch, False)
    seconds = timed(call, sync, max(1, int(20 * scale)))
    ideal = product_flops(sizes, batch) / sgemm_rate(4096, max(1, int(50 * scale)))
    rows.append(row("4096-wide MLP b4096: sgemm-time / step-time", ideal / seconds, 1.0, "cuBLAS sgemm, this run",
                    0.70))
    rows += conv_rows(scale)
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
