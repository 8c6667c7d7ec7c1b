"""Convnets against PyTorch on the CPU: training steps per second, float32, the same threads.

Three cases, each one training step (forward, backward, SGD update) on one
prepared batch, timed per Python call as PyTorch's eager loop is:

- ``conv1d``: (1, 40) signals, three Conv1D(25, k = 3, 4, 5, stride 2, padding 1) + ReLU,
  then Dense to 10; batch 100. Small products: per-operation overhead decides.
- ``lenet5``: LeNet-5 on (1, 28, 28), batch 64 (xn.models.lenet's layers).
- ``conv64``: one Conv2D(64, 3, padding 1) on (64, 32, 32), batch 32, MSE on its output.
  Large products: the BLAS decides.

Both sides start from the same weights. The sgemm bound is the time the step's
im2col products take with NumPy's float32 matmul on the same shapes in the same
run (per conv layer W₂ cols, δ₂ colsᵀ, W₂ᵀ δ₂; per Dense layer x W, xᵀ δ, δ Wᵀ;
the first layer with parameters skips the product for ∂C/∂x, as both sides do);
``sgemm_fraction`` = bound ÷ step time.
"""
import os
import types

import numpy as np

from .. import layers as L
from .. import optim
from ..backends.base import conv_output_shape
from ..losses import get as get_loss
from ..network import Sequential
from ..validation import prepare
from .common import best_per_call_in_turn, clock, fmt, markdown_table, quiet, select_backends

DTYPE = "float32"
LENET5 = [("conv2d", 6, 5, 1, 2, "relu"), ("maxpool2d", 2), ("conv2d", 16, 5, 1, 0, "relu"), ("maxpool2d", 2),
          ("flatten",), ("dense", 120, "relu"), ("dense", 84, "relu"), ("dense", 10, "identity")]
CASES = {
    "conv1d": {"input": (1, 40), "batch": 100, "loss": "softmax_ce", "lr": 0.01,
               "layers": [("conv1d", 25, 3, 2, 1, "relu"), ("conv1d", 25, 4, 2, 1, "relu"),
                          ("conv1d", 25, 5, 2, 1, "relu"), ("flatten",), ("dense", 10, "identity")],
               "goals": {"numba": 5.0}},
    "lenet5": {"input": (1, 28, 28), "batch": 64, "loss": "softmax_ce", "lr": 0.01, "layers": LENET5,
               "goals": {"numba": 2.0, "numpy": 1.0}},
    "conv64": {"input": (64, 32, 32), "batch": 32, "loss": "mse", "lr": 0.01,
               "layers": [("conv2d", 64, 3, 1, 1, "identity"), ("flatten",)],
               "goals": {"numba": 0.8}, "sgemm_goal": 0.7},
}
TORCH_ACTIVATIONS = {"relu": "ReLU", "tanh": "Tanh", "sigmoid": "Sigmoid"}


def xpnet_layers(spec):
    """xpnet layers from a case's layer list."""
    make = {"conv1d": lambda c, k, s, p, a: L.Conv1D(c, k, stride=s, padding=p, activation=a),
            "conv2d": lambda c, k, s, p, a: L.Conv2D(c, k, stride=s, padding=p, activation=a),
            "maxpool2d": lambda k: L.MaxPool2D(k), "flatten": lambda: L.Flatten(),
            "dense": lambda n, a: L.Dense(n, activation=a)}
    return [make[kind](*args) for kind, *args in spec]


def make_net(case, backend=None, seed=0):
    return Sequential(xpnet_layers(case["layers"]), input_shape=case["input"], dtype=DTYPE, seed=seed,
                      backend=backend)


def make_data(case, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((case["batch"], *case["input"]), dtype=np.float32)
    if case["loss"] == "mse":
        return X, rng.standard_normal((case["batch"], make_net(case).n_outputs), dtype=np.float32)
    return X, rng.integers(0, 10, case["batch"])


def products(case):
    """(m, k, n, transposed a, transposed b) of every matrix product in one training step of the case."""
    shape, out, first = case["input"], [], True
    batch = case["batch"]
    for kind, *args in case["layers"]:
        if kind in ("conv1d", "conv2d"):
            channels, kernel, stride, padding, _ = args
            spatial = shape[1:]
            size = conv_output_shape(spatial, (kernel,) * len(spatial), (stride,) * len(spatial),
                                     (padding,) * len(spatial), (1,) * len(spatial))
            m, k, n = channels, shape[0] * kernel ** len(spatial), batch * int(np.prod(size))
            out += [(m, k, n, False, False), (m, n, k, False, True)]  # Z₂ = W₂ cols; BP4: δ₂ colsᵀ
            out += [] if first else [(k, m, n, True, False)]  # BP2: W₂ᵀ δ₂
            shape, first = (channels, *size), False
        elif kind == "maxpool2d":
            shape = (shape[0], *(d // args[0] for d in shape[1:]))
        elif kind == "flatten":
            shape = (int(np.prod(shape)),)
        else:  # dense
            fan_in, fan_out = shape[0], args[0]
            out += [(batch, fan_in, fan_out, False, False), (fan_in, batch, fan_out, True, False)]
            out += [] if first else [(batch, fan_out, fan_in, False, True)]
            shape, first = (fan_out,), False
    return out


def sgemm(case):
    """(timer, FLOPs): the step's products timed with NumPy float32 matmul (timer(n): seconds of n calls)."""
    rng = np.random.default_rng(0)
    operands = []
    for m, k, n, ta, tb in products(case):
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        operands.append((a.T if ta else a, b.T if tb else b, np.empty((m, n), dtype=np.float32)))

    def run(calls):
        for _ in range(calls):
            for a, b, out in operands:
                np.matmul(a, b, out=out)

    return lambda n: clock(_HOST, run, n), sum(2 * m * k * n for m, k, n, _, _ in products(case))


_HOST = types.SimpleNamespace(synchronize=lambda: None)


def xpnet_steps(name, case, X, y, seed):
    """(timer of training steps on backend ``name``, the first step's loss)."""
    net = make_net(case, name, seed)
    loss = get_loss(case["loss"])
    first = net.evaluate(X, y, loss)["loss"]  # before any step: the same number as PyTorch's, or a bug
    step = net.compile(loss, optim.SGD(lr=case["lr"]))
    Xd, Td = prepare(net, loss, X, y)

    def steps(n):
        for _ in range(n):
            step.step(Xd, Td)

    steps(2)  # compiles numba's kernels outside the clock
    return lambda n: clock(net.backend, steps, n), first


def torch_model(case, seed):
    """The case in torch.nn with xpnet's initial weights (conv weights as they are; Dense W transposed)."""
    import torch

    modules, shape = [], case["input"]
    weights = iter(make_net(case, "numpy", seed).get_weights())
    for kind, *args in case["layers"]:
        if kind in ("conv1d", "conv2d"):
            channels, kernel, stride, padding, activation = args
            module = (torch.nn.Conv1d if kind == "conv1d" else torch.nn.Conv2d)(shape[0], channels, kernel, stride,
                                                                               padding)
            W, b, shape = next(weights), next(weights), (channels,)  # (C_out, C_in, k...) on both sides
        elif kind == "dense":
            W, b, activation = next(weights).T, next(weights), args[1]  # torch stores (fan_out, fan_in)
            module = torch.nn.Linear(*W.shape[::-1])
        else:
            modules.append(torch.nn.MaxPool2d(args[0]) if kind == "maxpool2d" else torch.nn.Flatten())
            continue
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(W)))
            module.bias.copy_(torch.from_numpy(b))
        modules.append(module)
        if activation != "identity":
            modules.append(getattr(torch.nn, TORCH_ACTIVATIONS[activation])())
    return torch.nn.Sequential(*modules)


def torch_steps(case, X, y, seed):
    """(timer of PyTorch eager training steps, its first loss)."""
    import torch

    model = torch_model(case, seed)
    Xt = torch.from_numpy(X)
    if case["loss"] == "mse":
        loss_fn, T = torch.nn.MSELoss(), torch.from_numpy(y)
    else:
        loss_fn, T = torch.nn.CrossEntropyLoss(), torch.from_numpy(np.asarray(y, dtype=np.int64))
    opt = torch.optim.SGD(model.parameters(), lr=case["lr"])
    first = loss_fn(model(Xt), T).item()

    def steps(n):
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xt), T).backward()
            opt.step()

    steps(2)
    return lambda n: clock(_HOST, steps, n), first


def threads():
    """The threads both sides get: numba's thread count (every usable core unless NUMBA_NUM_THREADS says)."""
    try:
        import numba

        return numba.config.NUMBA_NUM_THREADS
    except ImportError:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run(backends=None, cases=tuple(CASES), min_time=0.2, repeats=3, pytorch=True, seed=0, log=quiet):
    """Steps per second of every case on every CPU backend and in PyTorch; returns a JSON-able dict.

    Each case's timings go round its implementations (the sgemm bound, PyTorch, each backend) ``repeats``
    times, each keeping its fastest, so that a ratio compares the same minutes of a shared machine."""
    names = select_backends(backends, cpu_only=True)
    torch = None
    if pytorch:
        try:
            import torch
        except ImportError:
            log("conv: torch is not installed, so there is no peer to compare with")
    count = threads()
    previous = None if torch is None else torch.get_num_threads()
    if torch is not None:
        torch.set_num_threads(count)
    results = []
    try:
        for case_name in cases:
            case = CASES[case_name]
            X, y = make_data(case, seed)
            bound, flops = sgemm(case)
            rows, timers = [], [bound]
            if torch is not None:
                timer, first = torch_steps(case, X, y, seed)
                rows.append({"implementation": f"pytorch {torch.__version__} cpu", "first_loss": first})
                timers.append(timer)
            for name in names:
                timer, first = xpnet_steps(name, case, X, y, seed)
                rows.append({"implementation": f"xpnet {name}", "first_loss": first, "goal": case["goals"].get(name)})
                timers.append(timer)
            bound_seconds, *seconds = best_per_call_in_turn(timers, min_time, repeats)
            for row, s in zip(rows, seconds):
                row["seconds"] = s
            entry = {"case": case_name, "input": list(case["input"]), "batch": case["batch"], "loss": case["loss"],
                     "flops_per_step": flops, "sgemm_flops_per_s": flops / bound_seconds,
                     "bound_seconds": bound_seconds, "rows": rows}
            peer = seconds[0] if torch is not None else None
            for row in entry["rows"]:
                row["vs_pytorch"] = None if peer is None else peer / row["seconds"]
                row["sgemm_fraction"] = entry["bound_seconds"] / row["seconds"]
                log(f"conv {case_name} {row['implementation']}: {1e3 * row['seconds']:.3g} ms/step, "
                    f"{fmt(row['vs_pytorch'])}× PyTorch, sgemm fraction {row['sgemm_fraction']:.2f}")
            results.append(entry)
    finally:
        if previous is not None:
            torch.set_num_threads(previous)
    return {"dtype": DTYPE, "threads": count, "min_time": min_time, "repeats": repeats, "cases": results}


def table(result):
    """Markdown: one row per case and implementation, with the goals of each case."""
    headers = ["case", "implementation", "ms/step", "steps/s", "× PyTorch", "goal", "sgemm fraction"]
    rows = [[c["case"], r["implementation"], fmt(1e3 * r["seconds"]), fmt(1.0 / r["seconds"]), fmt(r["vs_pytorch"]),
             "" if r.get("goal") is None else f"≥ {r['goal']}×", fmt(r["sgemm_fraction"], 2)]
            for c in result["cases"] for r in c["rows"]]
    lines = [f"### Convnets vs PyTorch on the CPU: training steps, {result['dtype']}, {result['threads']} threads",
             "", markdown_table(headers, rows), ""]
    lines += [f"- {c['case']}: input {tuple(c['input'])}, batch {c['batch']}, {c['loss']}; sgemm "
              f"{c['sgemm_flops_per_s'] / 1e9:.3g} GFLOP/s on the step's products → bound "
              f"{1e3 * c['bound_seconds']:.3g} ms/step" for c in result["cases"]]
    lines += ["- conv64's goal: sgemm fraction ≥ 0.7 on numba"]
    return "\n".join(lines)
