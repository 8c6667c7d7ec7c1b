"""Data-parallel scaling: steps/s of the medium MLP on 1, 2, ... MPI ranks, and what the Allreduce costs.

For each backend and rank count N, ``mpiexec -n N`` runs this module as a
worker: the medium case of the backends benchmark (784-256-256-10, ReLU,
softmax cross-entropy, float32, plain SGD) trains epochs of 8 global batches
of 128 rows, each rank computing 128/N rows, and times them; then it times
the Allreduce of the step's flat buffer alone. Every rank runs one
thread (BLAS and numba), so N ranks use N cores; the rank with the slowest
clock decides.

Strong scaling (the global batch stays 128): speedup = steps/s(N) ÷ steps/s(1),
efficiency = speedup ÷ N (relative to the first rank count when it is not 1). A ring Allreduce of B bytes sends and receives
2(N−1)/N · B per rank, so per step

    t_comm(N) ≈ 2(N−1) · latency + 2(N−1)/N · B / bandwidth,   B = 4 · (parameters + 1),

and ``bus_bandwidth`` = 2(N−1)/N · B ÷ the measured Allreduce time is the
bandwidth to put in it (as nccl-tests report "busbw").
"""
import json
import os
import signal
import shutil
import subprocess
import sys

import numpy as np

from .common import best_per_call, clock, fmt, markdown_table, quiet, select_backends
from .throughput import CASES, make_data, make_net, param_count

CASE = CASES["medium"]
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def mpiexec():
    """The mpiexec next to this Python (the MPICH wheel puts it there) or on the PATH, else None."""
    return shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))


def launch(ranks, options, timeout=600, threads=1):
    """Run the worker under ``mpiexec -n ranks``; rank 0's JSON result."""
    from ..errors import BackendUnavailableError
    from ..distributed import INSTALL

    command = mpiexec()
    if command is None:
        raise BackendUnavailableError(f"the distributed benchmark needs mpiexec. To fix: {INSTALL}")
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # where xpnet is
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
               **{name: str(threads) for name in THREADS})
    proc = subprocess.Popen([command, "-n", str(ranks), sys.executable, "-m", "xpnet.bench.distributed",
                             json.dumps(options)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # mpiexec and its ranks
        raise RuntimeError(f"mpiexec -n {ranks} did not finish within {timeout} s") from None
    if proc.returncode != 0:
        raise RuntimeError(f"mpiexec -n {ranks} failed (exit {proc.returncode}):\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def worker(options):
    """One rank's part: time epochs of the data-parallel step, then the Allreduce alone; rank 0 prints JSON."""
    from .. import optim
    from ..distributed import DataParallel
    from ..validation import prepare
    from ..losses import get as get_loss

    case = dict(CASE, **options.get("case", {}))
    net = make_net(case, options["backend"], options["seed"])
    dp = DataParallel(net)
    loss = get_loss(case["loss"])
    step = dp.compile(loss, optim.SGD(lr=case["lr"]))
    X, y = make_data(case, options["seed"])
    Xd, Td = prepare(net, loss, X, y)
    backend = net.backend

    def slowest(seconds):  # every rank must take the same decisions, or their collectives would not pair up
        return max(dp.comm.allgather(seconds))

    def epochs(n):
        return slowest(clock(backend, lambda: [step.run_epoch(Xd, Td, None, case["batch"]) for _ in range(n)]))

    epochs(1)  # compiles what the backend compiles, outside the clock
    seconds, _ = best_per_call(epochs, options["min_time"], options["repeats"])
    flat = backend.asarray(np.ones(net.count_params() + 1, dtype=net.dtype))

    def allreduces(n):
        return slowest(clock(backend, lambda: [dp.allreduce(flat) for _ in range(n)]))

    allreduces(1)
    allreduce_seconds, _ = best_per_call(allreduces, options["min_time"], options["repeats"])
    if dp.rank == 0:
        print(json.dumps({"seconds_per_step": seconds / case["batches"], "allreduce_seconds": allreduce_seconds,
                          "transport": dp.transport, "step": step.inner.kind}), flush=True)


def run(backends=None, ranks=(1, 2), min_time=0.2, repeats=3, seed=0, case=None, log=quiet):
    """Steps/s, speedup, efficiency and Allreduce cost on ``ranks`` processes, per CPU backend."""
    case = dict(CASE, **(case or {}))
    n_bytes = 4 * (param_count(case["layers"]) + 1)
    rows = []
    for name in select_backends(backends, cpu_only=True):
        base = None
        for n in ranks:
            log(f"distributed: {name}, {n} rank(s)")
            got = launch(n, {"backend": name, "seed": seed, "min_time": min_time, "repeats": repeats,
                             "case": {k: case[k] for k in ("layers", "batch", "batches")}})
            steps = 1.0 / got["seconds_per_step"]
            base = steps if base is None and n == ranks[0] else base
            speedup = steps / base * ranks[0]
            traffic = 2 * (n - 1) / n * n_bytes
            rows.append({"backend": name, "ranks": n, "rows_per_rank": -(-case["batch"] // n), "steps_per_s": steps,
                         "samples_per_s": steps * case["batch"], "speedup": speedup, "efficiency": speedup / n,
                         "allreduce_seconds": got["allreduce_seconds"],
                         "allreduce_share": got["allreduce_seconds"] * steps, "bytes_per_rank": traffic,
                         "transport": got["transport"], "step": got["step"]})
            if n > 1:  # bytes moved ÷ time: the bandwidth of the formula (one rank moves nothing)
                rows[-1]["bus_bandwidth"] = traffic / got["allreduce_seconds"]
    return {"case": {"layers": case["layers"], "global_batch": case["batch"], "dtype": "float32",
                     "buffer_bytes": n_bytes, "threads_per_rank": 1}, "rows": rows}


def table(result):
    """The scaling table in Markdown, with the communication-cost formula."""
    case = result["case"]
    headers = ["backend", "ranks", "rows/rank", "steps/s", "samples/s", "speedup", "efficiency", "Allreduce µs",
               "Allreduce share of a step", "bytes sent per rank", "bus bandwidth GB/s"]
    rows = [[r["backend"], r["ranks"], r["rows_per_rank"], fmt(r["steps_per_s"]), fmt(r["samples_per_s"]),
             fmt(r["speedup"]), f"{r['efficiency']:.0%}", fmt(r["allreduce_seconds"] * 1e6),
             f"{r['allreduce_share']:.0%}", fmt(int(r["bytes_per_rank"])),
             fmt(r["bus_bandwidth"] / 1e9 if "bus_bandwidth" in r else None)] for r in result["rows"]]
    layers = "-".join(map(str, case["layers"]))
    return "\n".join([
        f"### Data-parallel scaling ({layers}, global batch {case['global_batch']}, {case['dtype']}, "
        f"{case['threads_per_rank']} thread per rank)", "",
        markdown_table(headers, rows), "",
        f"One Allreduce per step of B = {case['buffer_bytes']:,} bytes (every gradient and the loss). A ring sends "
        f"2(N−1)/N · B per rank: t_comm(N) ≈ 2(N−1) · latency + 2(N−1)/N · B / bus bandwidth."])


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]))
