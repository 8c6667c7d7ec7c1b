"""A backend for any Array API namespace, through array-api-compat.

array-api-strict proves the layer code uses nothing NumPy-only (and, with its
fake devices, that no array silently changes device); torch CPU tensors run
the same code through ``array_api_compat.torch``.
"""
import numpy as np

from .base import Backend


class ArrayAPIBackend(Backend):
    """Any Array API namespace ``xp`` on ``device`` (None: the namespace's default)."""

    def __init__(self, xp, device=None, name=None):
        super().__init__(xp, device=device)
        self.name = name or getattr(xp, "__name__", "array_api")

    def to_numpy(self, x):
        return np.array(np.from_dlpack(x), copy=True)


def probe_strict():
    import array_api_strict  # noqa: F401  (ImportError → "not installed")


def probe_torch():
    import torch  # noqa: F401
    import array_api_compat.torch  # noqa: F401


def strict_backend(device=None):
    """array-api-strict; ``device`` may name one of its fake devices, e.g. "device1"."""
    import array_api_strict as xp

    if isinstance(device, str):
        device = xp.Device(device)
    return ArrayAPIBackend(xp, device=device, name="array_api_strict")


def torch_backend(device="cpu"):
    """PyTorch tensors through array_api_compat.torch (CPU tensors; no autograd)."""
    import torch
    import array_api_compat.torch as xp

    return ArrayAPIBackend(xp, device=torch.device(device), name="torch")
