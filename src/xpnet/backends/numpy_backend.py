"""The NumPy backend: the base kernels on ``numpy``, with SciPy's erf when SciPy is installed."""
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .base import Backend, conv_output_shape


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

    def activation(self, z, activation, alpha):
        if activation == "relu":  # kernels.relu's values (0·z below 0, so NaN and −inf give NaN), two passes not three
            return z * (z > 0)
        return super().activation(z, activation, alpha)

    def activation_backward(self, grad_a, z, a, activation, alpha):
        if activation == "relu":  # kernels.relu_grad's values, as above
            return grad_a * (z > 0)
        return super().activation_backward(grad_a, z, a, activation, alpha)

    def im2col(self, x, kernel_size, stride, padding, dilation, pad_value=0.0):
        """The base columns with one copy: a strided view of every window, transposed into place by reshape."""
        (n, c, _, _), (kh, kw), (sh, sw), (dh, dw) = x.shape, kernel_size, stride, dilation
        oh, ow = conv_output_shape(x.shape[2:], kernel_size, stride, padding, dilation)
        padded = self.pad(x, padding, pad_value)
        span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
        windows = sliding_window_view(padded, span, axis=(2, 3))[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C, oh, ow, kh, kw)
        windows = windows[:, :, :oh, :ow]
        return windows.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow)

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
