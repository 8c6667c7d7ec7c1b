"""The backend registry: which backends exist, which run here, and the current one.

>>> import xpnet as xn
>>> "numpy" in xn.backends.available()
True
>>> with xn.use("numpy") as backend:
...     backend.name
'numpy'
"""
from __future__ import annotations

import importlib
import os
import types
from typing import Any

from ..errors import BackendUnavailableError, ConfigError, lookup
from .base import Backend

# name → (module in this package, its factory, its probe, how to install what it needs)
REGISTRY = {
    "numpy": ("numpy_backend", "NumpyBackend", "probe", "pip install xpnet"),
    "numba": ("numba_backend", "NumbaBackend", "probe", "pip install 'xpnet[numba]'"),
    "cupy": ("cupy_backend", "CupyBackend", "probe",
             "pip install 'xpnet[cuda13]' (CUDA 13) or 'xpnet[cuda12]' (CUDA 12), on a machine with an NVIDIA GPU"),
    "array_api_strict": ("array_api", "strict_backend", "probe_strict", "pip install array-api-strict"),
    "torch": ("array_api", "torch_backend", "probe_torch", "pip install torch==2.13.0 (the CPU build)"),
}
AUTO_ORDER = ("cupy", "numba", "numpy")

_instances: dict = {}  # (name, options) → Backend
_probes: dict = {}  # name → why it cannot run, or None
_default = None  # set by use(); None means $XPNET_BACKEND or "auto"


def _module(name):
    return importlib.import_module(f".{REGISTRY[name][0]}", __name__)


def unavailable_reason(name):
    """None if backend ``name`` can run here, else a sentence saying why not (cached)."""
    lookup("backend", name, REGISTRY)
    if name not in _probes:
        try:
            _probes[name] = getattr(_module(name), REGISTRY[name][2])()
        except ImportError as e:
            _probes[name] = f"{e.name or e} is not installed"
    return _probes[name]


def available():
    """Names of the backends that can run on this machine, e.g. ``['numpy', 'numba']``."""
    return [name for name in REGISTRY if unavailable_reason(name) is None]


def resolve(name):
    """A registry name from ``name``, ``"auto"`` or None ($XPNET_BACKEND, else auto)."""
    if name is None:
        name = os.environ.get("XPNET_BACKEND", "").strip() or "auto"
    if name == "auto":
        return next(n for n in AUTO_ORDER if unavailable_reason(n) is None)
    lookup("backend", name, {**REGISTRY, "auto": None})
    return name


def get_backend(backend: str | Backend | types.ModuleType | None = None, *, device: Any = None,
                parallel: bool | None = None, tf32: bool | None = None, graphs: bool | str | None = None) -> Backend:
    """A Backend from a name, ``"auto"``, an array namespace module, a Backend, or None (the current one).

    Options, each for the backends that have it (None: the backend's default):
    ``device`` (cupy, array namespaces), ``parallel`` (numba: prange over rows),
    ``tf32`` (cupy: TensorFloat-32 float32 products), ``graphs`` (cupy: True, False or "auto").

    >>> get_backend("numpy").name
    'numpy'
    """
    given = {"device": device, "parallel": parallel, "tf32": tf32, "graphs": graphs}
    options = {k: v for k, v in given.items() if v is not None}
    if isinstance(backend, Backend):
        return backend
    if backend is None and not options and _default is not None:
        return _default
    if isinstance(backend, types.ModuleType):
        from .array_api import ArrayAPIBackend

        return ArrayAPIBackend(backend, **options)
    if backend is not None and not isinstance(backend, str):
        raise ConfigError(f"backend must be a name like 'numpy', a Backend or an array namespace, got {backend!r}")
    name = resolve(backend)
    reason = unavailable_reason(name)
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} is not usable here: {reason}. To fix: {REGISTRY[name][3]}")
    key = (name, tuple(sorted(options.items())))
    if key not in _instances:
        try:
            _instances[key] = getattr(_module(name), REGISTRY[name][1])(**options)
        except TypeError as e:
            raise ConfigError(f"bad options for backend {name!r}: {e}") from None
        _instances[key].registry_key = key
    return _instances[key]


def restore(name, options):
    """The backend a pickle names: ``get_backend(name, **options)`` here."""
    return get_backend(name, **dict(options))


class use:
    """Set the default backend: ``xn.use("numba")`` for the process, or ``with xn.use("cupy"):`` for a block.

    The with-form restores the previous default on exit. Options go to the backend, e.g. ``device=1``.
    """

    def __init__(self, backend: str | Backend | types.ModuleType = "auto", *, device: Any = None,
                 parallel: bool | None = None, tf32: bool | None = None, graphs: bool | str | None = None):
        global _default
        self.previous = _default
        self.backend = _default = get_backend(backend, device=device, parallel=parallel, tf32=tf32, graphs=graphs)

    def __enter__(self):
        return self.backend

    def __exit__(self, *exc):
        global _default
        _default = self.previous

    def __repr__(self):
        return f"use({self.backend!r})"


def describe():
    """One dict per registered backend: name, usable, reason, and backend details when usable."""
    rows = []
    for name in REGISTRY:
        reason = unavailable_reason(name)
        row = {"name": name, "usable": reason is None, "reason": reason or "", "install": REGISTRY[name][3]}
        if reason is None:
            row.update(get_backend(name).info())
        rows.append(row)
    return rows


__all__ = ["Backend", "available", "describe", "get_backend", "resolve", "unavailable_reason", "use"]
