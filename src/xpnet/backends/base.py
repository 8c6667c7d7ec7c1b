"""The base Backend: a complete, correct backend written in plain ``xp``.

Layers, losses and optimisers call only ``backend.xp`` and the kernels below.
Faster backends override single kernels, keep their signatures (a test checks
this) and may fall back with ``return super().kernel(...)``. Backward kernels
take ``(grad_out, *saved)`` in that order.
"""
import contextlib
import types

import numpy as np

from .. import kernels
from ..errors import ConfigError, DataTypeError, DeviceError, lookup

FLOAT_DTYPES = ("float32", "float64")
# DLPack's device types (dlpack.h DLDeviceType) that backends name.
DLPACK_DEVICES = {1: "cpu", 2: "cuda", 3: "cuda_host", 10: "rocm"}


def dlpack_device(x):
    """(device type, index) from ``x.__dlpack_device__()``, or None for an array without one."""
    try:
        kind, index = x.__dlpack_device__()
    except (AttributeError, TypeError, ValueError, RuntimeError, BufferError):
        return None
    return int(kind), int(index)


def to_dlpack(array):
    """A DLPack capsule of ``array`` (e.g. ``net.forward(X)``), for ``torch.from_dlpack``: no copy is made.

    >>> import numpy as np, xpnet as xn
    >>> type(xn.to_dlpack(np.zeros(3))).__name__
    'PyCapsule'
    """
    if not hasattr(array, "__dlpack__"):
        raise DataTypeError(f"to_dlpack takes an array with __dlpack__ (NumPy, CuPy, torch, ...), "
                            f"got {type(array).__module__}.{type(array).__name__}")
    return array.__dlpack__()


def describe_device(device):
    """A DLPack (type, index) as people write it: 'cpu', 'cuda:1'."""
    kind, index = device
    name = DLPACK_DEVICES.get(kind, f"DLPack device type {kind}")
    return name if kind == 1 else f"{name}:{index}"


def bce_clip(float32):
    """How far BCE keeps probabilities from 0 and 1, so log() stays finite."""
    return 1e-7 if float32 else 1e-12


class Backend:
    """An array namespace ``xp`` on one ``device``, and the kernels written in it."""

    name = "base"
    dlpack_device: tuple | None = None  # (DLPack device type, index) of the foreign arrays ``asarray`` shares; None: none

    def __init__(self, xp, device=None):
        self.xp = xp
        self.device = device
        self._array_type = type(xp.asarray(0.0, device=device))
        # xp plus an erf: the namespace the elementwise math in kernels.py runs on.
        self.math = types.SimpleNamespace(**{k: getattr(xp, k) for k in dir(xp) if not k.startswith("__")})
        self.math.erf = getattr(xp, "erf", None) or (lambda x: kernels.erf_series(xp, x))

    def info(self):
        """Facts for `xpnet info`: device, versions, libraries."""
        return {"device": str(self.device), "namespace": getattr(self.xp, "__name__", type(self.xp).__name__)}

    def __repr__(self):
        device = "" if self.device is None else f", device={self.device!r}"
        return f"<xpnet backend {self.name!r}{device}>"

    # A backend is a shared service, not data: copies are itself, and a pickle names it (get_backend sets
    # ``registry_key``) so that unpickling asks get_backend for the same one on the machine that loads it.
    registry_key = None

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        if self.registry_key is None:
            raise TypeError(f"{self!r} was not made by xn.get_backend, so a pickle could not find it again")
        from . import restore

        return restore, self.registry_key

    # ---- arrays and devices -------------------------------------------------

    def dtype(self, name):
        """The namespace's dtype object for ``"float32"`` or ``"float64"``."""
        if name not in FLOAT_DTYPES:
            raise ConfigError(f"dtype must be one of {FLOAT_DTYPES}, got {name!r}")
        return getattr(self.xp, name)

    def is_native(self, x):
        """True if ``x`` is an array of this backend's namespace (device not checked)."""
        return isinstance(x, self._array_type)

    def asarray(self, x, dtype=None):
        """``x`` (host data, an array of this backend, or any DLPack array on this backend's device) on
        this backend's device. A DLPack array is shared, not copied (unless ``dtype`` asks for a cast)."""
        if self.is_native(x):
            if self.device is not None and getattr(x, "device", self.device) != self.device:
                raise DeviceError(f"array is on device {x.device!r}, the network on {self.device!r}")
            return x if dtype is None or x.dtype == dtype else self.xp.astype(x, dtype)
        foreign = hasattr(x, "__array_namespace__") or hasattr(x, "__dlpack__")
        if foreign and not isinstance(x, np.ndarray):
            x = self._shared(x)
            return x if dtype is None or x.dtype == dtype else self.xp.astype(x, dtype)
        return self.xp.asarray(np.asarray(x), dtype=dtype, device=self.device)

    def _shared(self, x):
        """A foreign array on this backend's DLPack device, taken without a copy; else DeviceError naming both."""
        found = dlpack_device(x)
        if found is None or found != self.dlpack_device:
            where = "" if found is None else f" on {describe_device(found)}"
            takes = "" if self.dlpack_device is None else \
                f"; arrays shared through DLPack must be on {describe_device(self.dlpack_device)}"
            raise DeviceError(
                f"expected a NumPy array or an array of backend {self.name!r}, got {type(x).__module__}."
                f"{type(x).__name__}{where}{takes}; move it with to_numpy() or net.to(...) first")
        try:
            return self.from_dlpack(x)
        except (BufferError, TypeError, ValueError, RuntimeError) as e:  # a dtype DLPack or NumPy cannot carry
            raise DataTypeError(f"cannot share {type(x).__module__}.{type(x).__name__} ({getattr(x, 'dtype', '?')}) "
                                f"through DLPack ({str(e).rstrip('.')}); xpnet computes in {' or '.join(FLOAT_DTYPES)} "
                                f"(ints and bools are converted)") from None

    def from_dlpack(self, x):
        """``x`` (a DLPack array on this backend's device) as an array of this backend, sharing its memory."""
        return self.xp.from_dlpack(x)

    def to_numpy(self, x):
        """A host NumPy copy of ``x``."""
        if isinstance(x, np.ndarray):
            return x
        return np.asarray(x)

    def zeros_like(self, x):
        return self.xp.zeros(x.shape, dtype=x.dtype, device=self.device)

    def scalar(self, x):
        """A Python float from a 0-d array (synchronises with the device)."""
        return float(x)

    def synchronize(self):
        """Wait for queued device work; a no-op on the CPU."""

    def compile_notice(self, enabled=True):
        """A context around work that may compile the backend's kernels on first use, in which the first compile
        warns once per process (an xn.errors.CompileWarning); a no-op for backends that compile nothing."""
        return contextlib.nullcontext()

    def memory_info(self):
        """The device memory pool's ``{"used_bytes": ..., "total_bytes": ...}``; {} for a backend without one."""
        return {}

    def free_memory(self):
        """Give the device memory the pool caches but no array uses back to the device; a no-op on the host."""

    # ---- random numbers ---------------------------------------------------------

    def rng(self, seed, reuse=None):
        """The backend's own random generator seeded with ``seed`` (NumPy's on the host by default).

        ``reuse``: a generator this backend made before, which it may reseed and return
        instead of building a new one (CuPy's device generators are costly to build).
        """
        return np.random.default_rng(seed)

    def dropout_mask(self, rng, shape, p, dtype):
        """Inverted-dropout mask: 0 with probability p, else 1/(1-p)."""
        keep = rng.random(shape) >= p
        return self.asarray(keep / (1.0 - p), dtype=dtype)

    # ---- layers -------------------------------------------------------------------

    def activation(self, z, activation, alpha):
        forward, _ = lookup("activation", activation, kernels.ACTIVATIONS)
        return forward(self.math, z, alpha)

    def activation_backward(self, grad_a, z, a, activation, alpha):
        """grad_z = grad_a ⊙ σ'(z): the σ'(z) factor of BP1 and BP2."""
        _, backward = lookup("activation", activation, kernels.ACTIVATIONS)
        return backward(self.math, grad_a, z, a, alpha)

    def matmul(self, a, b):
        """The matrix product a b of two 2-D arrays (transposed views welcome).

        Some BLAS builds leave a spurious 'invalid' or 'overflow' flag on finite inputs (OpenBLAS on some
        CPUs: numpy#13173, #24067, OpenBLAS#1924), which NumPy reports as a RuntimeWarning. The flags are
        ignored around the product alone: a NaN or inf in it still flows on, and xpnet's own kernels still
        warn on a real overflow or NaN.
        """
        with np.errstate(invalid="ignore", over="ignore"):
            return self.xp.matmul(a, b)

    def dense_forward(self, x, W, b, activation, alpha):
        """z = x W + b, a = σ(z); returns (z, a)."""
        z = self.matmul(x, W) + b
        return z, self.activation(z, activation, alpha)

    # ---- convolution and pooling on (N, C, H, W); 1-D layers pass H = 1 -------------------
    # kernel_size, stride, padding, dilation are (height, width) pairs of ints.

    def pad(self, x, padding, value=0.0):
        """x (N, C, H, W) with ``padding`` rows and columns of ``value`` added on every side."""
        (ph, pw), (n, c, h, w) = padding, x.shape
        if ph == 0 and pw == 0:
            return x
        padded = self.xp.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype, device=self.device)
        padded[:, :, ph:ph + h, pw:pw + w] = x
        return padded

    def im2col(self, x, kernel_size, stride, padding, dilation, pad_value=0.0):
        """Columns (C·kh·kw, N·oh·ow) of x (N, C, H, W): column (n, i, j) holds the window under output (i, j).

        Rows run over (c, di, dj) as a weight (C_out, C, kh, kw) flattens, so conv = W.reshape(C_out, -1) @ cols.
        Written as kh·kw strided slices (gathers every array namespace has), stacked.
        """
        xp, (n, c, _, _) = self.xp, x.shape
        (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
        oh, ow = conv_output_shape(x.shape[2:], kernel_size, stride, padding, dilation)
        padded = self.pad(x, padding, pad_value)
        windows = [padded[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                   for i in range(kh) for j in range(kw)]  # each (N, C, oh, ow)
        cols = xp.permute_dims(xp.stack(windows, axis=2), (1, 2, 0, 3, 4))  # (C, kh·kw, N, oh, ow)
        return xp.reshape(cols, (c * kh * kw, n * oh * ow))

    def col2im(self, cols, x_shape, kernel_size, stride, padding, dilation):
        """The adjoint of im2col: each column entry added back where im2col read it; returns (N, C, H, W).

        Overlapping windows add up: kh·kw strided slice-adds, one per kernel offset, into a (C, N, H, W)
        buffer, where an offset's columns (C, N, oh, ow) land as they are: one transpose at the end, not one
        per offset. LeNet's second layer on NumPy, adding in place (see add_into): 3.4 ms a step the old way,
        2.3 ms this way (means of 20 rounds interleaved in one process; 2-core AMD EPYC family 25).
        """
        xp, (n, c, h, w) = self.xp, x_shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
        oh, ow = conv_output_shape((h, w), kernel_size, stride, padding, dilation)
        cols = xp.reshape(cols, (c, kh * kw, n, oh, ow))
        padded = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=cols.dtype, device=self.device)
        for i in range(kh):
            for j in range(kw):
                rows, columns = slice(i * dh, i * dh + sh * (oh - 1) + 1, sh), slice(j * dw, j * dw + sw * (ow - 1) + 1, sw)
                self.add_into(padded, (slice(None), slice(None), rows, columns), cols[:, i * kw + j, ...])
        return xp.permute_dims(padded[:, :, ph:ph + h, pw:pw + w], (1, 0, 2, 3))

    def add_into(self, out, index, values):
        """out[index] += values, written so that every array namespace can run it (a new array, stored back)."""
        out[index] = out[index] + values

    def conv_activation(self, z2, b, n, activation, alpha):
        """A convolution's output from its product Z₂ = W₂ cols, (C_out, N·P): z = Z₂ + b laid out as
        (N, C_out, P), and a = σ(z); returns (z, a). Z₂ may be overwritten."""
        xp = self.xp
        z2 += xp.reshape(b, (-1, 1))  # in place: the product is ours, and megabytes
        z = xp.permute_dims(xp.reshape(z2, (z2.shape[0], n, -1)), (1, 0, 2))
        return z, self.activation(z, activation, alpha)

    def conv_delta(self, grad_a, z, a, activation, alpha):
        """δ = ∂C/∂a ⊙ σ'(z) for z, a (N, C_out, P), as δ₂ (C_out, N·P) for the products, and ∂C/∂b (the sum of δ
        over samples and positions); returns (δ₂, ∂C/∂b)."""
        xp = self.xp
        delta = self.activation_backward(grad_a, z, a, activation, alpha)
        delta2 = xp.reshape(xp.permute_dims(delta, (1, 0, 2)), (z.shape[1], -1))
        return delta2, xp.sum(delta2, axis=1)

    def max_pool(self, x, kernel_size, stride, padding):
        """y = the largest value of each window (padding counts as −∞) and, as (N, C, oh, ow) integers,
        where in the window it sits (row-major, the first of equal values); returns (y, argmax)."""
        xp, (n, c, h, w) = self.xp, x.shape
        oh, ow = conv_output_shape((h, w), kernel_size, stride, padding, (1, 1))
        cols = self.im2col(xp.reshape(x, (n * c, 1, h, w)), kernel_size, stride, padding, (1, 1), -float("inf"))
        return xp.reshape(xp.max(cols, axis=0), (n, c, oh, ow)), xp.reshape(xp.argmax(cols, axis=0), (n, c, oh, ow))

    def max_pool_backward(self, grad_y, argmax, x_shape, kernel_size, stride, padding):
        """∂C/∂x: each ∂C/∂y goes to the input that was the window's maximum; the others get 0."""
        xp, (n, c, h, w) = self.xp, x_shape
        window = xp.reshape(xp.arange(kernel_size[0] * kernel_size[1], device=self.device), (-1, 1))
        hit = xp.reshape(argmax, (1, -1)) == window  # (kh·kw, N·C·oh·ow)
        grad_cols = xp.where(hit, xp.reshape(grad_y, (1, -1)), xp.zeros((), dtype=grad_y.dtype, device=self.device))
        grad_x = self.col2im(grad_cols, (n * c, 1, h, w), kernel_size, stride, padding, (1, 1))
        return xp.reshape(grad_x, x_shape)

    def avg_pool(self, x, kernel_size, stride, padding):
        """y = the mean of each window, padding counted as zeros (PyTorch's count_include_pad=True)."""
        xp, (n, c, h, w) = self.xp, x.shape
        oh, ow = conv_output_shape((h, w), kernel_size, stride, padding, (1, 1))
        cols = self.im2col(xp.reshape(x, (n * c, 1, h, w)), kernel_size, stride, padding, (1, 1))
        return xp.reshape(xp.mean(cols, axis=0), (n, c, oh, ow))

    def avg_pool_backward(self, grad_y, x_shape, kernel_size, stride, padding):
        """∂C/∂x: each ∂C/∂y spread evenly, 1/(kh·kw) to every position of its window."""
        xp, (n, c, h, w) = self.xp, x_shape
        size = kernel_size[0] * kernel_size[1]
        share = xp.reshape(grad_y / size, (1, -1))
        grad_cols = xp.broadcast_to(share, (size, share.shape[1]))
        grad_x = self.col2im(grad_cols, (n * c, 1, h, w), kernel_size, stride, padding, (1, 1))
        return xp.reshape(grad_x, x_shape)

    # ---- batch normalisation on (N, C, S): statistics per channel c, over n and s ------------

    def batch_norm_statistics(self, x):
        """Per-channel mean and biased variance of x (N, C, S), each (C,)."""
        mean = self.xp.mean(x, axis=(0, 2))
        centred = x - self.xp.reshape(mean, (1, -1, 1))
        return mean, self.xp.mean(centred * centred, axis=(0, 2))

    def batch_norm_forward(self, x, mean, inv_std, gamma, beta):
        """x̂ = (x − μ)/σ and y = γ x̂ + β for x (N, C, S) and (C,) vectors; returns (y, x̂)."""
        column = lambda v: self.xp.reshape(v, (-1, 1))  # noqa: E731 (C,) → (C, 1), broadcast over n and s
        xhat, y = kernels.batch_norm(self.math, x, column(mean), column(inv_std), column(gamma), column(beta))
        return y, xhat

    def batch_norm_sums(self, grad_y, xhat):
        """(Σ ∂C/∂y, Σ ∂C/∂y · x̂) per channel over n and s: ∂C/∂β and ∂C/∂γ."""
        return self.xp.sum(grad_y, axis=(0, 2)), self.xp.sum(grad_y * xhat, axis=(0, 2))

    def batch_norm_backward(self, grad_y, xhat, inv_std, gamma, mean_dy, mean_dy_xhat):
        """∂C/∂x = γ/σ (∂C/∂y − mean_dy − x̂ · mean_dy_xhat), the (C,) means given."""
        column = lambda v: self.xp.reshape(v, (-1, 1))  # noqa: E731
        return kernels.batch_norm_grad(self.math, grad_y, xhat, column(inv_std), column(gamma), column(mean_dy),
                                       column(mean_dy_xhat))

    # ---- losses: (value, ∂C/∂pred) ---------------------------------------------------

    def loss(self, name, pred, target):
        """The mean loss as a 0-d array."""
        return self.loss_and_grad(name, pred, target, need_grad=False)[0]

    def loss_and_grad(self, name, pred, target, need_grad=True):
        """(mean loss as a 0-d array, ∂loss/∂pred or None)."""
        return lookup("loss", name, self._LOSSES)(self, pred, target, need_grad)

    def _mse(self, pred, target, need_grad):
        n = pred.shape[0] * pred.shape[1]
        loss = self.xp.sum(kernels.squared_error(self.math, pred, target)) / n
        return loss, kernels.squared_error_grad(self.math, pred, target) / n if need_grad else None

    def _bce(self, prob, target, need_grad):
        eps = bce_clip(prob.dtype == self.xp.float32)
        # Not xp.clip: array-api-compat's CuPy clip reads a count back to the host, which a CUDA graph
        # capture refuses and which costs an eager step two host waits.
        p = self.xp.minimum(self.xp.maximum(prob, eps), 1.0 - eps)
        n = p.shape[0] * p.shape[1]
        loss = self.xp.sum(kernels.cross_entropy(self.math, p, target)) / n
        return loss, kernels.cross_entropy_grad(self.math, p, target) / n if need_grad else None

    def _bce_logits(self, z, target, need_grad):
        n = z.shape[0] * z.shape[1]
        loss = self.xp.sum(kernels.cross_entropy_logits(self.math, z, target)) / n
        return loss, kernels.cross_entropy_logits_grad(self.math, z, target) / n if need_grad else None

    def _softmax_ce(self, z, onehot, need_grad):
        xp = self.xp
        n = z.shape[0]
        row_max, _, _, row_sum = self._shifted_exp(z)
        # −Σ t log softmax(z) = Σ t (log Σ e^z − z); the elementwise math is in kernels.py.
        loss = xp.sum(kernels.softmax_ce_terms(self.math, z, row_max, row_sum, onehot)) / n
        grad = kernels.softmax_ce_grad(self.math, z, row_max, row_sum, onehot, n) if need_grad else None
        return loss, grad  # BP1: (softmax − y) / n

    _LOSSES = {"mse": _mse, "bce": _bce, "bce_logits": _bce_logits, "softmax_ce": _softmax_ce}

    def _shifted_exp(self, z):
        """Row max m, z − m, e^(z−m) and its row sums: every exponent is ≤ 0, so nothing overflows."""
        xp = self.xp
        row_max = xp.max(z, axis=1, keepdims=True)
        shifted = z - row_max
        exp = xp.exp(shifted)
        return row_max, shifted, exp, xp.sum(exp, axis=1, keepdims=True)

    def softmax(self, z):
        """Row-wise softmax of a 2-D array, finite for any finite z."""
        _, _, exp, total = self._shifted_exp(z)
        return exp / total

    def logsumexp(self, z):
        """Row-wise log Σ e^z of a 2-D array, shape (n, 1), finite for any finite z."""
        row_max, _, _, total = self._shifted_exp(z)
        return row_max + self.xp.log(total)

    # ---- optimiser updates, in place ---------------------------------------------

    def sgd_update(self, param, grad, velocity, lr, momentum, nesterov, weight_decay):
        """One SGD step on ``param`` (and ``velocity``, None when momentum is 0), in place."""
        g = kernels.weight_decayed(self.math, param, grad, weight_decay) if weight_decay else grad
        if velocity is None:
            param -= lr * g
            return
        new_param, new_velocity = kernels.sgd(self.math, param, g, velocity, lr, momentum, nesterov)
        param[...] = new_param
        velocity[...] = new_velocity

    def rmsprop_update(self, param, grad, square_avg, lr, rho, eps, weight_decay):
        """One RMSProp step on ``param`` and ``square_avg``, in place."""
        g = kernels.weight_decayed(self.math, param, grad, weight_decay) if weight_decay else grad
        new_param, new_square_avg = kernels.rmsprop(self.math, param, g, square_avg, lr, rho, eps)
        param[...] = new_param
        square_avg[...] = new_square_avg

    def adam_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
        """One Adam step (``step`` counts from 1) on ``param``, ``m`` and ``v``, in place."""
        g = kernels.weight_decayed(self.math, param, grad, weight_decay) if weight_decay else grad
        bias1, bias2 = 1.0 - beta1**step, 1.0 - beta2**step
        new_param, new_m, new_v = kernels.adam(self.math, param, g, m, v, lr, beta1, beta2, eps, bias1, bias2)
        param[...] = new_param
        m[...] = new_m
        v[...] = new_v

    def clip_grad_norm(self, grads, limit):
        """``grads`` scaled by min(1, limit / (‖grads‖ + 1e-6)), ‖·‖ the L2 norm of all of them together.

        The global-norm clip of PyTorch's ``clip_grad_norm_``; returns new arrays.
        """
        xp = self.xp
        # ‖g‖ = m √Σ(g/m)² with m = max|g|: squaring large float32 gradients directly would overflow.
        largest = xp.max(xp.stack([xp.max(xp.abs(g)) for g in grads]))
        largest = xp.maximum(largest, xp.finfo(largest.dtype).smallest_normal)
        total = largest * xp.sqrt(sum(xp.sum((g / largest) ** 2) for g in grads))
        scale = xp.minimum(1.0, limit / (total + 1e-6))
        return [g * scale for g in grads]

    def max_norm(self, W, limit):
        """Scale each unit's incoming weights (a column of W) to an L2 norm of at most ``limit``, in place."""
        xp = self.xp
        norms = xp.sqrt(xp.sum(W * W, axis=0, keepdims=True))
        W[...] = W * xp.minimum(1.0, limit / xp.maximum(norms, 1e-12))

    # ---- data movement for training ------------------------------------------------

    def take_rows(self, x, index):
        """Rows ``index`` (an integer array on this backend) of ``x``."""
        return self.xp.take(x, index, axis=0)

    def one_hot(self, labels, k, dtype):
        """(n,) integer labels on this backend → (n, k) one-hot rows."""
        xp = self.xp
        classes = xp.arange(k, device=self.device)
        return xp.astype(xp.reshape(labels, (-1, 1)) == classes, dtype)

    # ---- data-parallel training: summing a flat buffer over MPI ranks ------------------

    def transports(self, comm):
        """Ways this backend can sum an array over the ranks of ``comm`` (an xpnet.distributed.Communicator),
        best first: here only "mpi", through host memory."""
        return ["mpi"]

    def allreducer(self, comm, transport):
        """``reduce(flat)``: the 1-D array ``flat`` summed over every rank of ``comm`` by ``transport``.

        May sum in place and return ``flat``. Collective: every rank builds it, then calls it in step.
        """
        lookup("transport", transport, dict.fromkeys(self.transports(comm)))

        def reduce(flat):
            host = np.require(self.to_numpy(flat), requirements=["C", "W"])  # a NumPy array: itself, no copy
            comm.allreduce(host)
            return flat if host is flat else self.asarray(host)

        return reduce


def conv_output_shape(size, kernel_size, stride, padding, dilation):
    """(oh, ow) of a convolution or pooling window over (h, w): ⌊(h + 2p − d(k − 1) − 1) / s⌋ + 1 per axis."""
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip(size, kernel_size, stride, padding, dilation))
