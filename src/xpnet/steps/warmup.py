"""Ahead-of-time compiling of numba's fused training step: every variant into numba's on-disk cache.

``xpnet warmup`` runs this, for images and CI machines that should not pay the
first-run compile. Each variant (numba_mlp.variant_key: the activations it has,
backprop or finite differences, BLAS or plain loops, with or without gradient
clipping and the max-norm limit) is compiled by one real step
of a small network that needs it, in float32 and float64, with the input checks
for integer labels alongside.
"""
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from ..errors import ConfigError

DTYPES = ("float32", "float64")


def network_for(key, dtype):
    """(net, X, batch) whose compiled step is the variant ``key``."""
    from ..network import MLP

    activations, _, blas, _ = key
    hidden = activations[0] if activations else "identity"
    output = activations[-1] if len(activations) > 1 else "identity"
    width, batch = (64, 16) if blas else (3, 4)  # 64·64·16 products reach BLAS_MIN; 3·3·4 stay in loops
    net = MLP([width, width, 2], activation=hidden, output_activation=output, dtype=dtype, backend="numba")
    return net, np.random.default_rng(0).standard_normal((batch, width)), batch


def compile_variant(key, dtype):
    """Compile (or load from the cache) the variant ``key`` in ``dtype``; returns the seconds it took."""
    from .. import optim

    start = time.perf_counter()
    net, X, batch = network_for(key, dtype)
    gradient = "finite_difference" if key[1] else "backprop"
    limit = 1e6 if key[3] else None  # a max-norm limit compiles the variant with clipping and limits in it
    step = net.compile("softmax_ce", optim.SGD(0.01), gradient=gradient, max_norm=limit)
    step.notices = False
    if "fused" not in step.kind:
        raise ConfigError(f"the fused step is not available for warming up: {step.kind}")
    for labels in (np.arange(batch) % 2, (np.arange(batch) % 2).astype(np.int32)):
        step(X, labels)
    step.run_epoch(X, np.eye(2, dtype=step.P.dtype)[np.arange(batch) % 2], None, batch)
    return time.perf_counter() - start


def _compile(job):
    return job, compile_variant(*job)


def warmup(dtypes=DTYPES, jobs=None, log=lambda line: None):
    """Compile every variant of the fused step in ``dtypes``, on ``jobs`` processes; returns the count."""
    from ..backends import numba_mlp

    todo = [(key, dtype) for key in numba_mlp.every_variant_key() for dtype in dtypes]
    jobs = jobs or os.cpu_count() or 1
    done = 0
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for (key, dtype), seconds in pool.map(_compile, todo):
            done += 1
            activations, fd, blas, limits = key
            log(f"warmup {done}/{len(todo)}: {'+'.join(activations) or 'identity'}, "
                f"{'finite differences' if fd else 'backprop'}, {'BLAS' if blas else 'loops'}"
                f"{', clipping and max-norm' if limits else ''}, {dtype}: {seconds:.2g} s")
    return done
