"""The CUDA-graph step: a whole training step captured once into a CUDA graph and replayed per batch.

It runs on a backend that offers graph capture (``backend.capture_graph`` and
``backend.graph_kernels``: CuPy's), for any network whose step draws no random
numbers and calls no host code.
"""
import math
import warnings

from ..validation import prepare
from .base import check_repeats
from .plain import PlainStep

# graphs="auto" captures a step when every product x W of the batch is at most this many multiply-adds:
# inside a graph products are summed by broadcasting (CuPy allows no cuBLAS during capture), which
# beats a cuBLAS call plus its launch only for small layers.
GRAPH_MAX_PRODUCT = 2**18


class CaptureError(RuntimeError):
    """Capturing a step into a CUDA graph failed; nothing ran."""


class GraphStep(PlainStep):
    """The training step replayed from a CUDA graph, one graph per batch shape; same methods as PlainStep.

    For each batch shape: the first call runs eagerly (compiling every kernel
    and creating the optimiser's state), the second captures the step on a
    non-blocking stream, and every call from then on copies the batch into the
    graph's input buffers and launches the graph on the current stream. A
    failed capture falls back to the plain step for good (the repr says why);
    a shape too large for graph kernels (graphs="auto") uses the plain step.
    Replacing the parameters, the optimiser state or its settings recaptures; the
    learning rate is a 0-d device array the graph reads, so a schedule does not.
    """

    fallback = "no CUDA graph"

    @staticmethod
    def offered_by(backend):
        return callable(getattr(backend, "capture_graph", None))

    @staticmethod
    def unsupported(net, loss, optimizer, gradient="backprop", clip_norm=None, **options):
        """Why the training step of ``net`` cannot be a CUDA graph on its backend, or None if it can."""
        if net.backend.graphs is False:
            return "graphs=False"
        if gradient != "backprop":
            return "finite differences run a host loop over every weight"
        for i, layer in enumerate(net.layers):
            if layer.stochastic:
                return f"layer {i} ({type(layer).__name__}) draws new random numbers (dropout masks) every step"
        if clip_norm is not None:
            return "gradient clipping (clip_norm) runs in the plain step"
        return None

    @staticmethod
    def fell_back(backend, reason):
        if backend.graphs is True:
            warnings.warn(f"CUDA graphs were asked for but {reason}; using the plain step", stacklevel=4)

    def __init__(self, net, loss, optimizer, gradient="backprop", max_norm=None, clip_norm=None, eps=1e-3,
                 method="central"):
        super().__init__(net, loss, optimizer, gradient=gradient, max_norm=max_norm, clip_norm=clip_norm, eps=eps,
                         method=method)
        self.backend = net.backend
        self.backend.activate()
        self.entries = {}  # (X shape, T shape) → _Graph, or None for shapes that use the plain step
        self.failure = None

    @property
    def kind(self):
        if self.failure is not None:
            return f"plain layer-by-layer step (CUDA graph capture failed: {self.failure})"
        captured = sum(1 for e in self.entries.values() if e is not None and e.graph is not None)
        return f"CUDA-graph step ({captured} graph(s) captured)"

    def step(self, X, T):
        return self._step(X, T, copy_inputs=True)

    def repeat(self, X, y, n):
        """n full-batch steps; after the first, each is one graph launch with no copies."""
        n = check_repeats(n)
        X, T = prepare(self.net, self.loss, X, y)
        loss = math.nan
        for i in range(n):
            loss = self._step(X, T, copy_inputs=i == 0)
        return self.net.backend.scalar(loss) if n else loss

    def _step(self, X, T, copy_inputs):
        if self.failure is not None or self.net.backend is not self.backend:
            return PlainStep.step(self, X, T)
        key = (tuple(X.shape), tuple(T.shape))
        entry = self.entries.get(key)
        if entry is not None and not entry.current():  # parameters, optimiser state or settings were replaced
            self.backend.synchronize()  # the old graph may still be running on memory it is about to free
            del self.entries[key]
        if key not in self.entries:
            self.entries[key] = _Graph(self, X, T) if self._small_enough(X.shape[0]) else None
        entry = self.entries[key]
        if entry is None:
            return PlainStep.step(self, X, T)
        try:
            return entry.run(X, T, copy_inputs)
        except CaptureError as e:
            self.failure = str(e)
            self.entries.clear()
            if self.backend.graphs is True:
                warnings.warn(f"CUDA graph capture failed ({e}); using the plain step", stacklevel=3)
            return PlainStep.step(self, X, T)

    def _small_enough(self, batch):
        if self.backend.graphs is True:
            return True
        # A Dense layer's product x W takes batch × W.size multiply-adds: the largest parameter array bounds the work.
        return max(batch * int(p.size) for p in self.net.parameters()) <= GRAPH_MAX_PRODUCT


class _Graph:
    """One captured step for one batch shape: its input buffers, its loss, its step counter, its memory."""

    def __init__(self, owner, X, T):
        backend = owner.backend
        xp = backend.xp
        self.owner, self.backend = owner, backend
        self.X, self.T = xp.empty_like(X), xp.empty_like(T)
        self.loss = xp.zeros((), dtype=X.dtype, device=backend.device)
        self.counter = xp.zeros((), dtype=xp.float64, device=backend.device)  # Adam's t, for replays
        self.counter_steps = None  # the optimizer.steps that counter holds
        self.lr = xp.zeros((), dtype=X.dtype, device=backend.device)  # the update kernels read the rate here
        self.lr_value = None  # the rate lr holds
        self.source = None  # the (X, T) last copied in
        self.graph, self.memory, self.grads, self.binding = None, [], None, None

    def _binding(self):
        """What a graph bakes in: the parameter and state arrays (by identity) and the optimiser's settings."""
        opt = self.owner.optimizer
        arrays = list(self.owner.net.parameters())
        for name in sorted(opt.state or {}):
            arrays += opt.state[name]
        return arrays, {k: v for k, v in opt.config().items() if k != "lr"}

    def current(self):
        """False once the arrays or settings the graph was built on have been replaced."""
        if self.binding is None:
            return True
        arrays, config = self._binding()
        return (len(arrays) == len(self.binding[0]) and all(a is b for a, b in zip(arrays, self.binding[0]))
                and config == self.binding[1])

    def record(self):
        """One step on the input buffers; every effect lands on the device or is undone (safe to replay)."""
        owner, opt = self.owner, self.owner.optimizer
        steps = opt.steps
        self.counter += 1.0
        owner.runtime_lr = self.lr
        with self.backend.graph_kernels(self.counter):
            try:
                loss = PlainStep.step(owner, self.X, self.T)
            finally:
                opt.steps = steps  # the caller counts the step once it has really run
                owner.runtime_lr = None
        self.loss[...] = loss
        self.grads = [(layer, dict(layer.grads)) for layer in owner.net.layers]  # the arrays the graph writes

    def run(self, X, T, copy_inputs):
        opt, xp = self.owner.optimizer, self.backend.xp
        if copy_inputs or self.source is None or self.source[0] is not X or self.source[1] is not T:
            self.X[...] = X
            self.T[...] = T
            self.source = (X, T)
        if self.counter_steps != opt.steps:
            self.counter[...] = float(opt.steps)  # a device fill, no copy
        rate = opt.lr
        if rate != self.lr_value:  # a schedule's new rate: one device fill, never a recapture
            self.lr[...] = rate
            self.lr_value = rate
        if self.graph is None and self.binding is not None:  # warmed up: capture now
            try:
                self.graph, self.memory = self.backend.capture_graph(self.record)
            except Exception as e:
                raise CaptureError(f"{type(e).__name__}: {e}") from e
        if self.graph is None:
            self.record()  # the warm-up step, run eagerly; it creates the optimiser state a graph needs
            self.binding = self._binding()
        else:
            self.backend.launch_graph(self.graph)
            for layer, grads in self.grads:  # the graph's gradient arrays hold this step's gradients
                layer.grads = dict(grads)
        opt.steps += 1
        self.counter_steps = opt.steps
        return xp.asarray(self.loss, copy=True)
