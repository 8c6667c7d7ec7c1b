"""The NumPy backend: the base kernels on ``numpy``, with SciPy's erf when SciPy is installed."""
import ctypes
import glob
import os

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

    def add_into(self, out, index, values):
        """out[index] += values in place: no temporary the size of the view (col2im adds kh·kw of them)."""
        view = out[index]
        np.add(view, values, out=view)

    def max_pool(self, x, kernel_size, stride, padding):
        """Windows that tile the input (stride = kernel, no padding), as LeNet's: y the running maximum of the
        kh·kw strided views, argmax the first view equal to it, in whole-array arithmetic. LeNet's two pools,
        forward and backward, took 5.4 and 2.2 ms a step the base's way (im2col, max and argmax down columns,
        col2im), 1.2 and 0.7 ms so; masked writes (copyto where=, boolean indexing) ran 5-9 ns an element and
        were slower than the base (2026-12-02, AMD EPYC family 25). A window with a NaN goes to the base,
        which takes the first NaN."""
        if not _tiling(kernel_size, stride, padding) or kernel_size[0] * kernel_size[1] < 2:
            return super().max_pool(x, kernel_size, stride, padding)
        views = _tiles(x, kernel_size)
        y = np.maximum(views[0], views[1])
        for view in views[2:]:
            np.maximum(y, view, out=y)
        if np.isnan(y).any():  # np.maximum passes NaN on
            return super().max_pool(x, kernel_size, stride, padding)
        found, argmax = views[0] == y, np.zeros(y.shape, dtype=np.intp)
        for k, view in enumerate(views[1:], 1):
            first = (view == y) & ~found
            found |= first
            argmax += first * k
        return y, argmax

    def max_pool_backward(self, grad_y, argmax, x_shape, kernel_size, stride, padding):
        """For tiling windows, ∂C/∂y times (is the maximum) straight into each view: no two windows overlap.
        A NaN or inf in ∂C/∂y goes to the base, whose zeros stay zeros (0·inf would be NaN)."""
        if not _tiling(kernel_size, stride, padding) or not np.isfinite(grad_y).all():
            return super().max_pool_backward(grad_y, argmax, x_shape, kernel_size, stride, padding)
        grad_x = np.zeros(x_shape, dtype=grad_y.dtype)
        for k, view in enumerate(_tiles(grad_x, kernel_size)):
            np.multiply(grad_y, argmax == k, out=view)
        return grad_x

    def info(self):
        return {"device": "cpu", "numpy": np.__version__, "blas": blas_name()}


def _tiling(kernel_size, stride, padding):
    """Whether the windows tile their input: stride = kernel, no padding."""
    return tuple(stride) == tuple(kernel_size) and tuple(padding) == (0, 0)


def _tiles(x, kernel_size):
    """The kh·kw strided views x[:, :, i::kh, j::kw], (N, C, oh, ow) each, of windows that tile x (rows and
    columns past the last window are left out)."""
    (kh, kw), (_, _, h, w) = kernel_size, x.shape
    oh, ow = h // kh, w // kw
    return [x[:, :, i:kh * oh:kh, j:kw * ow:kw] for i in range(kh) for j in range(kw)]


def blas_name():
    """The BLAS NumPy calls, as NumPy reports it, with the kernels OpenBLAS runs on this CPU (e.g.
    'scipy-openblas 0.3.31 (SkylakeX kernels)'). OpenBLAS picks them when it loads, from the CPU or from
    OPENBLAS_CORETYPE: on a 2-core AMD EPYC with AVX-512 whose environment set OPENBLAS_CORETYPE=Haswell,
    float32 products of conv64's shapes ran at 166-177 GFLOP/s, and at 222-241 with OpenBLAS's own choice."""
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        name = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # show_config's layout is not a stable API
        return "unknown"
    kernels = openblas_kernels()
    forced = ", from OPENBLAS_CORETYPE" if kernels and os.environ.get("OPENBLAS_CORETYPE") else ""
    return f"{name} ({kernels} kernels{forced})" if kernels else name


def numpy_openblas():
    """The path of the scipy-openblas64 library NumPy's wheel loads, or None (a NumPy built on another BLAS)."""
    root = os.path.dirname(np.__file__)
    patterns = [os.path.join(os.path.dirname(root), "numpy.libs", "*scipy_openblas64_*"),  # Linux, Windows
                os.path.join(root, ".dylibs", "*scipy_openblas64_*")]  # macOS
    found = sorted(path for pattern in patterns for path in glob.glob(pattern))
    return found[0] if found else None


def openblas_kernels():
    """The kernels NumPy's OpenBLAS runs (e.g. 'Haswell', 'SkylakeX'), or None where that cannot be asked."""
    path = numpy_openblas()
    try:
        corename = ctypes.CDLL(path).scipy_openblas_get_corename64_  # the copy NumPy has loaded
    except (OSError, AttributeError, TypeError):  # TypeError: no path
        return None
    corename.restype = ctypes.c_char_p
    return corename().decode(errors="replace").strip() or None
