"""Doctest collection over src/: skip modules whose optional dependency is missing, and the __main__ entry point."""
import importlib.util

collect_ignore_glob = ["src/xpnet/__main__.py"]
for module, needs in [("numba_backend", "numba"), ("cupy_backend", "cupy"), ("distributed", "mpi4py")]:
    if importlib.util.find_spec(needs) is None:
        collect_ignore_glob.append(f"src/xpnet/backends/{module}.py")
