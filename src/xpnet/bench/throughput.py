"""Backends against PyTorch: training-step throughput of tiny, small, medium and large MLPs, in float32.

Each xpnet backend is timed three ways: ``step`` (one ``step.step`` per
Python call, on one prepared batch), ``repeat`` (``step.repeat(X, y, n)``,
n steps in one call) and ``epoch`` (``step.run_epoch`` over a shuffled
order, several mini-batches). PyTorch (optional) runs the same network
from the same initial weights as a plain eager loop with torch.optim.SGD,
one batch per Python iteration (``step``) and as a shuffled epoch
(``epoch``). Ratios come from the same run.

The sgemm bound: the float32 matrix products a step needs (3 per Dense
layer: x W, xᵀ δ, δ Wᵀ, each 2·m·n·k FLOPs), timed with NumPy's matmul on
the step's own shapes in the same run; ``sgemm_fraction`` = that time ÷ the
step's time (1 would be a step that does nothing but its products at the
BLAS's speed).
"""
import os
import types

import numpy as np

from .. import optim
from ..datasets import xor
from ..validation import prepare
from ..init import Uniform
from ..losses import get as get_loss
from ..network import MLP
from .common import best_per_call_in_turn, clock, fmt, markdown_table, quiet, select_backends

DTYPE = "float32"
CASES = {
    "tiny": {"layers": [2, 2, 1], "activation": "sigmoid", "output": "sigmoid", "loss": "mse", "batch": 4,
             "batches": 1, "lr": 1.0, "data": "XOR"},
    "small": {"layers": [2, 16, 16, 2], "activation": "tanh", "output": None, "loss": "softmax_ce", "batch": 32,
              "batches": 16, "lr": 0.1, "data": "random normal inputs, random labels"},
    "medium": {"layers": [784, 256, 256, 10], "activation": "relu", "output": None, "loss": "softmax_ce",
               "batch": 128, "batches": 8, "lr": 0.01, "data": "random normal inputs, random labels"},
    "large": {"layers": [4096, 4096, 4096, 10], "activation": "relu", "output": None, "loss": "softmax_ce",
              "batch": 512, "batches": 2, "lr": 0.01, "data": "random normal inputs, random labels"},
}
DEFAULT_SIZES = ("tiny", "small", "medium")
WAYS = {"step": "one step per Python call", "repeat": "step.repeat(X, y, n)",
        "epoch": "shuffled mini-batch epoch (run_epoch)"}
def make_net(case, backend=None, seed=0):
    """The case's MLP on ``backend`` (XOR's from Uniform(0, 1), as the articles; He/Xavier otherwise)."""
    init = Uniform(0, 1) if case["data"] == "XOR" else "auto"
    return MLP(case["layers"], activation=case["activation"], output_activation=case["output"], init=init,
               dtype=DTYPE, seed=seed, backend=backend)


def make_data(case, seed=0):
    """(X, y) on the host: XOR's 4 points, or batch × batches random samples with integer labels."""
    if case["data"] == "XOR":
        X, y = xor()
        return X.astype(np.float32), y.astype(np.float32)
    rng = np.random.default_rng(seed)
    n = case["batch"] * case["batches"]
    X = rng.standard_normal((n, case["layers"][0]), dtype=np.float32)
    return X, rng.integers(0, case["layers"][-1], n)


def param_count(layers):
    return sum(a * b + b for a, b in zip(layers, layers[1:]))


def memory_needed(case):
    """A generous estimate of the bytes a case needs: parameters, gradients and optimiser copies in xpnet
    and PyTorch, the sgemm operands, activations and data."""
    widths = sum(case["layers"])
    return 4 * (12 * param_count(case["layers"]) + 24 * case["batch"] * case["batches"] * widths)


def memory_available():
    """Bytes of free memory (Linux/macOS), or None where the OS does not say."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def products(layers, batch):
    """(m, k, n, transpose a, transpose b) of the 3 products per Dense layer: x W, xᵀ δ, δ Wᵀ."""
    out = []
    for fan_in, fan_out in zip(layers, layers[1:]):
        out += [(batch, fan_in, fan_out, False, False),  # forward: z = x W
                (fan_in, batch, fan_out, True, False),   # BP4: xᵀ δ
                (batch, fan_out, fan_in, False, True)]   # BP2: δ Wᵀ
    return out


def sgemm(case):
    """(timer, FLOPs): the step's matrix products timed with NumPy float32 matmul (timer(n): seconds of n)."""
    rng = np.random.default_rng(0)
    operands = []
    for m, k, n, ta, tb in products(case["layers"], case["batch"]):
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        operands.append((a.T if ta else a, b.T if tb else b, np.empty((m, n), dtype=np.float32)))

    def run(calls):
        return clock(_HOST, _matmuls, operands, calls)

    run(1)
    return run, sum(2 * m * k * n for m, k, n, _, _ in products(case["layers"], case["batch"]))


_HOST = types.SimpleNamespace(synchronize=lambda: None)


def _matmuls(operands, calls):
    with np.errstate(invalid="ignore", over="ignore"):  # a BLAS's spurious flags (see Backend.matmul)
        for _ in range(calls):
            for a, b, out in operands:
                np.matmul(a, b, out=out)


def xpnet_ways(name, case, X, y, seed):
    """The three ways of timing a step of ``case`` on backend ``name``: [(row, timer, steps per timer call)]."""
    net = make_net(case, name, seed)
    loss = get_loss(case["loss"])
    step = net.compile(loss, optim.SGD(lr=case["lr"]))
    backend, batch = net.backend, case["batch"]
    Xd, Td = prepare(net, loss, X, y)
    Xb, Tb = Xd[0:batch, ...], Td[0:batch, ...]
    Xh, yh = X[:batch], y[:batch]
    order = backend.asarray(np.random.default_rng(seed).permutation(len(X)))

    def steps(n):
        for _ in range(n):
            step.step(Xb, Tb)

    def epochs(n):
        for _ in range(n):
            step.run_epoch(Xd, Td, order, batch)

    ways = {"step": (lambda n: clock(backend, steps, n), 1),
            "repeat": (lambda n: clock(backend, step.repeat, Xh, yh, n), 1),
            "epoch": (lambda n: clock(backend, epochs, n), case["batches"])}
    kind = getattr(step, "kind", type(step).__name__)
    for run, _ in ways.values():
        run(1)  # a compiled step compiles here, outside the clock
    return [({"implementation": f"xpnet {name}", "step": kind, "way": way}, run, steps_per_call)
            for way, (run, steps_per_call) in ways.items()]


def torch_model(net, device, twin=True):
    """The PyTorch model of ``net``: its twin with the same weights (``net.to_torch()``), or with
    PyTorch's own initialisation when ``twin`` is False."""
    import torch

    model = net.to_torch()
    if not twin:
        for module in model.modules():
            if isinstance(module, torch.nn.Linear):
                module.reset_parameters()
    return model.to(device)


def torch_setup(case, X, y, seed, device, twin=True):
    """(model, loss function, X, targets, SGD optimiser) in PyTorch, from the xpnet net's initial weights."""
    import torch

    model = torch_model(make_net(case, "numpy", seed), device, twin)
    X = torch.from_numpy(np.asarray(X, dtype=np.float32)).to(device)
    if case["loss"] == "mse":
        loss_fn, T = torch.nn.MSELoss(), torch.from_numpy(np.asarray(y, dtype=np.float32)).to(device)
    else:
        loss_fn, T = torch.nn.CrossEntropyLoss(), torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)
    return model, loss_fn, X, T, torch.optim.SGD(model.parameters(), lr=case["lr"])


def torch_ways(case, X, y, seed, device, twin=True):
    """PyTorch's eager loop timed two ways (step, epoch), as xpnet_ways."""
    import torch

    model, loss_fn, Xt, Tt, opt = torch_setup(case, X, y, seed, device, twin)
    batch = case["batch"]
    Xb, Tb = Xt[:batch], Tt[:batch]
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(X))).to(device)
    sync = types.SimpleNamespace(synchronize=torch.cuda.synchronize if device.type == "cuda" else lambda: None)

    def one(xb, tb):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), tb)
        loss.backward()
        opt.step()

    def steps(n):
        for _ in range(n):
            one(Xb, Tb)

    def epochs(n):
        for _ in range(n):
            for start in range(0, len(Xt), batch):
                rows = order[start:start + batch]
                one(Xt.index_select(0, rows), Tt.index_select(0, rows))

    label = f"torch {torch.__version__} eager, {torch.get_num_threads()} threads, {device.type}"
    ways = (("step", lambda n: clock(sync, steps, n), 1), ("epoch", lambda n: clock(sync, epochs, n), case["batches"]))
    for _, run, _ in ways:
        run(1)
    return [({"implementation": f"pytorch {device.type}", "step": label, "way": way}, run, steps_per_call)
            for way, run, steps_per_call in ways]


def first_losses(case, X, y, seed, device):
    """The first step's loss in xpnet (numpy) and in PyTorch from the same weights: the same computation?"""
    net = make_net(case, "numpy", seed)
    loss = get_loss(case["loss"])
    Xd, Td = prepare(net, loss, X[:case["batch"]], y[:case["batch"]])
    xpnet_loss = float(net.compile(loss, optim.SGD(lr=case["lr"])).step(Xd, Td))
    model, loss_fn, Xt, Tt, _ = torch_setup(case, X, y, seed, device)
    return {"xpnet": xpnet_loss, "pytorch": loss_fn(model(Xt[:case["batch"]]), Tt[:case["batch"]]).item()}


def run(backends=None, sizes=DEFAULT_SIZES, min_time=0.2, repeats=3, pytorch=True, torch_threads=None, seed=0,
        log=quiet, twin=True):
    """Throughput of every size on every backend (and PyTorch); returns a dict of cases and rows.

    Each size's timings go round the sgemm bound and every way of every implementation ``repeats`` times,
    each keeping its fastest, so that a ratio compares the same minutes of a shared machine.
    ``twin``: PyTorch starts from xpnet's weights (``net.to_torch()``), so both report the same first-step loss."""
    names = select_backends(backends)
    cases, rows, skipped = [], [], []
    torch_device = _torch_device(pytorch, skipped)
    previous_threads = _set_torch_threads(torch_device, torch_threads)
    try:
        for size in sizes:
            case = CASES[size]
            needed, free = memory_needed(case), memory_available()
            if free is not None and needed > free / 2:
                skipped.append({"what": size, "reason": f"needs about {needed / 2**30:.1f} GiB, "
                                                        f"{free / 2**30:.1f} GiB free"})
                log(f"backends {size}: skipped, {skipped[-1]['reason']}")
                continue
            X, y = make_data(case, seed)
            entry = {"name": size, "layers": case["layers"], "activation": case["activation"], "loss": case["loss"],
                     "batch": case["batch"], "samples_per_epoch": len(X), "params": param_count(case["layers"]),
                     "lr": case["lr"], "data": case["data"], "dtype": DTYPE}
            bound, flops = sgemm(case)
            ways = [way for name in names for way in xpnet_ways(name, case, X, y, seed)]
            if torch_device is not None:
                if twin:
                    entry["first_step_loss"] = first_losses(case, X, y, seed, torch_device)
                ways += torch_ways(case, X, y, seed, torch_device, twin)
            log(f"backends {size}: timing the sgemm bound and {len(ways)} ways in turn, {repeats} rounds")
            bound_seconds, *seconds = best_per_call_in_turn([bound] + [run for _, run, _ in ways], min_time, repeats)
            entry.update(flops_per_step=flops, sgemm_flops_per_s=flops / bound_seconds, bound_seconds=bound_seconds)
            mine = [dict(row, case=size, seconds_per_step=s / per_call, samples_per_s=case["batch"] * per_call / s)
                    for (row, _, per_call), s in zip(ways, seconds)]
            _log_rows(log, size, mine)
            if torch_device is not None:
                peer = {r["way"]: r["samples_per_s"] for r in mine if r["implementation"].startswith("pytorch")}
                for r in mine:  # xpnet's samples/s ÷ PyTorch's, measured the same way (repeat against step)
                    r["vs_pytorch"] = r["samples_per_s"] / peer["epoch" if r["way"] == "epoch" else "step"]
            for r in mine:
                r["sgemm_fraction"] = entry["bound_seconds"] / r["seconds_per_step"]
            cases.append(entry)
            rows += mine
    finally:
        if previous_threads is not None:
            import torch

            torch.set_num_threads(previous_threads)
    return {"dtype": DTYPE, "min_time": min_time, "repeats": repeats, "ways": WAYS, "cases": cases, "rows": rows,
            "skipped": skipped}


def _torch_device(wanted, skipped):
    if not wanted:
        skipped.append({"what": "pytorch", "reason": "not asked for (--no-torch)"})
        return None
    try:
        import torch
    except ImportError:
        skipped.append({"what": "pytorch", "reason": "torch is not installed: pip install torch==2.13.0"})
        return None
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _set_torch_threads(device, threads):
    """Give PyTorch ``threads`` (default: every core) and return its previous setting."""
    if device is None:
        return None
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    return previous


def _log_rows(log, size, rows):
    for r in rows:
        log(f"backends {size} {r['implementation']} {r['way']}: {r['samples_per_s']:,.0f} samples/s")


def table(result):
    """Markdown: one row per case, implementation and way."""
    headers = ["case", "implementation", "way", "samples/s", "µs/step", "× PyTorch", "sgemm fraction"]
    rows = [[r["case"], r["implementation"], r["way"], fmt(r["samples_per_s"]), fmt(1e6 * r["seconds_per_step"]),
             fmt(r.get("vs_pytorch")), fmt(r["sgemm_fraction"], 2)] for r in result["rows"]]
    lines = [f"### Backends vs PyTorch: training steps, {result['dtype']}", "", markdown_table(headers, rows), ""]
    lines += [f"- {c['name']}: {'-'.join(map(str, c['layers']))} {c['activation']}, {c['loss']}, batch {c['batch']}, "
              f"SGD lr {c['lr']}, {c['params']:,} parameters, {c['data']}; sgemm {c['sgemm_flops_per_s'] / 1e9:.3g} "
              f"GFLOP/s on its {len(c['layers']) - 1}×3 products → bound {1e6 * c['bound_seconds']:.3g} µs/step"
              + (f"; first-step loss xpnet {c['first_step_loss']['xpnet']:.6g}, PyTorch "
                 f"{c['first_step_loss']['pytorch']:.6g}" if "first_step_loss" in c else "") for c in result["cases"]]
    lines += ["- ways: " + "; ".join(f"{k} = {v}" for k, v in result["ways"].items())]
    lines += [f"- skipped {s['what']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines)
