"""The numba backend: NumPy arrays, the hot kernels compiled with numba, and a fused MLP step.

Every override below compiles the formulas of kernels.py (through the scalar
namespace numba_math) and matches the base kernel it replaces (tested).
Large arrays take a ``prange`` variant over independent rows or elements;
small ones a serial loop, where starting threads would cost more than the work.
``mlp_kernels`` offers the whole-MLP training kernels of numba_mlp.py, which
xpnet.steps.numba_fused drives.
"""
import types

import numba
import numpy as np
from numba import prange

from ..errors import lookup
from . import numba_conv as conv
from . import numba_blas as blas
from . import numba_math as M
from . import numba_mlp as mlp
from .base import bce_clip, conv_output_shape
from .numpy_backend import NumpyBackend, blas_name

# Elements from which a kernel runs as a prange loop. After a parallel loop, numba's OpenMP threads spin
# (without yielding) for several milliseconds, and on a machine with as many cores as threads they take
# cores from the BLAS product that usually follows: conv64's product ran 26-28 ms after the parallel im2col
# against 18-22 ms after the serial one, which lost the im2col's gain (4.5-6 ms against 7.3-8.4) three
# times over, and conv64's step was fastest with no parallel kernel at all (best 57 against 66 ms, and 48
# against 54 with PyTorch loaded; 2026-12-02, 2-core AMD EPYC); with parallel kernels from 65,536
# elements LeNet's step took 3-4x longer (2026-12-01). So only arrays about twice conv64's columns (33.5M
# elements, ~13 ms of serial copying here) go parallel. OMP_WAIT_POLICY=PASSIVE stops the spinning, but
# PyTorch shares the process's libgomp: with it set, PyTorch's conv64 step took 72-77 ms against 43-60.
PARALLEL_MIN = 1 << 25


def probe():
    return blas.PROBLEM  # importing this module imported numba: it is usable, unless XPNET_NUMBA_BLAS is wrong


def jit_variants(fn, suffix="", **names):
    """(serial, parallel) njit variants of fn, with distinct names so numba's cache keeps both; ``names``
    replace globals of fn in the copies (an activation's formula, so that each copy compiles one)."""
    variants = []
    for parallel in (False, True):
        name = f"{fn.__name__}{suffix}_{'par' if parallel else 'ser'}"
        clone = types.FunctionType(fn.__code__, dict(fn.__globals__, **names), name, fn.__defaults__,
                                   fn.__closure__)
        clone.__qualname__ = clone.__name__
        variants.append(M.jit(clone, fastmath=M.FASTMATH, parallel=parallel))
    return tuple(variants)


# The activation kernels are compiled once per activation: σ and σ' below stand for one activation's
# formulas (kernels.ACTIVATIONS through numba_math), so a network compiles only the activations it has
# and the inner loops, free of a branch per element, vectorise.
sigma, sigma_grad = mlp._identity, mlp._identity_g


def _bias_activation(Z, b, A, alpha):
    for i in prange(Z.shape[0]):
        for j in range(Z.shape[1]):
            z = Z[i, j] + b[j]
            Z[i, j] = z
            A[i, j] = sigma(M, z, alpha)


def _activation(Z, A, alpha):
    for i in prange(Z.shape[0]):
        for j in range(Z.shape[1]):
            A[i, j] = sigma(M, Z[i, j], alpha)


def _activation_grad(grad_a, Z, A, out, alpha):
    for i in prange(Z.shape[0]):
        for j in range(Z.shape[1]):
            out[i, j] = sigma_grad(M, grad_a[i, j], Z[i, j], A[i, j], alpha)


def _conv_activation(Z2, b, Z, A, alpha):
    channels, n_samples, size = Z.shape[1], Z.shape[0], Z.shape[2]
    product, zs, out = Z2.reshape(-1), Z.reshape(-1), A.reshape(-1)  # flat, as numba_conv's kernels
    for n in prange(n_samples):
        for c in range(channels):
            source, into = c * Z2.shape[1] + n * size, (n * channels + c) * size
            for p in range(size):
                z = product[mlp.ix(source + p)] + b[c]
                zs[mlp.ix(into + p)] = z
                out[mlp.ix(into + p)] = sigma(M, z, alpha)


def _conv_delta(grad_a, Z, A, delta2, db, alpha):
    n_samples, channels, size = Z.shape
    gs, zs, acts, out = grad_a.reshape(-1), Z.reshape(-1), A.reshape(-1), delta2.reshape(-1)
    sums = np.empty((n_samples, channels))  # per sample, then over samples: prange over samples adds nothing
    for n in prange(n_samples):             # into a shared total, and reads the inputs in order (3x faster than
        for c in range(channels):           # a pass per channel on conv1d's first layer)
            source, into, total = (n * channels + c) * size, c * delta2.shape[1] + n * size, 0.0
            for p in range(size):
                at = mlp.ix(source + p)
                d = sigma_grad(M, gs[at], zs[at], acts[at], alpha)
                out[mlp.ix(into + p)] = d
                total += d
            sums[n, c] = total
    for c in range(channels):
        total = 0.0
        for n in range(n_samples):
            total += sums[n, c]
        db[c] = total


def _sgd_update(P, G, V, lr, momentum, nesterov, weight_decay):
    for k in prange(P.shape[0]):
        g = mlp._weight_decayed(M, P[k], G[k], weight_decay)
        if momentum == 0.0:
            P[k] = P[k] - lr * g
        else:
            P[k], V[k] = mlp._sgd(M, P[k], g, V[k], lr, momentum, nesterov)


def _rmsprop_update(P, G, S, lr, rho, eps, weight_decay):
    for k in prange(P.shape[0]):
        g = mlp._weight_decayed(M, P[k], G[k], weight_decay)
        P[k], S[k] = mlp._rmsprop(M, P[k], g, S[k], lr, rho, eps)


def _adam_update(P, G, S1, S2, lr, beta1, beta2, eps, weight_decay, bias1, bias2):
    for k in prange(P.shape[0]):
        g = mlp._weight_decayed(M, P[k], G[k], weight_decay)
        P[k], S1[k], S2[k] = mlp._adam(M, P[k], g, S1[k], S2[k], lr, beta1, beta2, eps, bias1, bias2)


@M.jit
def _dot(a, b):
    out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
    np.dot(a, b, out)
    return out


# A Bᵀ with A (m, k) or B (n, k) of at most SMALL_SIDE rows, m·n ≤ 1024 and k ≥ 512 goes to _dot_nt: a conv
# layer's ∂W = δ₂ colsᵀ when it has few output channels or few inputs per window. OpenBLAS ran those on one
# core at a third of its rate (LeNet's first ∂W, 6×50176 by 50176×25: 0.50-0.53 ms on one thread or two),
# _dot_nt in 0.20-0.29 ms; with 16 or more rows on both sides OpenBLAS won (2026-12-02, 2-core AMD EPYC
# of family 26 model 2, with AVX-512).
SMALL_SIDE, SMALL_OUTPUT, LONG_SUM = 6, 1024, 512


@M.jit(fastmath=M.FASTMATH)
def _dot_nt(A, B, C):
    """C = A Bᵀ for row-major A (m, k) and B (n, k), m ≥ 2: each output a dot product of two rows, two rows
    of A at a time (one load of B's row for two multiply-adds), summed in chunks that stay in cache."""
    m, k = A.shape
    n = B.shape[0]
    a, b = A.reshape(-1), B.reshape(-1)
    total = np.zeros((m, n))  # float64: the chunks' sums
    for start in range(0, k, 1024):
        stop = min(start + 1024, k)
        for i in range(0, m - 1, 2):
            for j in range(n):
                s0, s1 = A.dtype.type(0), A.dtype.type(0)
                for t in range(start, stop):
                    bt = b[mlp.ix(j * k + t)]
                    s0 += a[mlp.ix(i * k + t)] * bt
                    s1 += a[mlp.ix((i + 1) * k + t)] * bt
                total[i, j] += s0
                total[i + 1, j] += s1
        if m % 2:
            for j in range(n):
                s0 = A.dtype.type(0)
                for t in range(start, stop):
                    s0 += a[mlp.ix((m - 1) * k + t)] * b[mlp.ix(j * k + t)]
                total[m - 1, j] += s0
    for i in range(m):
        for j in range(n):
            C[i, j] = total[i, j]


_KERNELS = {f.__name__: jit_variants(f) for f in (_sgd_update, _rmsprop_update, _adam_update, *conv.FUNCTIONS)}
_KERNELS.update({(f.__name__, name): jit_variants(f, "_" + name, sigma=forward, sigma_grad=backward)
                 for f in (_bias_activation, _activation, _activation_grad, _conv_activation, _conv_delta)
                 for name, forward, backward in zip(mlp.ACTIVATION_CODES, mlp._act, mlp._act_grad)})


class NumbaBackend(NumpyBackend):
    """NumPy arrays with numba-compiled kernels; ``parallel=False`` keeps every kernel on one thread."""

    name = "numba"
    mlp_kernels = mlp  # the compiled whole-MLP training step (numba_mlp.py), for xpnet.steps.numba_fused

    def __init__(self, parallel=True):
        super().__init__()
        self.parallel = bool(parallel)

    def _kernel(self, name, size, activation=None):
        """The compiled kernel ``name`` (for this activation), parallel for large arrays."""
        serial, parallel = _KERNELS[name if activation is None else (name, _activation_name(activation))]
        return parallel if self.parallel and size >= PARALLEL_MIN else serial

    def compile_notice(self, enabled=True):
        return mlp.compile_notice(enabled, mlp.KERNELS_NOTICE)

    def info(self):
        info = super().info()
        info.update({"blas": f"{blas_name()} (NumPy's)" if blas.CBLAS else _scipy_blas(), "numba": numba.__version__,
                     "threads": numba.config.NUMBA_NUM_THREADS, "threading layer": _threading_layer(),
                     "parallel": self.parallel,
                     "cache": "off" if not M.CACHE else (numba.config.CACHE_DIR or "next to the sources")})
        return info

    # ---- kernels ----------------------------------------------------------------------

    def activation(self, z, activation, alpha):
        if _activation_name(activation) == "identity":
            return z  # as kernels.identity: no copy (a convolution's output is megabytes)
        Z = _as_2d(z)
        A = np.empty_like(Z)
        self._kernel("_activation", Z.size, activation)(Z, A, float(alpha))
        return A.reshape(z.shape)

    def activation_backward(self, grad_a, z, a, activation, alpha):
        if _activation_name(activation) == "identity":
            return grad_a  # as kernels.identity_grad
        Z = _as_2d(z)
        out = np.empty_like(Z)
        self._kernel("_activation_grad", Z.size, activation)(_as_2d(grad_a), Z, _as_2d(a), out, float(alpha))
        return out.reshape(z.shape)

    def conv_activation(self, z2, b, n, activation, alpha):
        if not (_floats(z2, b) and z2.ndim == 2 and b.ndim == 1 and z2.shape[0] == b.shape[0]
                and n > 0 and z2.shape[1] % n == 0):
            return super().conv_activation(z2, b, n, activation, alpha)
        z = np.empty((n, z2.shape[0], z2.shape[1] // n), dtype=z2.dtype)  # laid out as the next layer reads it
        a = z if _activation_name(activation) == "identity" else np.empty_like(z)
        self._kernel("_conv_activation", z.size, activation)(np.ascontiguousarray(z2), np.ascontiguousarray(b), z, a,
                                                             float(alpha))
        return z, a

    def conv_delta(self, grad_a, z, a, activation, alpha):
        if not (_floats(grad_a, z, a) and z.ndim == 3 and grad_a.shape == z.shape == a.shape):
            return super().conv_delta(grad_a, z, a, activation, alpha)
        n, c, size = z.shape
        delta2, db = np.empty((c, n * size), dtype=z.dtype), np.empty(c, dtype=z.dtype)
        contiguous = np.ascontiguousarray
        self._kernel("_conv_delta", z.size, activation)(contiguous(grad_a), contiguous(z), contiguous(a), delta2, db,
                                                        float(alpha))
        return delta2, db

    def matmul(self, a, b):
        """With the BLAS the compiled step calls (numba_blas): NumPy's, through ``@``; where numba_blas
        could not find it, SciPy's, through numba's np.dot. Two BLAS thread pools spinning side by side
        slow both down. Products with a short side and a long sum, A Bᵀ as a conv layer's ∂W, go to _dot_nt."""
        if _small_by_long(a, b):
            out = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
            _dot_nt(a, b.T, out)  # b is Bᵀ for a row-major B: δ₂ colsᵀ
            return out
        if blas.CBLAS or a.dtype != b.dtype or a.dtype not in (np.float32, np.float64) or a.ndim != 2 or \
                b.ndim != 2:
            return super().matmul(a, b)
        contiguous = lambda m: m if m.flags.c_contiguous or m.flags.f_contiguous else np.ascontiguousarray(m)  # noqa
        return _dot(contiguous(a), contiguous(b))

    def dense_forward(self, x, W, b, activation, alpha):
        Z = self.matmul(x, W)
        A = np.empty_like(Z)
        self._kernel("_bias_activation", Z.size, activation)(Z, b, A, float(alpha))
        return Z, A

    def loss_and_grad(self, name, pred, target, need_grad=True):
        code = mlp.LOSS_CODES.get(name)
        if code is None or pred.ndim != 2:
            return super().loss_and_grad(name, pred, target, need_grad)
        # The fused step's loss, on rows of samples as they come (unit stride 1, sample stride k).
        n, k = pred.shape
        grad = np.empty(n * k, dtype=pred.dtype)
        loss = mlp.output_loss(code, target, np.arange(n), 0, k, n, np.ascontiguousarray(pred).reshape(-1), grad, 0,
                               1, k, bce_clip(pred.dtype == np.float32), need_grad)
        return np.asarray(loss, dtype=pred.dtype), grad.reshape(n, k) if need_grad else None

    def sgd_update(self, param, grad, velocity, lr, momentum, nesterov, weight_decay):
        if not _flat_ok(param, grad, velocity):
            return super().sgd_update(param, grad, velocity, lr, momentum, nesterov, weight_decay)
        V = param.reshape(-1) if velocity is None else velocity.reshape(-1)  # V unused without momentum
        self._kernel("_sgd_update", param.size)(param.reshape(-1), grad.reshape(-1), V, lr,
                                                momentum if velocity is not None else 0.0, nesterov, weight_decay)

    def rmsprop_update(self, param, grad, square_avg, lr, rho, eps, weight_decay):
        if not _flat_ok(param, grad, square_avg):
            return super().rmsprop_update(param, grad, square_avg, lr, rho, eps, weight_decay)
        self._kernel("_rmsprop_update", param.size)(param.reshape(-1), grad.reshape(-1), square_avg.reshape(-1), lr,
                                                    rho, eps, weight_decay)

    def adam_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
        if not _flat_ok(param, grad, m, v):
            return super().adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step)
        bias1, bias2 = 1.0 - beta1**step, 1.0 - beta2**step
        self._kernel("_adam_update", param.size)(param.reshape(-1), grad.reshape(-1), m.reshape(-1), v.reshape(-1),
                                                 lr, beta1, beta2, eps, weight_decay, bias1, bias2)

    def max_norm(self, W, limit):
        if W.ndim != 2 or not W.flags.c_contiguous:
            return super().max_norm(W, limit)
        mlp.limit_norms(W.reshape(-1), mlp.make_layout(W.shape, ["identity"])[0], float(limit))


    # ---- convolution, pooling, batch norm: numba_conv.py's single-pass kernels ------------------------------

    def im2col(self, x, kernel_size, stride, padding, dilation, pad_value=0.0):
        if not _floats(x) or x.ndim != 4:
            return super().im2col(x, kernel_size, stride, padding, dilation, pad_value)
        (n, c, _, _), (kh, kw) = x.shape, kernel_size
        oh, ow = conv_output_shape(x.shape[2:], kernel_size, stride, padding, dilation)
        cols = np.empty((c * kh * kw, n * oh * ow), dtype=x.dtype)
        self._kernel("_im2col", cols.size)(np.ascontiguousarray(x), *kernel_size, *stride, *padding, *dilation, oh, ow,
                                           pad_value, cols)
        return cols

    def col2im(self, cols, x_shape, kernel_size, stride, padding, dilation):
        oh, ow = conv_output_shape(x_shape[2:], kernel_size, stride, padding, dilation)
        if not _floats(cols) or cols.shape != (x_shape[1] * kernel_size[0] * kernel_size[1], x_shape[0] * oh * ow):
            return super().col2im(cols, x_shape, kernel_size, stride, padding, dilation)  # (which says what is wrong)
        out = np.zeros(x_shape, dtype=cols.dtype)
        self._kernel("_col2im", cols.size)(np.ascontiguousarray(cols), *kernel_size, *stride, *padding, *dilation,
                                           oh, ow, out)
        return out

    def max_pool(self, x, kernel_size, stride, padding):
        if not _floats(x):
            return super().max_pool(x, kernel_size, stride, padding)
        shape = x.shape[:2] + conv_output_shape(x.shape[2:], kernel_size, stride, padding, (1, 1))
        y, argmax = np.empty(shape, dtype=x.dtype), np.empty(shape, dtype=np.int64)
        self._kernel("_max_pool", x.size)(np.ascontiguousarray(x), *kernel_size, *stride, *padding, y, argmax)
        return y, argmax

    def max_pool_backward(self, grad_y, argmax, x_shape, kernel_size, stride, padding):
        if not _floats(grad_y):
            return super().max_pool_backward(grad_y, argmax, x_shape, kernel_size, stride, padding)
        grad_x = np.empty(x_shape, dtype=grad_y.dtype)  # the kernel zeroes each plane before it adds into it
        self._kernel("_max_pool_backward", grad_x.size)(np.ascontiguousarray(grad_y), np.ascontiguousarray(argmax),
                                                        *kernel_size, *stride, *padding, grad_x)
        return grad_x

    def avg_pool(self, x, kernel_size, stride, padding):
        if not _floats(x):
            return super().avg_pool(x, kernel_size, stride, padding)
        shape = x.shape[:2] + conv_output_shape(x.shape[2:], kernel_size, stride, padding, (1, 1))
        y = np.empty(shape, dtype=x.dtype)
        self._kernel("_avg_pool", x.size)(np.ascontiguousarray(x), *kernel_size, *stride, *padding, y)
        return y

    def avg_pool_backward(self, grad_y, x_shape, kernel_size, stride, padding):
        if not _floats(grad_y):
            return super().avg_pool_backward(grad_y, x_shape, kernel_size, stride, padding)
        grad_x = np.zeros(x_shape, dtype=grad_y.dtype)
        self._kernel("_avg_pool_backward", grad_x.size)(np.ascontiguousarray(grad_y), *kernel_size, *stride,
                                                        *padding, grad_x)
        return grad_x

    def batch_norm_statistics(self, x):
        if not _floats(x):
            return super().batch_norm_statistics(x)
        mean, var = np.empty(x.shape[1], dtype=x.dtype), np.empty(x.shape[1], dtype=x.dtype)
        self._kernel("_bn_statistics", x.size)(np.ascontiguousarray(x), mean, var)
        return mean, var

    def batch_norm_forward(self, x, mean, inv_std, gamma, beta):
        if not _floats(x, mean, inv_std, gamma, beta):
            return super().batch_norm_forward(x, mean, inv_std, gamma, beta)
        y, xhat = np.empty(x.shape, dtype=x.dtype), np.empty(x.shape, dtype=x.dtype)
        contiguous = np.ascontiguousarray
        self._kernel("_bn_forward", x.size)(contiguous(x), contiguous(mean), contiguous(inv_std), contiguous(gamma),
                                            contiguous(beta), y, xhat)
        return y, xhat

    def batch_norm_sums(self, grad_y, xhat):
        if not _floats(grad_y, xhat):
            return super().batch_norm_sums(grad_y, xhat)
        sums = np.empty((2, grad_y.shape[1]), dtype=grad_y.dtype)
        self._kernel("_bn_sums", grad_y.size)(np.ascontiguousarray(grad_y), np.ascontiguousarray(xhat), sums[0],
                                              sums[1])
        return sums[0], sums[1]

    def batch_norm_backward(self, grad_y, xhat, inv_std, gamma, mean_dy, mean_dy_xhat):
        if not _floats(grad_y, xhat, inv_std, gamma, mean_dy, mean_dy_xhat):
            return super().batch_norm_backward(grad_y, xhat, inv_std, gamma, mean_dy, mean_dy_xhat)
        grad_x = np.empty(grad_y.shape, dtype=grad_y.dtype)
        contiguous = np.ascontiguousarray
        self._kernel("_bn_backward", grad_y.size)(contiguous(grad_y), contiguous(xhat), contiguous(inv_std),
                                                  contiguous(gamma), contiguous(mean_dy), contiguous(mean_dy_xhat),
                                                  grad_x)
        return grad_x


def _scipy_blas():
    """The BLAS numba's np.dot calls: SciPy's (this backend's where numba_blas finds no NumPy BLAS)."""
    try:
        import scipy

        blas = scipy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')} (SciPy's)".strip()
    except Exception:  # show_config's layout is not a stable API
        return "SciPy's (version unknown)"


def _threading_layer():
    """The threading layer numba's prange loops run on (omp, tbb or workqueue)."""
    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()  # numba starts its pool lazily; this starts it without compiling anything
        return numba.threading_layer()
    except (ImportError, AttributeError, ValueError) as e:  # private API: report rather than fail
        return f"unknown ({type(e).__name__}; configured: {numba.config.THREADING_LAYER})"


def _activation_name(activation):
    """The activation's name, checked (an unknown name raises ConfigError with the known ones)."""
    lookup("activation", activation, mlp.ACTIVATION_CODES)
    return activation


def _as_2d(a):
    """Rows of samples: (N, C, H, W) → (N, C·H·W), so the inner loop is long and prange runs over samples."""
    return a.reshape(1, -1) if a.ndim == 1 else a.reshape(a.shape[0], -1) if a.ndim > 2 else a


def _small_by_long(a, b):
    """Whether a b is A Bᵀ with row-major A (m, k), B (n, k) of the sizes _dot_nt runs faster than OpenBLAS."""
    if a.ndim != 2 or b.ndim != 2:  # the sizes first: every product asks, few are
        return False
    (m, k), n = a.shape, b.shape[1]
    return m >= 2 and min(m, n) <= SMALL_SIDE and m * n <= SMALL_OUTPUT and k >= LONG_SUM and \
        k == b.shape[0] and _floats(a, b) and a.flags.c_contiguous and b.T.flags.c_contiguous


def _flat_ok(*arrays):
    for a in arrays:
        if a is not None and not (isinstance(a, np.ndarray) and a.flags.c_contiguous):
            return False
    return True


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _floats(*arrays):
    """True when every array is a NumPy float32 or float64 array of one dtype: what the compiled kernels take.
    (A loop, not all() over a generator: it is asked a few dozen times a step, half the time so.)"""
    dtype = getattr(arrays[0], "dtype", None)
    if dtype not in _FLOATS:
        return False
    for a in arrays:
        if not isinstance(a, np.ndarray) or a.dtype != dtype:
            return False
    return True
