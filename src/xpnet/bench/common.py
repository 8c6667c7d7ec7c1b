"""What the benchmarks share: which backends to time, clocks, the machine, Markdown tables."""
import datetime
import importlib.metadata
import math
import os
import platform
import sys
import time

import numpy as np

from .. import __version__, allocator, backends

# Usable backends that are not timed unless asked for by name, and why.
NOT_BY_DEFAULT = {"array_api_strict": "a correctness tool, not a fast backend",
                  "torch": "xpnet on torch tensors; ask for it with --backend torch"}
GPU_BACKENDS = ("cupy",)


def select_backends(names=None, cpu_only=False):
    """Backend names to time: ``names`` as given (each must be usable here), else every usable one worth timing."""
    if names:
        for name in names:
            backends.get_backend(name)  # BackendUnavailableError with the pip command when it cannot run
        return list(names)
    return [name for name in backends.available()
            if name not in NOT_BY_DEFAULT and not (cpu_only and name in GPU_BACKENDS)]


def quiet(message):
    """The default progress sink: say nothing."""


def stderr_log(message):
    """Progress for the command line: one line per measurement on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def clock(backend, fn, *args):
    """Seconds ``fn(*args)`` takes, with the device synchronised before each read of the clock."""
    backend.synchronize()
    start = time.perf_counter()
    fn(*args)
    backend.synchronize()
    return time.perf_counter() - start


def autorange(run, min_time):
    """(n, seconds) of the first ``run(n)`` that lasts ``min_time``, n growing from 1 (as timeit's autorange)."""
    n = 1
    while True:
        seconds = run(n)
        if seconds >= min_time:
            return n, seconds
        n *= int(min(10, max(2, math.ceil(1.2 * min_time / max(seconds, 1e-9)))))


def best_per_call(run, min_time, repeats):
    """(best seconds per call over ``repeats`` timings of ``run(n)``, n): n from autorange."""
    n, seconds = autorange(run, min_time)
    return min([seconds] + [run(n) for _ in range(repeats - 1)]) / n, n


def best_per_call_in_turn(runs, min_time, repeats):
    """best_per_call's seconds for each of ``runs``, timed round after round over all of them (each run's n
    from its own autorange), so that on a shared machine every one gets its fastest from the same minutes."""
    counts = [autorange(run, min_time) for run in runs]  # (n, seconds)
    best = [seconds / n for n, seconds in counts]
    for _ in range(repeats - 1):
        for k, (run, (n, _)) in enumerate(zip(runs, counts)):
            best[k] = min(best[k], run(n) / n)
    return best


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_name(cpuinfo="/proc/cpuinfo"):
    """The CPU model as the OS names it, with its family, model and widest vector unit where Linux says.

    A VM may call very different CPUs "AMD EPYC": one without AVX-512 and one with it ran the same
    LeNet products at 31-39 and 76-84 GFLOP/s, so a report names the generation too.
    """
    try:
        with open(cpuinfo) as f:
            fields = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
    except OSError:
        return platform.processor() or platform.machine()
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    details = [f"family {fields['cpu family']} model {fields['model']}"] if {"cpu family", "model"} <= fields.keys() \
        else []
    details += ["AVX-512"] if "avx512f" in flags else ["AVX2"] if "avx2" in flags else []
    details = ", ".join(details)
    name = fields.get("model name") or platform.processor() or platform.machine()
    return f"{name} ({details})" if details else name


def machine():
    """The facts a reader needs to weigh the figures: date, CPU, cores, BLAS, versions, thread settings."""
    from ..backends.numpy_backend import blas_name

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                          "NUMBA_NUM_THREADS") if k in os.environ}
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "cpu": cpu_name(), "cores": os.cpu_count(), "usable_cores": usable,
            "platform": platform.platform(), "python": platform.python_version(), "xpnet": __version__,
            "numpy": np.__version__, "blas": blas_name(),
            "versions": {p: _version(p) for p in ("numba", "cupy-cuda12x", "cupy-cuda13x", "torch", "scipy")},
            "thread_settings": threads or "defaults", "malloc": allocator.describe(), "backends": backends.available()}


def machine_lines(info):
    """The machine as Markdown bullet lines."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v != "not installed")
    return [f"- date: {info['date']}",
            f"- CPU: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable)",
            f"- BLAS: {info['blas']}; numpy {info['numpy']}; python {info['python']}; {versions}",
            f"- platform: {info['platform']}; threads: {info['thread_settings']}; malloc: {info['malloc']}",
            f"- backends usable: {', '.join(info['backends'])}"]


def fmt(value, digits=3):
    """A number for a table: whole numbers from 100 up with thousands separators, else ``digits`` significant.

    >>> [fmt(v) for v in (None, True, 1234567, 999.5, 12.345, 2.4649e-06)]
    ['—', 'yes', '1,234,567', '1,000', '12.3', '2.46e-06']
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if 100 <= abs(value) < 1e15 else f"{value:.{digits}g}"
    return str(value)


def markdown_table(headers, rows):
    """A Markdown table from headers and rows of already formatted cells."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
