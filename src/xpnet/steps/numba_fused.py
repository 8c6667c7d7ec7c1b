"""numba's fused step: the whole training step of a Dense MLP as one compiled call (numba_mlp.py).

It runs on a backend that offers the compiled MLP kernels (``backend.mlp_kernels``,
the numba backend), for networks whose every layer is Dense or does nothing in
training (a Dropout with p = 0), with the losses and optimisers those kernels know.
"""
import operator

import numpy as np

from ..backends.base import bce_clip
from ..validation import prepare
from .base import Step, check_repeats
from .plain import PlainStep


class FusedMLPStep(Step):
    """The whole training step of a Dense-only MLP as one numba function (see numba_mlp.py).

    The network's parameters, gradients and optimiser state become views into
    flat arrays that the compiled code updates in place, so the network, the
    optimiser's state_dict() and a plain step all see the same numbers.
    """

    kind = "numba fused MLP step"
    fallback = "numba fused step unavailable"

    @staticmethod
    def offered_by(backend):
        return getattr(backend, "mlp_kernels", None) is not None

    @staticmethod
    def unsupported(net, loss, optimizer, **options):
        """Why the fused step cannot run this combination, or None when it can."""
        mlp = net.backend.mlp_kernels
        for i, layer in enumerate(net.layers):
            if layer.fused_op() is None:
                if layer.stochastic:
                    return f"layer {i} ({type(layer).__name__}) draws random numbers; the plain step draws them"
                return f"layer {i} ({type(layer).__name__}) is not Dense"
        if not any(layer.fused_op()[0] == "dense" for layer in net.layers):
            return "the network has no Dense layer"
        if loss.kernel not in mlp.LOSS_CODES:
            return f"loss {loss!r}"
        if optimizer.config()["name"] not in mlp.OPTIMIZER_CODES:
            return f"optimizer {type(optimizer).__name__}"
        return None

    @staticmethod
    def fell_back(backend, reason):
        pass

    def __init__(self, net, loss, optimizer, gradient="backprop", max_norm=None, eps=1e-3, method="central",
                 clip_norm=None):
        PlainStep(net, loss, optimizer, gradient=gradient, max_norm=max_norm, clip_norm=clip_norm, eps=eps,
                  method=method)  # validates the options as every step does
        self.mlp = mlp = net.backend.mlp_kernels
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self.gradient = gradient
        self.gradient_code = 0 if gradient == "backprop" else (2 if method == "central" else 1)
        # Dense layers (σ(x W + b)) in order; every other layer changes nothing in training.
        dense = [layer for layer in net.layers if layer.fused_op()[0] == "dense"]
        shapes = [layer.params["W"].shape for layer in dense]
        self.dense = dense
        self.sizes = [shapes[0][0]] + [fan_out for _, fan_out in shapes]
        activations = [layer.fused_op()[1] for layer in dense]
        self.layout, n_params = mlp.make_layout(self.sizes, activations)
        self.largest_product = max(a * b for a, b in zip(self.sizes, self.sizes[1:]))
        limits = max_norm is not None or clip_norm is not None
        self.variants = {blas: mlp.variant_key(activations, loss.kernel, gradient, blas, limits)
                         for blas in (False, True)}  # keys; each compiles on first use
        self.flat_input = tuple(net.input_shape) == (self.sizes[0],)  # X (n, d) as it comes: the fast checks apply
        self.alphas = np.array([layer.fused_op()[2] for layer in dense], dtype=np.float64)
        ends = np.cumsum([n for fan_in, fan_out in shapes for n in (fan_in * fan_out, fan_out)])
        self.slices = [(int(a), int(b)) for a, b in zip(np.concatenate([[0], ends[:-1]]), ends)]
        dtype = np.dtype(net.dtype)
        self.P, self.G, self.S1, self.S2 = (np.zeros(n_params, dtype=dtype) for _ in range(4))
        self.views = self.state_views = None
        self.hp = np.zeros(mlp.N_HP)
        self.no_rates = np.zeros(0)
        self.hp[mlp.MAX_NORM] = max_norm or 0.0
        self.hp[mlp.CLIP_NORM] = clip_norm or 0.0
        self.hp[mlp.FD_EPS] = eps
        self.hp[mlp.BCE_EPS] = bce_clip(dtype == np.float32)
        self.loss_code = mlp.LOSS_CODES[loss.kernel]
        self.opt_code = mlp.OPTIMIZER_CODES[optimizer.config()["name"]]
        self.buffers = (None, None, None)
        self.batch_capacity = 0
        self.targets = np.zeros((0, self.sizes[-1]), dtype=dtype)  # one-hot labels, reused from call to call
        self.aranges = {}
        self.ran = set()  # the variants whose train() this step has run (so compiled or loaded)

    def __repr__(self):
        return (f"<{self.kind}: {len(self.dense)} Dense layers {'-'.join(map(str, self.sizes))}, loss={self.loss!r}, "
                f"optimizer={self.optimizer!r}, gradient={self.gradient!r}>")

    # ---- keeping the network and the flat arrays the same memory -------------------------

    def _adopt(self):
        params = self.net.parameters()
        if self.views is None or not all(map(operator.is_, params, self.views)):  # (a third of any()'s time)
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
        # The hyperparameters into their slots of hp, in numba_mlp's order, from the optimiser's attributes:
        # one slice write, where config() and eight item writes took 2.0 µs a call against 0.8 (of a small
        # net's 23 µs step(X, y); 2-core AMD EPYC, family 25).
        self.hp[self.mlp.OPTIMIZER_SLOTS] = (
            opt.lr, getattr(opt, "momentum", 0.0), float(getattr(opt, "nesterov", False)), getattr(opt, "rho", 0.0),
            getattr(opt, "beta1", 0.0), getattr(opt, "beta2", 0.0), getattr(opt, "eps", 0.0), opt.weight_decay)

    def _buffers(self, m):
        if m > self.batch_capacity:
            size = sum(self.sizes) * m
            self.buffers = tuple(np.zeros(size, dtype=self.P.dtype) for _ in range(3))
            self.batch_capacity = m
        return self.buffers

    def _compiled(self, batch_size):
        """The variant of numba_mlp's functions for this network, with BLAS calls when a batch this size
        has a product large enough for them."""
        return self.mlp.variant(self.variants[self.largest_product * batch_size >= self.mlp.BLAS_MIN])

    def _arange(self, n):
        if n not in self.aranges:
            self.aranges = {n: np.arange(n, dtype=np.int64)}  # the last size asked for
        return self.aranges[n]

    def _train(self, X, T, order, batch_size, repeats):
        self._adopt()
        if not (X.flags.c_contiguous and T.flags.c_contiguous):
            X, T = np.ascontiguousarray(X), np.ascontiguousarray(T)
        n_batches = -(-order.shape[0] // batch_size)
        losses = np.empty(n_batches, dtype=self.P.dtype)
        Z, A, D = self._buffers(min(batch_size, order.shape[0]))
        compiled = self._compiled(batch_size)
        with self.mlp.compile_notice(self.notices and compiled.key not in self.ran):  # the first call may compile
            self.optimizer.steps = compiled.train(
                X, T, order, batch_size, repeats, self.P, self.G, self.S1, self.S2, self.layout, self.alphas,
                self.loss_code, self.opt_code, self.hp, self.optimizer.steps, self.gradient_code, Z, A, D, losses,
                self._rates(n_batches * repeats))
        self.ran.add(compiled.key)
        return losses

    def _rates(self, n_steps):
        """The rate of each of the next n_steps steps when a schedule sets them (read by the compiled loop), else none."""
        opt = self.optimizer
        if opt.schedule is None or not opt.schedule.per_step:
            return self.no_rates
        return np.array([opt.schedule(opt.steps + k) for k in range(n_steps)], dtype=np.float64)

    # ---- the step interface (as PlainStep) ---------------------------------------------

    def __call__(self, X, y):
        """One step on (X, y); returns the loss as a float. The input is checked as prepare() checks it,
        cheaply: dtype, shape and layout first, then the values in one compiled pass."""
        checked = self._checked(X, y)
        X, T = checked if checked is not None else prepare(self.net, self.loss, X, y)
        return float(self.step(X, T))

    def _checked(self, X, y):
        """(X, targets) ready for the compiled step, or None where prepare() must look (and say what is wrong).

        Takes host X (n, d) of float32/64 in C order, with integer labels for softmax_ce or (n, k) float
        targets for MSE and softmax_ce; the rest goes through prepare().
        """
        if not (type(X) is np.ndarray and type(y) is np.ndarray and self.flat_input and X.ndim == 2
                and X.shape[1] == self.sizes[0] and X.dtype in (np.float32, np.float64) and X.flags.c_contiguous
                and 0 < len(X) == len(y)):
            return None
        if self.mlp.first_nonfinite(X.reshape(-1)) >= 0:
            return None
        k = self.sizes[-1]
        if y.ndim == 1 and y.dtype.kind in "iu" and self.loss.kernel == "softmax_ce":
            if len(self.targets) != len(y):
                self.targets = np.zeros((len(y), k), dtype=self.P.dtype)
            if self.mlp.one_hot(y, k, self.targets) >= 0:
                return None
            T = self.targets
        elif (y.ndim == 2 and y.shape[1] == k and y.dtype in (np.float32, np.float64) and y.flags.c_contiguous
              and self.loss.kernel in ("mse", "softmax_ce")):
            if self.mlp.first_nonfinite(y.reshape(-1)) >= 0:
                return None
            T = y if y.dtype == self.P.dtype else y.astype(self.P.dtype)
        else:
            return None
        return (X if X.dtype == self.P.dtype else X.astype(self.P.dtype)), T

    def step(self, X, T):
        """One full-batch step on prepared arrays; returns the loss as a 0-d array."""
        n = X.shape[0]
        return self._train(X, T, self._arange(n), n, 1)[0]

    def repeat(self, X, y, n):
        """n full-batch steps inside compiled code; returns the last loss as a float."""
        n = check_repeats(n)
        X, T = prepare(self.net, self.loss, X, y)
        if not n:
            return float("nan")
        rows = X.shape[0]
        return float(self._train(X, T, self._arange(rows), rows, n)[0])

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
        with self.mlp.compile_notice(self.notices):
            loss = self._compiled(X.shape[0]).compute_gradient(
                X, T, self._arange(X.shape[0]), self.P, self.G, self.layout, self.alphas, self.loss_code, self.hp,
                self.gradient_code, Z, A, D)
        return np.asarray(loss, dtype=self.P.dtype), self.net.gradients()

    def update(self, grads):
        """The optimiser step (compiled) with ``grads``, copied into G unless they are G's own views."""
        self._adopt()
        for (start, stop), g, view in zip(self.slices, grads, self.net.gradients()):
            if g is not view:
                self.G[start:stop] = np.asarray(g).reshape(-1)
        t = self.optimizer.steps + 1
        with self.mlp.compile_notice(self.notices):
            self._compiled(self.batch_capacity).apply_update(self.P, self.G, self.S1, self.S2, self.layout,
                                                             self.opt_code, self.hp, t)
        self.optimizer.steps = t
