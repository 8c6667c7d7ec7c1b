"""Doctest collection over src/: skip modules whose optional dependency is missing, and the __main__ entry point."""
import importlib.util

collect_ignore_glob = ["src/xpnet/__main__.py"]
for path, needs in [("backends/numba_backend.py", "numba"), ("backends/cupy_backend.py", "cupy"),
                    ("distributed.py", "mpi4py")]:
    if importlib.util.find_spec(needs) is None:
        collect_ignore_glob.append(f"src/xpnet/{path}")
