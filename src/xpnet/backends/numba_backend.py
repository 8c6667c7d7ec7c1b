"""The numba backend: NumPy arrays, the hot kernels compiled with numba, and a fused MLP step.

Every override below compiles the formulas of kernels.py (through the scalar
namespace numba_math) and matches the base kernel it replaces (tested).
Large arrays take a ``prange`` variant over independent rows or elements;
small ones a serial loop, where starting threads would cost more than the work.
``net.compile()`` returns the whole-MLP step of numba_mlp.py when the network
and optimiser are ones it supports, and the plain step otherwise.
"""
import types

import numba
import numpy as np
from numba import prange

from .. import optim
from ..errors import lookup
from ..gradients import prepare
from ..layers import Dense, Dropout
from ..step import PlainStep, Step, check_repeats
from . import numba_math as M
from . import numba_mlp as mlp
from .base import bce_clip
from .numpy_backend import NumpyBackend

PARALLEL_MIN = 1 << 16  # elements from which a prange loop pays for waking the threads


def probe():
    return None  # importing this module imported numba: it is usable


def jit_variants(fn):
    """(serial, parallel) njit variants of fn, with distinct names so numba's cache keeps both."""
    variants = []
    for parallel in (False, True):
        clone = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + ("_par" if parallel else "_ser"),
                                   fn.__defaults__, fn.__closure__)
        clone.__qualname__ = clone.__name__
        variants.append(M.jit(clone, fastmath=M.FASTMATH, parallel=parallel))
    return tuple(variants)


def _bias_activation(code, Z, b, A, alpha):
    for i in prange(Z.shape[0]):
        for j in range(Z.shape[1]):
            z = Z[i, j] + b[j]
            Z[i, j] = z
            A[i, j] = mlp.activation(code, z, alpha)


def _activation(code, Z, A, alpha):
    for i in prange(Z.shape[0]):
        for j in range(Z.shape[1]):
            A[i, j] = mlp.activation(code, Z[i, j], alpha)


def _activation_grad(code, grad_a, Z, A, out, alpha):
    for i in prange(Z.shape[0]):
        for j in range(Z.shape[1]):
            out[i, j] = mlp.activation_grad(code, grad_a[i, j], Z[i, j], A[i, j], alpha)


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


_KERNELS = {f.__name__: jit_variants(f) for f in (_bias_activation, _activation, _activation_grad, _sgd_update,
                                                  _rmsprop_update, _adam_update)}


class NumbaBackend(NumpyBackend):
    """NumPy arrays with numba-compiled kernels; ``parallel=False`` keeps every kernel on one thread."""

    name = "numba"

    def __init__(self, parallel=True):
        super().__init__()
        self.parallel = bool(parallel)

    def _kernel(self, name, size):
        serial, parallel = _KERNELS[name]
        return parallel if self.parallel and size >= PARALLEL_MIN else serial

    def info(self):
        info = super().info()
        info.update({"blas": _scipy_blas(), "numba": numba.__version__, "threads": numba.config.NUMBA_NUM_THREADS,
                     "threading layer": _threading_layer(), "parallel": self.parallel,
                     "cache": "off" if not M.CACHE else (numba.config.CACHE_DIR or "next to the sources")})
        return info

    # ---- kernels ----------------------------------------------------------------------

    def activation(self, z, activation, alpha):
        Z = _as_2d(z)
        A = np.empty_like(Z)
        self._kernel("_activation", Z.size)(_code(activation), Z, A, float(alpha))
        return A.reshape(z.shape)

    def activation_backward(self, grad_a, z, a, activation, alpha):
        Z = _as_2d(z)
        out = np.empty_like(Z)
        self._kernel("_activation_grad", Z.size)(_code(activation), _as_2d(grad_a), Z, _as_2d(a), out, float(alpha))
        return out.reshape(z.shape)

    def matmul(self, a, b):
        """Through numba's np.dot, so that every product of this backend uses the one BLAS numba
        links (SciPy's OpenBLAS): two BLAS thread pools spinning side by side slow both down."""
        if a.dtype != b.dtype or a.dtype not in (np.float32, np.float64) or a.ndim != 2 or b.ndim != 2:
            return super().matmul(a, b)
        contiguous = lambda m: m if m.flags.c_contiguous or m.flags.f_contiguous else np.ascontiguousarray(m)  # noqa
        return _dot(contiguous(a), contiguous(b))

    def dense_forward(self, x, W, b, activation, alpha):
        Z = self.matmul(x, W)
        A = np.empty_like(Z)
        self._kernel("_bias_activation", Z.size)(_code(activation), Z, b, A, float(alpha))
        return Z, A

    def loss_and_grad(self, name, pred, target, need_grad=True):
        code = mlp.LOSS_CODES.get(name)
        if code is None or pred.ndim != 2:
            return super().loss_and_grad(name, pred, target, need_grad)
        # The fused step's loss, on the transposed (outputs × samples) views it works with.
        grad = np.empty(pred.shape[::-1], dtype=pred.dtype)
        loss = mlp.output_loss(code, target, np.arange(len(pred)), 0, pred.T, grad, bce_clip(pred.dtype == np.float32),
                               need_grad)
        return np.asarray(loss, dtype=pred.dtype), grad.T if need_grad else None

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

    # ---- the fused step --------------------------------------------------------------

    def compile_step(self, net, loss, optimizer, gradient="backprop", max_norm=None, clip_norm=None, eps=1e-3,
                     method="central"):
        reason = unsupported(net, loss, optimizer)
        if reason is not None:
            step = super().compile_step(net, loss, optimizer, gradient=gradient, max_norm=max_norm,
                                        clip_norm=clip_norm, eps=eps, method=method)
            step.kind = f"plain layer-by-layer step (numba fused step unavailable: {reason})"
            return step
        return FusedMLPStep(net, loss, optimizer, gradient=gradient, max_norm=max_norm, clip_norm=clip_norm, eps=eps,
                            method=method)


def _scipy_blas():
    """The BLAS numba's np.dot calls: SciPy's."""
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


def _code(activation):
    return lookup("activation", activation, mlp.ACTIVATION_CODES)


def _as_2d(a):
    return a.reshape(1, -1) if a.ndim == 1 else a.reshape(-1, a.shape[-1]) if a.ndim > 2 else a


def _flat_ok(*arrays):
    return all(a is None or (isinstance(a, np.ndarray) and a.flags.c_contiguous) for a in arrays)


def unsupported(net, loss, optimizer):
    """Why the fused step cannot run this combination, or None when it can."""
    for layer in net.layers:
        if isinstance(layer, Dropout) and layer.p > 0:
            return "Dropout needs random masks; the plain step draws them"
        if not isinstance(layer, (Dense, Dropout)):
            return f"layer {type(layer).__name__} is not Dense"
    if loss.kernel not in mlp.LOSS_CODES:
        return f"loss {loss!r}"
    if type(optimizer) not in (optim.SGD, optim.RMSProp, optim.Adam):
        return f"optimizer {type(optimizer).__name__}"
    return None


class FusedMLPStep(Step):
    """The whole training step of a Dense-only MLP as one numba function (see numba_mlp.py).

    The network's parameters, gradients and optimiser state become views into
    flat arrays that the compiled code updates in place, so the network, the
    optimiser's state_dict() and a plain step all see the same numbers.
    """

    kind = "numba fused MLP step"

    def __init__(self, net, loss, optimizer, gradient="backprop", max_norm=None, eps=1e-3, method="central",
                 clip_norm=None):
        PlainStep(net, loss, optimizer, gradient=gradient, max_norm=max_norm, clip_norm=clip_norm, eps=eps,
                  method=method)  # validates the options as every step does
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self.gradient = gradient
        self.gradient_code = 0 if gradient == "backprop" else (2 if method == "central" else 1)
        dense = [layer for layer in net.layers if isinstance(layer, Dense)]
        self.dense = dense
        self.sizes = [dense[0].fan_in] + [layer.fan_out for layer in dense]
        self.layout, n_params = mlp.make_layout(self.sizes, [layer.activation for layer in dense])
        self.alphas = np.array([layer.alpha for layer in dense], dtype=np.float64)
        ends = np.cumsum([n for layer in dense for n in (layer.fan_in * layer.fan_out, layer.fan_out)])
        self.slices = [(int(a), int(b)) for a, b in zip(np.concatenate([[0], ends[:-1]]), ends)]
        dtype = np.dtype(net.dtype)
        self.P, self.G, self.S1, self.S2 = (np.zeros(n_params, dtype=dtype) for _ in range(4))
        self.views = self.state_views = None
        self.hp = np.zeros(mlp.N_HP)
        self.hp[mlp.MAX_NORM] = max_norm or 0.0
        self.hp[mlp.CLIP_NORM] = clip_norm or 0.0
        self.hp[mlp.FD_EPS] = eps
        self.hp[mlp.BCE_EPS] = bce_clip(dtype == np.float32)
        self.loss_code = mlp.LOSS_CODES[loss.kernel]
        self.opt_code = mlp.OPTIMIZER_CODES[optimizer.config()["name"]]
        self.buffers = (None, None, None)
        self.batch_capacity = 0

    def __repr__(self):
        return (f"<{self.kind}: {len(self.dense)} Dense layers {'-'.join(map(str, self.sizes))}, loss={self.loss!r}, "
                f"optimizer={self.optimizer!r}, gradient={self.gradient!r}>")

    # ---- keeping the network and the flat arrays the same memory -------------------------

    def _adopt(self):
        params = self.net.parameters()
        if self.views is None or any(p is not v for p, v in zip(params, self.views)):
            for (start, stop), p in zip(self.slices, params):
                self.P[start:stop] = np.asarray(p).reshape(-1)
            views = iter(self.P[a:b].reshape(p.shape) for (a, b), p in zip(self.slices, params))
            grads = iter(self.G[a:b].reshape(p.shape) for (a, b), p in zip(self.slices, params))
            for layer in self.dense:
                layer.params = {name: next(views) for name in layer.param_names}
                layer.grads = {name: next(grads) for name in layer.param_names}
            self.views = self.net.parameters()
        opt = self.optimizer
        ours = self.state_views
        if opt.state is None or ours is None or any(a is not b for name in opt.state_names
                                                    for a, b in zip(opt.state[name], ours[name])):
            state = {}
            for name, flat in zip(opt.state_names, (self.S1, self.S2)):
                for i, ((a, b), p) in enumerate(zip(self.slices, params)):
                    flat[a:b] = 0.0 if opt.state is None else np.asarray(opt.state[name][i]).reshape(-1)
                state[name] = [flat[a:b].reshape(p.shape) for (a, b), p in zip(self.slices, params)]
            opt.state = state
            self.state_views = {name: list(arrays) for name, arrays in state.items()}
        hp = self.hp
        config = opt.config()
        hp[mlp.LR], hp[mlp.WEIGHT_DECAY] = opt.lr, opt.weight_decay
        hp[mlp.MOMENTUM], hp[mlp.NESTEROV] = config.get("momentum", 0.0), float(config.get("nesterov", False))
        hp[mlp.RHO], hp[mlp.EPS] = config.get("rho", 0.0), config.get("eps", 0.0)
        hp[mlp.BETA1], hp[mlp.BETA2] = config.get("beta1", 0.0), config.get("beta2", 0.0)

    def _buffers(self, m):
        if m > self.batch_capacity:
            size = sum(self.sizes) * m
            self.buffers = tuple(np.zeros(size, dtype=self.P.dtype) for _ in range(3))
            self.batch_capacity = m
        return self.buffers

    def _compiled(self, batch_size):
        """numba_mlp itself, or its variant without BLAS when no product of a batch this size would use BLAS."""
        largest = max(a * b for a, b in zip(self.sizes, self.sizes[1:])) * batch_size
        return mlp.SMALL if largest < mlp.BLAS_MIN else mlp

    def _train(self, X, T, order, batch_size, repeats):
        self._adopt()
        X, T = np.ascontiguousarray(X), np.ascontiguousarray(T)
        n_batches = -(-order.shape[0] // batch_size)
        losses = np.empty(n_batches, dtype=self.P.dtype)
        Z, A, D = self._buffers(min(batch_size, order.shape[0]))
        self.optimizer.steps = self._compiled(batch_size).train(X, T, order, batch_size, repeats, self.P, self.G, self.S1, self.S2,
                                         self.layout, self.alphas, self.loss_code, self.opt_code, self.hp,
                                         self.optimizer.steps, self.gradient_code, Z, A, D, losses)
        return losses

    # ---- the step interface (as PlainStep) ---------------------------------------------

    def step(self, X, T):
        """One full-batch step on prepared arrays; returns the loss as a 0-d array."""
        n = X.shape[0]
        return self._train(X, T, np.arange(n, dtype=np.int64), n, 1)[0]

    def repeat(self, X, y, n):
        """n full-batch steps inside compiled code; returns the last loss as a float."""
        n = check_repeats(n)
        X, T = prepare(self.net, self.loss, X, y)
        if not n:
            return float("nan")
        rows = X.shape[0]
        return float(self._train(X, T, np.arange(rows, dtype=np.int64), rows, n)[0])

    def run_epoch(self, X, T, order, batch_size):
        """One pass over the rows in ``order`` (None: as they are), in batches, inside compiled code."""
        order = np.arange(X.shape[0], dtype=np.int64) if order is None else np.asarray(order, dtype=np.int64)
        return self._train(X, T, order, batch_size, 1)

    # ---- the two halves of a step, for data-parallel training (as PlainStep) -------------

    def gradients(self, X, T):
        """(loss, gradients as views into the flat G) on one batch, compiled; nothing updated."""
        self._adopt()
        X, T = np.ascontiguousarray(X), np.ascontiguousarray(T)
        Z, A, D = self._buffers(X.shape[0])
        loss = self._compiled(X.shape[0]).compute_gradient(X, T, np.arange(X.shape[0], dtype=np.int64), self.P, self.G, self.layout,
                                    self.alphas, self.loss_code, self.hp, self.gradient_code, Z, A, D)
        return np.asarray(loss, dtype=self.P.dtype), self.net.gradients()

    def update(self, grads):
        """The optimiser step (compiled) with ``grads``, copied into G unless they are G's own views."""
        self._adopt()
        for (start, stop), g, view in zip(self.slices, grads, self.net.gradients()):
            if g is not view:
                self.G[start:stop] = np.asarray(g).reshape(-1)
        t = self.optimizer.steps + 1
        mlp.apply_update(self.P, self.G, self.S1, self.S2, self.layout, self.opt_code, self.hp, t)
        self.optimizer.steps = t
