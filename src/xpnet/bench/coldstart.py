"""Cold start: a fresh process imports xpnet, builds the small MLP and runs its first compiled step.

Timed with an empty NUMBA_CACHE_DIR (cold: whatever the backend compiles,
it compiles now) and again with the same folder (warm: compiled code comes
from the cache). The child reports its own import time and the time from
import to the first step's loss; the parent adds the whole process's wall
time, interpreter start included.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..errors import XpnetError
from .common import fmt, markdown_table, quiet, select_backends

CHILD = """
import json, sys, time
start = time.perf_counter()
import xpnet as xn
imported = time.perf_counter()
numba_loaded = "numba" in sys.modules
import numpy as np
rng = np.random.default_rng(0)
X, y = rng.standard_normal((32, 2)), rng.integers(0, 2, 32)
net = xn.MLP([2, 16, 16, 2], activation="tanh", seed=0, backend=sys.argv[1])
step = net.compile("softmax_ce", xn.optim.SGD(lr=0.1))
loss = step(X, y)
done = time.perf_counter()
print(json.dumps({"import_seconds": imported - start, "first_step_seconds": done - imported,
                  "numba_loaded_by_import": numba_loaded, "step": getattr(step, "kind", type(step).__name__),
                  "loss": loss}))
"""


def child(backend, cache_dir):
    """One fresh process on ``backend`` with NUMBA_CACHE_DIR=cache_dir: the child's report plus its wall time."""
    import xpnet

    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    src = str(Path(xpnet.__file__).resolve().parent.parent)  # the child imports this very xpnet
    env["PYTHONPATH"] = os.pathsep.join([src] + [p for p in [env.get("PYTHONPATH")] if p])
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", CHILD, backend], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise XpnetError(f"the cold-start child on {backend} failed: {result.stderr.strip()[-2000:]}")
    return dict(json.loads(result.stdout.splitlines()[-1]), process_seconds=wall)


def run(backends=None, log=quiet):
    """Cold then warm first-step latency on each backend; returns a dict of rows."""
    rows = []
    for name in select_backends(backends):
        with tempfile.TemporaryDirectory(prefix="xpnet-numba-cache-") as cache:
            for cache_state in ("cold", "warm"):
                r = {"backend": name, "cache": cache_state, **child(name, cache)}
                rows.append(r)
                log(f"cold start {name} ({cache_state} cache): first step {r['first_step_seconds']:.3g} s after "
                    f"import, process {r['process_seconds']:.3g} s")
    return {"network": "2-16-16-2 tanh, softmax_ce, SGD, batch 32", "rows": rows}


def table(result):
    headers = ["backend", "numba cache", "import xpnet (s)", "first step after import (s)", "whole process (s)",
               "import loads numba"]
    rows = [[r["backend"], r["cache"], fmt(r["import_seconds"]), fmt(r["first_step_seconds"]),
             fmt(r["process_seconds"]), fmt(r["numba_loaded_by_import"])] for r in result["rows"]]
    return "\n".join([f"### Cold start: a new process, {result['network']}", "", markdown_table(headers, rows)])
