"""The scaling law: time per gradient against parameter count P, finite differences against backprop.

Forward differences take P + 1 forward passes, each costing about P, so
their time grows like P²; backprop takes a fixed number of passes, so like
P once the sizes are large enough for the arithmetic to outweigh the
per-call overhead. Each method is timed with ``step.repeat`` (one training
step = one gradient plus a negligible update) on MLPs from P = 9 to about
10⁵, the slopes fitted on log-log axes.

Time cap: a method stops at the first size whose projected time for one
gradient (from its last two sizes' log-log slope) exceeds ``max_seconds``;
the sizes left out are listed under ``skipped``.
"""
import math

import numpy as np

from .. import optim
from ..network import MLP
from .common import autorange, clock, fmt, markdown_table, quiet, select_backends

SIZES = ([2, 2, 1], [4, 8, 1], [8, 16, 1], [16, 32, 1], [32, 64, 1], [64, 128, 1], [128, 256, 1], [256, 384, 1])
BATCH = 32
METHODS = {"bp": {"gradient": "backprop"},
           "fd": {"gradient": "finite_difference", "method": "forward", "eps": 0.1}}


def param_count(sizes):
    """Weights and biases of an MLP with these layer sizes."""
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def loglog_fit(params, seconds):
    """(slope, intercept) of the least-squares line log10(seconds) = slope·log10(params) + intercept.

    >>> slope, intercept = loglog_fit([10, 100, 1000], [2e-6, 2e-4, 2e-2])
    >>> round(slope, 6), round(10 ** intercept, 9)
    (2.0, 2e-08)
    """
    if len(params) < 2:
        raise ValueError(f"a slope needs at least 2 points, got {len(params)}")
    slope, intercept = np.polyfit(np.log10(np.asarray(params, float)), np.log10(np.asarray(seconds, float)), 1)
    return float(slope), float(intercept)


def crossover(params, fd_seconds, bp_seconds):
    """(P, how) where finite differences become slower than backprop.

    Interpolated on log-log axes between the two measured sizes where the
    ratio fd/bp crosses 1; when it never crosses, extrapolated from the
    log-log lines fitted to all points; (None, reason) for parallel lines.

    >>> crossover([10, 100, 1000], [1e-5, 1e-3, 1e-1], [1e-4, 1e-3, 1e-2])
    (100.0, 'interpolated between measured sizes')
    """
    logp = np.log10(np.asarray(params, float))
    gap = np.log10(np.asarray(fd_seconds, float)) - np.log10(np.asarray(bp_seconds, float))
    for i in range(len(gap) - 1):
        if gap[i] == 0:
            return float(10 ** logp[i]), "interpolated between measured sizes"
        if gap[i] < 0 < gap[i + 1]:
            x = logp[i] + (logp[i + 1] - logp[i]) * -gap[i] / (gap[i + 1] - gap[i])
            return float(10 ** x), "interpolated between measured sizes"
    fd_slope, fd_icpt = loglog_fit(params, fd_seconds)
    bp_slope, bp_icpt = loglog_fit(params, bp_seconds)
    if math.isclose(fd_slope, bp_slope):
        return None, "none: the fitted lines are parallel"
    side = "slower" if gap[0] > 0 else "faster"
    return (float(10 ** ((bp_icpt - fd_icpt) / (fd_slope - bp_slope))),
            f"extrapolated from the log-log fits (FD {side} at every measured size)")


def fits(points):
    """One entry per (backend, method): slope over every point and over the larger half of the sizes."""
    out = []
    for key in dict.fromkeys((p["backend"], p["method"]) for p in points):
        mine = sorted((p for p in points if (p["backend"], p["method"]) == key), key=lambda p: p["params"])
        if len(mine) < 2:
            continue
        P, t = [p["params"] for p in mine], [p["seconds_per_gradient"] for p in mine]
        upper = max(2, (len(mine) + 1) // 2)
        slope, intercept = loglog_fit(P, t)
        out.append({"backend": key[0], "method": key[1], "points": len(mine), "slope": slope,
                    "intercept": intercept, "slope_upper": loglog_fit(P[-upper:], t[-upper:])[0],
                    "upper_from_params": P[-upper]})
    return out


def _projected(measured, params):
    """Seconds one gradient would take at ``params``, from the method's last two measurements."""
    (p1, t1), (p2, t2) = ([measured[0]] * 2 if len(measured) == 1 else measured[-2:])
    slope = 2.0 if p1 == p2 else min(3.0, max(1.0, math.log(t2 / t1) / math.log(p2 / p1)))
    return t2 * (params / p2) ** slope


def run(backends=None, sizes=SIZES, max_params=None, min_time=0.2, repeats=3, max_seconds=10.0, seed=0, log=quiet):
    """Time per gradient for each size and method on each CPU backend; returns a dict with the fits.

    Each point is the best of ``repeats`` timings (one when they would take more than ``max_seconds``).
    """
    sizes = [list(s) for s in sizes if max_params is None or param_count(s) <= max_params]
    rng = np.random.default_rng(seed)
    points, skipped = [], []
    for name in select_backends(backends, cpu_only=True):
        for method, options in METHODS.items():
            measured = []
            for i, layers in enumerate(sizes):
                P = param_count(layers)
                if measured and _projected(measured, P) > max_seconds:
                    skipped += [{"backend": name, "method": method, "layers": s, "params": param_count(s),
                                 "reason": f"projected {_projected(measured, param_count(s)):.3g} s per gradient "
                                           f"> {max_seconds:g} s"} for s in sizes[i:]]
                    log(f"scaling {name} {method}: sizes from P={P:,} skipped (projected time > {max_seconds:g} s)")
                    break
                X = rng.standard_normal((BATCH, layers[0]))
                y = rng.standard_normal((BATCH, layers[-1]))
                net = MLP(layers, activation="tanh", seed=seed, backend=name)
                step = net.compile("mse", optim.SGD(lr=1e-3), **options)
                step.repeat(X, y, 1)  # whatever this size compiles (numba has a variant for small nets) compiles here
                def timing(n):
                    return clock(net.backend, step.repeat, X, y, n)

                calls, seconds = autorange(timing, min_time)
                extra = repeats - 1 if seconds * repeats <= max_seconds else 0
                per_gradient = min([seconds] + [timing(calls) for _ in range(extra)]) / calls
                measured.append((P, per_gradient))
                points.append({"backend": name, "method": method, "layers": layers, "params": P,
                               "seconds_per_gradient": per_gradient, "calls": calls, "timings": 1 + extra})
                log(f"scaling {name} {method} P={P:,}: {per_gradient:.3g} s per gradient")
    crossovers = []
    for name in dict.fromkeys(p["backend"] for p in points):
        fd = {p["params"]: p["seconds_per_gradient"] for p in points if p["backend"] == name and p["method"] == "fd"}
        bp = {p["params"]: p["seconds_per_gradient"] for p in points if p["backend"] == name and p["method"] == "bp"}
        common = sorted(set(fd) & set(bp))
        if len(common) >= 2:
            P, how = crossover(common, [fd[p] for p in common], [bp[p] for p in common])
            crossovers.append({"backend": name, "params": P, "how": how})
    return {"batch": BATCH, "dtype": "float32", "activation": "tanh", "loss": "mse", "fd_eps": 0.1,
            "fd_method": "forward", "min_time": min_time, "repeats": repeats, "max_seconds": max_seconds,
            "sizes": [{"layers": s, "params": param_count(s)} for s in sizes],
            "points": points, "fits": fits(points), "crossovers": crossovers, "skipped": skipped}


def table(result):
    """Markdown: µs per gradient by size, then the fitted slopes and crossovers."""
    columns = list(dict.fromkeys((p["backend"], p["method"]) for p in result["points"]))
    lookup = {(p["backend"], p["method"], p["params"]): 1e6 * p["seconds_per_gradient"] for p in result["points"]}
    rows = [["-".join(map(str, s["layers"])), fmt(s["params"])]
            + [fmt(lookup.get((b, m, s["params"]))) for b, m in columns] for s in result["sizes"]]
    lines = [f"### Scaling: µs per gradient, batch {result['batch']}, {result['dtype']}, "
             f"{result['activation']} hidden layers, FD = forward differences", "",
             markdown_table(["layers", "P"] + [f"{b} {m}" for b, m in columns], rows), ""]
    fit_rows = [[f["backend"], f["method"], fmt(f["slope"]),
                 f"{fmt(f['slope_upper'])} (P ≥ {f['upper_from_params']:,})", str(f["points"])] for f in result["fits"]]
    lines += [markdown_table(["backend", "method", "log-log slope, all sizes", "slope, larger half", "sizes"],
                             fit_rows), ""]
    lines += [f"- {c['backend']}: FD becomes slower than BP at P ≈ {fmt(c['params'])} ({c['how']})"
              for c in result["crossovers"]]
    lines += [f"- skipped {s['backend']} {s['method']} P={s['params']:,}: {s['reason']}" for s in result["skipped"]]
    return "\n".join(lines)


def plot(result, path):
    """Write the log-log plot (points, fitted lines, crossovers) to ``path``; needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from ..errors import XpnetError

        raise XpnetError("the plot needs matplotlib: pip install -e '.[plot]'") from None
    fig, ax = plt.subplots(figsize=(7, 5))
    colors = {}
    for f in result["fits"]:
        mine = [p for p in result["points"] if (p["backend"], p["method"]) == (f["backend"], f["method"])]
        P = np.array([p["params"] for p in mine], float)
        color = colors.setdefault(f["backend"], f"C{len(colors)}")
        ax.loglog(P, [p["seconds_per_gradient"] for p in mine], "o" if f["method"] == "fd" else "s", color=color,
                  label=f"{f['backend']} {f['method']} (slope {f['slope']:.2f}, larger half {f['slope_upper']:.2f})")
        ax.loglog(P, 10 ** (f["intercept"] + f["slope"] * np.log10(P)), "--" if f["method"] == "fd" else ":",
                  color=color)
    for c in result["crossovers"]:
        if c["params"] is not None:
            ax.axvline(c["params"], color=colors.get(c["backend"], "k"), alpha=0.3)
    ax.set_xlabel("parameters P")
    ax.set_ylabel("seconds per gradient")
    ax.set_title(f"Finite differences vs backprop, batch {result['batch']}, {result['dtype']}")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
