"""The NumPy backend: the base kernels on ``numpy``, with SciPy's erf when SciPy is installed."""
import numpy as np

from .base import Backend


def probe():
    return None


class NumpyBackend(Backend):
    name = "numpy"
    dlpack_device = (1, 0)  # the CPU: torch CPU tensors, JAX CPU arrays, ... are shared without a copy

    def __init__(self):
        super().__init__(np, device="cpu")
        try:
            from scipy.special import erf
        except ImportError:  # the base series is accurate to ~1e-15, only slower
            return
        self.math.erf = erf

    def to_numpy(self, x):
        return np.asarray(x)

    def info(self):
        return {"device": "cpu", "numpy": np.__version__, "blas": blas_name()}


def blas_name():
    """The BLAS NumPy calls, as NumPy reports it (e.g. 'scipy-openblas 0.3.29')."""
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # show_config's layout is not a stable API
        return "unknown"
