"""Ahead-of-time compiling into numba's on-disk cache: every variant of the fused training step, and the
backend's kernels that layer-by-layer steps (convnets) call.

``xpnet warmup`` runs this, for images and CI machines that should not pay the
first-run compile. Each variant (numba_mlp.variant_key: the activations it has,
its loss, backprop or finite differences, BLAS or plain loops, with or without
gradient clipping and the max-norm limit) is compiled by one real step
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

    activations, _, _, blas, _ = key
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
    _, loss, fd, _, limits = key
    limit = 1e6 if limits else None  # a max-norm limit compiles the variant with clipping and limits in it
    step = net.compile(loss, optim.SGD(0.01), gradient="finite_difference" if fd else "backprop", max_norm=limit)
    step.notices = False
    if "fused" not in step.kind:
        raise ConfigError(f"the fused step is not available for warming up: {step.kind}")
    labels = np.arange(batch) % 2
    targets = np.eye(2, dtype=step.P.dtype)[labels]
    for y in ((labels, labels.astype(np.int32)) if loss == "softmax_ce" else (targets,)):
        step(X, y)  # integer labels compile their one-hot conversion, for both integer types
    step.run_epoch(X, targets, None, batch)
    return time.perf_counter() - start


def compile_layer_kernels(dtype, parallel):
    """Compile (or load) the numba backend's kernels that layer-by-layer steps call, for every activation, in
    ``dtype``, their serial or their parallel variants; returns the seconds it took.

    One small convnet per activation (conv, batch norm, max and average pooling, Dense) takes a step, with
    each optimiser on the first, and predicts; ``parallel`` lowers the threshold so every kernel takes its
    prange variant."""
    from .. import kernels, layers as L, optim
    from ..backends import numba_backend
    from ..network import Sequential

    start, threshold = time.perf_counter(), numba_backend.PARALLEL_MIN
    numba_backend.PARALLEL_MIN = 0 if parallel else threshold
    try:
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((4, 1, 8, 8)), np.arange(4) % 2
        for k, activation in enumerate(kernels.ACTIVATIONS):
            net = Sequential([L.Conv2D(2, 3, padding=1, activation=activation), L.BatchNorm(), L.MaxPool2D(2),
                              L.Conv2D(2, 3, padding=1, activation=activation), L.AvgPool2D(2), L.Flatten(),
                              L.Dense(4, activation=activation), L.Dense(2)], input_shape=(1, 8, 8), dtype=dtype,
                             backend="numba")
            for optimizer in ([optim.SGD(0.01), optim.SGD(0.01, momentum=0.9), optim.RMSProp(0.01),
                               optim.Adam(0.01)] if k == 0 else [optim.SGD(0.01)]):
                step = net.compile("softmax_ce", optimizer)
                step.notices = False
                step(X, y)
            net.predict(X)
    finally:
        numba_backend.PARALLEL_MIN = threshold
    return time.perf_counter() - start


def _compile(job):
    function, args, label = job
    return label, function(*args)


def _variant_label(key, dtype):
    activations, loss, fd, blas, limits = key
    return (f"{'+'.join(activations) or 'identity'}, {loss}, {'finite differences' if fd else 'backprop'}, "
            f"{'BLAS' if blas else 'loops'}{', clipping and max-norm' if limits else ''}, {dtype}")


def warmup(dtypes=DTYPES, jobs=None, log=lambda line: None):
    """Compile every variant of the fused step, and the layers' kernels, in ``dtypes``, on ``jobs`` processes;
    returns the count of jobs."""
    from ..backends import numba_mlp

    todo = [(compile_layer_kernels, (dtype, parallel),
             f"the layers' kernels, {'parallel' if parallel else 'serial'}, {dtype}")
            for dtype in dtypes for parallel in (False, True)]
    todo += [(compile_variant, (key, dtype), _variant_label(key, dtype))
             for key in numba_mlp.every_variant_key() for dtype in dtypes]
    jobs = jobs or os.cpu_count() or 1
    done = 0
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for label, seconds in pool.map(_compile, todo):
            done += 1
            log(f"warmup {done}/{len(todo)}: {label}: {seconds:.2g} s")
    return done
