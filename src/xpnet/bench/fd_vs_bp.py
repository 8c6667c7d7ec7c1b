"""The articles' experiment: XOR, 2-2-1 sigmoid, MSE, full-batch gradient descent (lr 1), weights
uniform in [0, 1], finite differences against backprop, on every backend and in C.

Time cap: an implementation runs the full ``iterations`` unless a short probe
projects more than ``max_seconds``; then it runs as many iterations as fit
in ``max_seconds`` and its time for the full count is extrapolated from
that run (``extrapolated`` is true, and the table marks it). A run of the
full count is timed ``repeats`` times and the fastest counts, as timeit does:
on a shared machine the slower runs measure the neighbours. The repeats go
round every implementation in turn (xpnet, then each C program, then again),
so that a ratio compares timings from the same minutes, not a quiet minute
with a busy one.
"""
from .. import optim
from ..datasets import xor
from ..errors import XpnetError
from ..init import Uniform
from ..network import MLP
from . import cbaseline
from .common import clock, fmt, markdown_table, quiet, select_backends

EPS = 0.1  # the article's step
METHODS = {"bp": {"gradient": "backprop"},
           "fd": {"gradient": "finite_difference", "method": "forward", "eps": EPS},
           "fd-central": {"gradient": "finite_difference", "method": "central", "eps": EPS}}
ARTICLE = {"implementation": "C, the article's figures (author's machine)", "iterations": 1_000_000,
           "fd_seconds": 8.08, "bp_seconds": 1.67, "fd_bp_ratio": 4.8}
SIZES = [2, 2, 1]
PROBE_SECONDS = 0.05


def xor_net(backend, seed=0, dtype="float32"):
    """The articles' 2-2-1 sigmoid network, weights and biases uniform in [0, 1)."""
    return MLP(SIZES, activation="sigmoid", output_activation="sigmoid", init=Uniform(0, 1), dtype=dtype,
               seed=seed, backend=backend)


def measure(run, iterations, max_seconds):
    """(iterations run, seconds, final MSE, extrapolated) under the time cap; ``run(n)`` → (seconds, mse).
    (repeat_in_turn times the full count again.)"""
    n = 1
    while True:  # probe with doubling counts until one run says how long an iteration takes
        seconds, mse = run(min(n, iterations))
        if n >= iterations:
            return iterations, seconds, mse, False
        if seconds >= PROBE_SECONDS:
            break
        n *= 2
    per_iteration = seconds / n
    if per_iteration * iterations > max_seconds:
        n = max(n, int(max_seconds / per_iteration))
        seconds, mse = run(n)
        return n, seconds, mse, True
    seconds, mse = run(iterations)
    return iterations, seconds, mse, False


def row(implementation, step, method, iterations, measured):
    n, seconds, mse, extrapolated = measured
    return {"implementation": implementation, "step": step, "method": method, "iterations_run": n,
            "seconds": seconds, "ns_per_iteration": 1e9 * seconds / n, "seconds_full": seconds * iterations / n,
            "extrapolated": extrapolated, "final_mse": mse}


def xpnet_rows(name, iterations, max_seconds, seed, log):
    """[(row, run)] of each method on backend ``name``, each measured once; ``run(n)`` times n more."""
    X, y = xor()
    rows = []
    for method, options in METHODS.items():
        def run(n, options=options):
            net = xor_net(name, seed)  # every run starts from the same initial weights
            step = net.compile("mse", optim.SGD(lr=1.0), **options)
            seconds = clock(net.backend, step.repeat, X, y, n)
            return seconds, net.evaluate(X, y, loss="mse")["loss"]

        warm = xor_net(name, seed).compile("mse", optim.SGD(lr=1.0), **options)
        warm.repeat(X, y, 2)  # a compiled step compiles here, outside the clock
        rows.append((row(f"xpnet {name}", getattr(warm, "kind", type(warm).__name__), method, iterations,
                         measure(run, iterations, max_seconds)), run))
        log(describe(rows[-1][0]))
    return rows


def c_rows(iterations, max_seconds, seed, log):
    """[(row, run)] of each C program and method, as xpnet_rows."""
    weights = xor_net("numpy", seed).get_weights()  # float32, as the C programs compute
    rows = []
    for program, (_, label) in cbaseline.PROGRAMS.items():
        executable = cbaseline.build(program)
        for method in METHODS:
            def run(n, executable=executable, method=method):
                return cbaseline.run(executable, method, n, weights, SIZES, eps=EPS)

            rows.append((row(label, f"cc {' '.join(cbaseline.CFLAGS)}", method, iterations,
                             measure(run, iterations, max_seconds)), run))
            log(describe(rows[-1][0]))
    return rows


def repeat_in_turn(measured, iterations, repeats, log):
    """The rows of ``measured`` [(row, run)], each full-count run timed ``repeats`` times in all, round
    after round over every implementation, keeping the fastest (extrapolated rows ran once)."""
    for _ in range(repeats - 1):
        for r, run in measured:
            if not r["extrapolated"]:
                seconds, mse = run(iterations)
                if seconds < r["seconds"]:
                    r.update(row(r["implementation"], r["step"], r["method"], iterations,
                                 (iterations, seconds, mse, False)))
    if repeats > 1:
        for r, _ in measured:
            log(describe(r) + f" (fastest of {1 if r['extrapolated'] else repeats})")
    return [r for r, _ in measured]


def describe(r):
    note = f" (extrapolated from {r['iterations_run']:,})" if r["extrapolated"] else ""
    return (f"fd-vs-bp {r['implementation']} {r['method']}: {r['seconds_full']:.3g} s{note}, "
            f"{r['ns_per_iteration']:.4g} ns/iteration, final MSE {r['final_mse']:.3g}")


def run(backends=None, iterations=1_000_000, max_seconds=30.0, c=True, seed=0, log=quiet, repeats=1):
    """The experiment on each backend (default: every usable one worth timing) and in C; returns a dict.
    ``repeats``: timings of each run that is not extrapolated (the fastest counts)."""
    iterations = int(iterations)
    if iterations < 1:
        raise XpnetError(f"iterations must be at least 1, got {iterations}")
    measured, skipped = [], []
    for name in select_backends(backends):
        measured += xpnet_rows(name, iterations, max_seconds, seed, log)
    compiler = {"compiler": "none", "build": "not compiled"}
    if c:
        cc = cbaseline.compiler()
        try:
            measured += c_rows(iterations, max_seconds, seed, log)
            compiler["compiler"] = f"{cc} ({cbaseline.compiler_version(cc)})"
            compiler["build"] = f"cc {cbaseline.flags()}"
        except cbaseline.BaselineError as e:
            skipped.append({"what": "C baselines", "reason": str(e)})
            log(f"fd-vs-bp: C baselines skipped: {e}")
    else:
        skipped.append({"what": "C baselines", "reason": "not asked for (--no-c)"})
    rows = repeat_in_turn(measured, iterations, repeats, log)
    for r in rows:  # each implementation's time per iteration ÷ its own backprop time
        bp = next(b for b in rows if b["implementation"] == r["implementation"] and b["method"] == "bp")
        r["fd_bp_ratio"] = r["ns_per_iteration"] / bp["ns_per_iteration"]
    return {"experiment": "XOR 2-2-1 sigmoid, MSE, full batch, SGD lr 1, init Uniform(0, 1)", "dtype": "float32",
            "seed": seed, "iterations": iterations, "eps": EPS, "max_seconds": max_seconds, "repeats": repeats,
            **compiler, "rows": rows, "skipped": skipped, "article": ARTICLE}


def table(result):
    """The Markdown table, the article's figures in the last rows."""
    n = result["iterations"]
    headers = ["implementation", "method", "iterations run", f"seconds for {n:,}", "ns/iteration", "final MSE",
               "÷ BP time"]
    rows = [[f"{r['implementation']} ({r['step']})", r["method"], fmt(r["iterations_run"]),
             fmt(r["seconds_full"]) + (" (extrapolated)" if r["extrapolated"] else ""),
             fmt(r["ns_per_iteration"], 4), fmt(r["final_mse"]), fmt(r["fd_bp_ratio"])] for r in result["rows"]]
    a = result["article"]
    rows += [[a["implementation"], "bp", fmt(a["iterations"]), fmt(a["bp_seconds"]),
              fmt(1e9 * a["bp_seconds"] / a["iterations"], 4), "—", "1"],
             [a["implementation"], "fd", fmt(a["iterations"]), fmt(a["fd_seconds"]),
              fmt(1e9 * a["fd_seconds"] / a["iterations"], 4), "—", fmt(a["fd_bp_ratio"])]]
    lines = [f"### The articles' experiment: {result['experiment']}, {result['dtype']}, eps {result['eps']}",
             "", markdown_table(headers, rows), ""]
    lines.append(f"Runs projected to take more than {result['max_seconds']:g} s ran for fewer iterations; their "
                 "time for the full count is extrapolated (marked), and their MSE is after the iterations run. "
                 f"The others ran {result['repeats']} time(s) each, in turn, and the fastest counts.")
    if result["compiler"] != "none":
        lines.append(f"C compiled with {result['compiler']}: `{result['build']}`.")
    lines += [f"Skipped: {s['what']}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines)
