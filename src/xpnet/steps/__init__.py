"""Training steps, and ``compile``, which picks the fastest one that can run a network on its backend.

- plain.PlainStep: forward, backward layer by layer, optimiser update; runs everywhere, the reference.
- numba_fused.FusedMLPStep: a whole Dense MLP step as one compiled call (a backend with ``mlp_kernels``).
- cuda_graph.GraphStep: a step captured into a CUDA graph and replayed (a backend with ``capture_graph``).
- data_parallel.DistributedStep: any of them with every batch split over MPI ranks.

When a faster step cannot run the network, ``compile`` returns the plain step and
its repr says why.
"""
from .base import Step, check_repeats
from .cuda_graph import GraphStep
from .numba_fused import FusedMLPStep
from .plain import PlainStep

FAST_STEPS = (GraphStep, FusedMLPStep)  # each: .offered_by(backend), .unsupported(...) -> reason or None, .fallback


def compile(net, loss, optimizer, gradient="backprop", max_norm=None, clip_norm=None, eps=1e-3, method="central"):
    """The fastest step for ``net`` on its backend; the plain step (its repr saying why) when no faster one fits."""
    options = dict(gradient=gradient, max_norm=max_norm, clip_norm=clip_norm, eps=eps, method=method)
    for fast in FAST_STEPS:
        if not fast.offered_by(net.backend):
            continue
        reason = fast.unsupported(net, loss, optimizer, **options)
        if reason is None:
            return fast(net, loss, optimizer, **options)
        step = PlainStep(net, loss, optimizer, **options)
        step.kind = f"plain layer-by-layer step ({fast.fallback}: {reason})"
        fast.fell_back(net.backend, reason)
        return step
    return PlainStep(net, loss, optimizer, **options)


__all__ = ["FusedMLPStep", "GraphStep", "PlainStep", "Step", "check_repeats", "compile"]
