"""What test_distributed.py runs under ``mpiexec -n N python tests/mpi_worker.py SCENARIO OUT``.

``train(case, distributed)`` is shared: the ranks run it with distributed=True,
the test runs it in one process, and the weights must agree. Rank 0 writes
what it got to OUT (.npz); the fault scenarios fail on purpose.
"""
import sys

import numpy as np

import xpnet as xn

# name → how the net is built and trained; every case uses shuffled mini-batches or an odd full batch
CASES = {
    # full batch of 37 rows: shards of 18 and 19 (two ranks) or 12/12/13 (three)
    "numpy-full-batch-momentum": dict(backend="numpy", n=37, loss="mse", batch_size=None, epochs=6,
                                      optimizer=lambda: xn.optim.SGD(0.1, momentum=0.9)),
    # 53 rows in batches of 10: shuffled every epoch, a last batch of 3; validation metrics every epoch
    "numpy-shuffled-adam": dict(backend="numpy", n=53, loss="softmax_ce", batch_size=10, epochs=4,
                                optimizer=lambda: xn.optim.Adam(0.01), validation_split=0.2),
    # the numba backend's fused step, split into its compiled gradient and update halves
    "numba-shuffled-rmsprop-maxnorm": dict(backend="numba", n=53, loss="softmax_ce", batch_size=10, epochs=4,
                                           optimizer=lambda: xn.optim.RMSProp(0.01), max_norm=1.5),
    # the global-norm clip must see the averaged gradient (clipping each shard's would differ)
    "numpy-clip-norm": dict(backend="numpy", n=40, loss="mse", batch_size=16, epochs=4,
                            optimizer=lambda: xn.optim.SGD(0.5), clip_norm=0.05),
    "numba-clip-norm": dict(backend="numba", n=40, loss="mse", batch_size=16, epochs=4,
                            optimizer=lambda: xn.optim.SGD(0.5), clip_norm=0.05),
    # 9 rows in batches of 4: the last batch has 1 row, so one rank has none and sends zeros
    "numpy-batch-smaller-than-ranks": dict(backend="numpy", n=9, loss="bce", batch_size=4, epochs=5,
                                           optimizer=lambda: xn.optim.SGD(0.5)),
    # generic Array API code: arrays reach MPI through host copies
    "strict-shuffled-sgd": dict(backend="array_api_strict", n=30, loss="softmax_ce", batch_size=8, epochs=3,
                                optimizer=lambda: xn.optim.SGD(0.2, weight_decay=0.01)),
}


def data(case, seed=5):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((case["n"], 3))
    if case["loss"] == "bce":
        return X, (X[:, 0] * X[:, 1] > 0).astype(float)
    if case["loss"] == "mse":
        return X, np.sin(X[:, :1]) + X[:, 1:2]
    return X, rng.integers(0, 3, case["n"])


def build(case, dtype="float64", seed=1):
    n_out = 1 if case["loss"] in ("mse", "bce") else 3
    return xn.MLP([3, 6, 5, n_out], activation="tanh", output_activation="sigmoid" if case["loss"] == "bce" else None,
                  dtype=dtype, seed=seed, backend=case["backend"])


def train(case, distributed=False, dtype="float64"):
    """(weights, loss history) of ``case`` trained in this process, or as this rank's part of a distributed run.

    distributed: False, True (every MPI rank) or a Communicator (e.g. test_distributed's thread ranks, which
    share one process and so one GPU: they sum through host memory, as NCCL needs a GPU per rank).
    """
    X, y = data(case)
    net = build(case, dtype)
    if isinstance(distributed, xn.distributed.Communicator):
        distributed = xn.distributed.DataParallel(net, comm=distributed, transport="mpi")
    hist = net.fit(X, y, loss=case["loss"], optimizer=case["optimizer"](), epochs=case["epochs"],
                   batch_size=case["batch_size"], validation_split=case.get("validation_split", 0.0),
                   max_norm=case.get("max_norm"), clip_norm=case.get("clip_norm"), progress=False, seed=3,
                   distributed=distributed)
    return net.get_weights(), hist.history


def equivalence(out):
    results = {}
    for dtype in ("float64", "float32"):
        for name, case in CASES.items():
            if case["backend"] not in xn.backends.available():
                continue
            weights, history = train(case, True, dtype)
            for i, w in enumerate(weights):
                results[f"{dtype}/{name}/w{i}"] = w
            for key, values in history.items():
                if key != "samples_per_sec":
                    results[f"{dtype}/{name}/{key}"] = np.array(values)
    results["size"] = np.array(xn.distributed.size())
    if xn.distributed.rank() == 0:
        np.savez(out, **results)


def equivalence_gpu(out):
    """CuPy on every rank, one GPU each when there are enough (NCCL), else sharing them (the transport falls back)."""
    import cupy

    gpus = cupy.cuda.runtime.getDeviceCount()
    backend = xn.get_backend("cupy", device=xn.distributed.local_rank() % gpus)
    case = dict(CASES["numpy-shuffled-adam"], backend=backend)
    net = build(case)
    dp = xn.distributed.DataParallel(net)
    print(f"rank {dp.rank}: transport {dp.transport} on GPU {backend.device_id} of {gpus}", flush=True)
    X, y = data(case)
    dp.fit(X, y, loss=case["loss"], optimizer=case["optimizer"](), epochs=case["epochs"],
           batch_size=case["batch_size"], validation_split=case["validation_split"], progress=False, seed=3)
    if dp.rank == 0:
        np.savez(out, transport=np.array(dp.transport), gpus=gpus, **{f"w{i}": w for i, w in enumerate(net.get_weights())})


def fail_in_step():
    """Rank 1's third gradient raises: every rank must stop, none may wait in the Allreduce."""
    from xpnet.steps import PlainStep

    if xn.distributed.rank() == 1:
        calls = []
        gradients = PlainStep.gradients

        def failing(self, X, T):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("rank 1 fails on purpose at its third step")
            return gradients(self, X, T)

        PlainStep.gradients = failing
    case = CASES["numpy-shuffled-adam"]
    net = build(case)
    net.fit(*data(case), loss="softmax_ce", epochs=50, batch_size=10, progress=False, distributed=True)
    print(f"rank {xn.distributed.rank()} finished training", flush=True)


def fail_outside_step():
    """Rank 1 leaves on an exception between two fits while rank 0 goes on: rank 0 must not wait forever."""
    case = CASES["numpy-shuffled-adam"]
    net = build(case)
    dp = xn.distributed.DataParallel(net)
    dp.fit(*data(case), loss="softmax_ce", epochs=1, batch_size=10, progress=False)
    if dp.rank == 1:
        raise ValueError("rank 1 fails on purpose between two fits")
    dp.fit(*data(case), loss="softmax_ce", epochs=1, batch_size=10, progress=False)
    print(f"rank {dp.rank} finished training", flush=True)


def mismatches():
    """Ranks that disagree are told so on every rank alike (no abort needed), and can go on."""
    case = CASES["numpy-shuffled-adam"]
    try:
        xn.distributed.DataParallel(build(case, seed=1 + xn.distributed.rank()))
    except xn.errors.ConfigError as e:
        print(f"weights: {e}", flush=True)
    net = build(case)
    try:
        net.fit(*data(case), loss="softmax_ce", epochs=1, batch_size=10, progress=False, distributed=True,
                seed=xn.distributed.rank())
    except xn.errors.DataError as e:
        print(f"order: {e}", flush=True)
    print(f"rank {xn.distributed.rank()} went on", flush=True)


if __name__ == "__main__":
    scenario = sys.argv[1]
    if scenario == "equivalence":
        equivalence(sys.argv[2])
    elif scenario == "equivalence-gpu":
        equivalence_gpu(sys.argv[2])
    else:
        {"fail-in-step": fail_in_step, "fail-outside-step": fail_outside_step, "mismatches": mismatches}[scenario]()
