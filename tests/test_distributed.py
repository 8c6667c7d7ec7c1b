"""Data-parallel training (xpnet.distributed): N ranks with a global batch B give one process's weights with batch B.

In-process, ranks are threads (tests/fakempi.py), so every backend runs the
distributed code, including the fake GPU's three transports. Under
``mpiexec -n 2`` (tests/mpi_worker.py, when mpi4py and mpiexec are installed)
the same equivalence is checked between real processes, and ranks that fail on
purpose must stop every rank within the subprocess timeout.
"""
import collections
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import xpnet as xn
from xpnet import distributed
from xpnet.steps import PlainStep

import mpi_worker
from fakecupy import FakeCupy, install
from fakempi import run_ranks

TESTS = Path(__file__).resolve().parent
SRC = Path(xn.__file__).resolve().parents[1]
TOL64 = dict(rtol=1e-10, atol=1e-12)
# float32: the shards' sums round differently from one process's (a few float32 ulps per step); after
# 3–6 epochs the cases here differ by ≤ 6e-7 × max|w| (≤ 2.5e-5 relative on weights above 1e-3).
TOL32 = dict(rtol=1e-4, atol=1e-5)
CASE = mpi_worker.CASES["numpy-shuffled-adam"]  # shuffled batches of 10 from 53 rows: a last batch of 3


def assert_same_run(got, want, tol):
    if isinstance(got, BaseException):
        raise AssertionError(f"a rank raised {got!r}") from got
    (w_got, h_got), (w_want, h_want) = got, want
    for a, b in zip(w_got, w_want):
        np.testing.assert_allclose(a, b, **tol)
    for key in h_want:
        if key != "samples_per_sec" and not key.startswith("memory_"):  # timings and the pool's bookkeeping vary
            np.testing.assert_allclose(h_got[key], h_want[key], **tol)


# ---- the pieces ---------------------------------------------------------------------------------

def test_shards_cover_every_batch_in_contiguous_near_equal_parts():
    for size in range(1, 6):
        for batch in range(0, 23):
            parts = [distributed.shard(batch, rank, size) for rank in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == batch
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            lengths = [stop - start for start, stop in parts]
            assert max(lengths) - min(lengths) <= 1


def test_without_mpi4py_rank_and_size_are_trivial_and_distributed_training_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    monkeypatch.setattr(distributed, "_world", None)
    assert (xn.distributed.rank(), xn.distributed.size(), xn.distributed.local_rank()) == (0, 1, 0)
    X, y = xn.datasets.xor()
    net = xn.MLP([2, 3, 1])
    with pytest.raises(xn.errors.BackendUnavailableError, match=r"needs mpi4py.*pip install -e '\.\[mpi\]'"):
        net.fit(X, y, epochs=1, progress=False, distributed=True)
    assert len(net.fit(X, y, epochs=2, progress=False).history["loss"]) == 2  # plain training is untouched


def test_importing_xpnet_does_not_import_mpi4py():
    code = "import sys, xpnet; xpnet.distributed.shard(4, 0, 2); print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(SRC))).stdout
    assert out.strip() == "False"


def test_bad_arguments_are_refused():
    net, other = xn.MLP([2, 3, 1]), xn.MLP([2, 3, 1])
    X, y = xn.datasets.xor()
    with pytest.raises(xn.errors.ConfigError, match="distributed must be True, False or"):
        net.fit(X, y, progress=False, distributed="yes")
    (dp,), _ = run_ranks(1, lambda comm: xn.distributed.DataParallel(net, comm=comm))
    with pytest.raises(xn.errors.ConfigError, match="another network"):
        other.fit(X, y, progress=False, distributed=dp)
    with pytest.raises(xn.errors.ConfigError, match="another network"):
        dp.wrap(other.compile("mse", "sgd"))

    with pytest.raises(xn.errors.ConfigError, match="no gradients"):
        dp.wrap(type("Opaque", (), {"net": net})())


# ---- equivalence: ranks as threads, on every backend -------------------------------------------------

@pytest.mark.parametrize("size", [2, 3])
def test_data_parallel_fit_matches_one_process(backend, size):
    """Shuffled mini-batches with a short last batch, validation metrics, Adam: same weights and History."""
    case = dict(CASE, backend=backend)
    want = mpi_worker.train(case)
    results, group = run_ranks(size, lambda comm: mpi_worker.train(case, comm))
    for got in results:
        assert_same_run(got, want, TOL64)
    n_train = case["n"] - round(case["validation_split"] * case["n"])
    assert group.calls["allreduce"] == -(-n_train // case["batch_size"]) * case["epochs"]  # one Allreduce per step, nothing else
    n_params = sum(w.size for w in want[0])
    assert set(group.allreduce_sizes) == {n_params + 1}  # every gradient and the loss in one flat buffer


@pytest.mark.parametrize("name", [name for name in mpi_worker.CASES if not name.startswith("numpy-shuffled")])
def test_every_case_matches_one_process_on_two_thread_ranks(name):
    case = mpi_worker.CASES[name]
    if case["backend"] not in xn.backends.available():
        pytest.skip(f"backend {case['backend']} unavailable: {xn.backends.unavailable_reason(case['backend'])}")
    want = mpi_worker.train(case)
    results, _ = run_ranks(2, lambda comm: mpi_worker.train(case, comm))
    for got in results:
        assert_same_run(got, want, TOL64)


def test_float32_stays_float32_and_close_to_one_process():
    want = mpi_worker.train(CASE, dtype="float32")
    results, _ = run_ranks(2, lambda comm: mpi_worker.train(CASE, comm, dtype="float32"))
    for got in results:
        assert all(w.dtype == np.float32 for w in got[0])
        assert_same_run(got, want, TOL32)


def test_compiled_step_and_repeat_split_the_batch():
    X, y = mpi_worker.data(CASE)
    net = mpi_worker.build(CASE)
    plain = PlainStep(net, xn.losses.get("softmax_ce"), xn.optim.SGD(0.1, momentum=0.5))
    want = [plain(X, y), plain.repeat(X, y, 7)], net.get_weights()

    def rank(comm):
        net = mpi_worker.build(CASE)
        step = xn.distributed.DataParallel(net, comm=comm).compile("softmax_ce", xn.optim.SGD(0.1, momentum=0.5))
        assert "data-parallel step over 3 rank(s) (mpi) around a plain" in repr(step)
        return [step(X, y), step.repeat(X, y, 7)], net.get_weights()

    results, group = run_ranks(3, rank)
    for losses, weights in results:
        np.testing.assert_allclose(losses, want[0], **TOL64)
        for a, b in zip(weights, want[1]):
            np.testing.assert_allclose(a, b, **TOL64)
    assert group.calls["allreduce"] == 8


def test_only_rank_0_shows_progress(monkeypatch):
    from xpnet import training

    shown = []
    monkeypatch.setattr(training, "_progress", lambda epochs, enabled, **kwargs: shown.append(enabled))
    X, y = mpi_worker.data(CASE)

    def rank(comm):
        net = mpi_worker.build(CASE)
        net.fit(X, y, loss="softmax_ce", epochs=1, batch_size=10, distributed=xn.distributed.DataParallel(net, comm))

    results, _ = run_ranks(2, rank)
    assert results == [None, None] and sorted(shown) == [False, True]


def test_only_rank_0_runs_callbacks_that_write_files(tmp_path):
    """Loggers and checkpoints write on rank 0 alone; every other callback runs on every rank."""
    X, y = mpi_worker.data(CASE)
    epochs_seen = collections.Counter()

    def rank(comm):
        net = mpi_worker.build(CASE)
        callbacks = [xn.callbacks.CSVLogger(tmp_path / f"log-{comm.rank}.csv"),
                     xn.callbacks.ModelCheckpoint(tmp_path / f"net-{comm.rank}.npz"),
                     xn.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs_seen.update([comm.rank]))]
        net.fit(X, y, loss="softmax_ce", epochs=2, batch_size=10, callbacks=callbacks,
                distributed=xn.distributed.DataParallel(net, comm))

    results, _ = run_ranks(2, rank)
    assert results == [None, None]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log-0.csv", "net-0.npz"]
    assert epochs_seen == {0: 2, 1: 2}


# ---- disagreement and faults -------------------------------------------------------------------

def test_ranks_built_from_different_seeds_are_refused_on_every_rank():
    results, _ = run_ranks(3, lambda comm: xn.distributed.DataParallel(mpi_worker.build(CASE, seed=comm.rank // 2),
                                                                       comm=comm))
    for error in results:
        assert isinstance(error, xn.errors.ConfigError)
        assert "rank(s) [2] differ from rank 0's" in str(error)


def test_ranks_with_different_orders_or_data_are_refused_on_every_rank():
    X, y = mpi_worker.data(CASE)

    def rank(comm, **fit):
        net = mpi_worker.build(CASE)
        dp = xn.distributed.DataParallel(net, comm=comm)
        rows = fit.pop("rows", len(X))
        return dp.fit(X[:rows], y[:rows], loss="softmax_ce", epochs=1, batch_size=10, progress=False, **fit)

    for difference in ({"seed": 0}, {"seed": 1}), ({"rows": 53}, {"rows": 50}):
        results, group = run_ranks(2, lambda comm: rank(comm, **difference[comm.rank]))
        for error in results:
            assert isinstance(error, xn.errors.DataError) and "the ranks disagree on the data or its order" in str(error)
        assert group.aborted is None and group.calls["allreduce"] == 0  # refused before any step


def test_a_rank_that_raises_in_a_step_stops_every_rank(monkeypatch, capsys):
    gradients, calls = PlainStep.gradients, []

    def failing(self, X, T):
        if threading.current_thread().name == "rank-1":
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("rank 1 fails on purpose")
        return gradients(self, X, T)

    monkeypatch.setattr(PlainStep, "gradients", failing)

    def rank(comm):
        threading.current_thread().name = f"rank-{comm.rank}"
        return mpi_worker.train(dict(CASE, epochs=50), comm)

    results, group = run_ranks(2, rank)
    assert isinstance(results[1], RuntimeError) and "fails on purpose" in str(results[1])
    assert isinstance(results[0], threading.BrokenBarrierError)  # stopped by the abort, not left waiting
    # The steps before the failing one: 2 (or 1, when the abort breaks the barrier of the second before rank 0 leaves it)
    assert group.aborted == (1, 1) and group.calls["allreduce"] <= 2
    assert ("rank 1 of 2 failed with RuntimeError: rank 1 fails on purpose; stopping every rank (MPI_Abort)"
            in capsys.readouterr().err)


def test_a_lone_rank_raises_as_usual_without_aborting(monkeypatch):
    monkeypatch.setattr(PlainStep, "gradients", lambda self, X, T: 1 / 0)
    (error,), group = run_ranks(1, lambda comm: mpi_worker.train(CASE, comm))
    assert isinstance(error, ZeroDivisionError) and group.aborted is None


def test_an_uncaught_exception_aborts_every_rank(monkeypatch):
    """The hook DataParallel installs for more than one rank: the script ends on one rank → MPI_Abort."""
    monkeypatch.setattr(sys, "excepthook", lambda *exc: None)
    monkeypatch.setattr(distributed, "_hooked", False)
    aborted = []

    class Comm:
        rank, size = 1, 2

        def abort(self, code=1):
            aborted.append(code)

    distributed._abort_on_uncaught_exceptions(Comm())
    distributed._abort_on_uncaught_exceptions(Comm())  # installed once
    try:
        raise KeyError("gone")
    except KeyError as e:
        sys.excepthook(type(e), e, e.__traceback__)
    assert aborted == [1]


# ---- transports -------------------------------------------------------------------------------

def test_ranks_agree_on_a_transport_every_one_offers():
    from xpnet.backends.numpy_backend import NumpyBackend

    def rank(comm, transport):
        backend = NumpyBackend()
        offers = [["nccl", "mpi"], ["mpi"]][comm.rank]
        backend.transports = lambda comm: offers
        backend.allreducer = lambda comm, name: NumpyBackend.allreducer(NumpyBackend(), comm, "mpi")
        return xn.distributed.DataParallel(xn.MLP([2, 3, 1], backend=backend), comm=comm, transport=transport)

    results, _ = run_ranks(2, lambda comm: rank(comm, "auto"))
    assert [dp.transport for dp in results] == ["mpi", "mpi"]
    results, _ = run_ranks(2, lambda comm: rank(comm, "nccl"))
    for error in results:
        assert isinstance(error, xn.errors.ConfigError)
        assert "'nccl' is not one every rank can use (rank 0: nccl, mpi; rank 1: mpi)" in str(error)


def test_the_cuda_aware_setting_can_be_forced(monkeypatch):
    pytest.importorskip("mpi4py", reason="needs mpi4py (pip install -e '.[mpi]')")
    for value, expected in (("1", True), ("0", False), ("no", False)):
        monkeypatch.setenv("XPNET_CUDA_AWARE_MPI", value)
        assert distributed.Communicator().cuda_aware is expected
    monkeypatch.delenv("XPNET_CUDA_AWARE_MPI")
    assert distributed.Communicator().cuda_aware in (True, False)  # what MPIX_Query_cuda_support says, or False


class FakeNccl:
    """cupy.cuda.nccl over thread ranks: allReduce finds arrays by the address device_pointer gave out.

    As NCCL, it refuses two ranks of one communicator on the same GPU.
    """

    NCCL_FLOAT32, NCCL_FLOAT64, NCCL_SUM = 7, 8, 0
    available = True

    def __init__(self, gpu):
        self.gpu = gpu  # the FakeCupy: its current device, per thread, is the rank's GPU
        self.arrays, self.groups, self.devices, self.calls, self.lock = {}, {}, {}, [], threading.Lock()

    def pointer(self, array):
        self.arrays[id(array)] = array
        return id(array)

    def get_unique_id(self):
        return f"fake-nccl-id-{len(self.groups)}".encode()  # CuPy's unique id is bytes

    def NcclCommunicator(self, ndev, unique_id, rank):  # noqa: N802  (CuPy's name)
        from fakempi import ThreadGroup

        with self.lock:
            group = self.groups.setdefault(unique_id, ThreadGroup(ndev))
            devices = self.devices.setdefault(unique_id, {})
            if self.gpu.current in devices.values():
                raise RuntimeError(f"NCCL_ERROR_INVALID_USAGE: Duplicate GPU detected: rank {rank} and rank "
                                   f"{next(r for r, d in devices.items() if d == self.gpu.current)} both on "
                                   f"device {self.gpu.current} (fake)")
            devices[rank] = self.gpu.current
        fake = self

        class Communicator:
            def allReduce(self, send, recv, count, kind, op, stream):  # noqa: N802
                fake.calls.append((rank, send == recv, count, kind, op, stream))
                array = fake.arrays[send]
                import array_api_strict as strict

                values = group.exchange(rank, np.array(np.from_dlpack(array), copy=True))
                array[...] = strict.asarray(sum(values[1:], values[0]), device=array.device)

        return Communicator()


@pytest.fixture
def fake_cupy(monkeypatch):
    """A fake CuPy with two GPUs: NCCL needs one per rank."""
    return install(monkeypatch, FakeCupy(n_devices=2))


@pytest.fixture
def nccl(fake_cupy, monkeypatch):
    """The fake GPUs with a fake NCCL, and a current stream with an address."""
    from xpnet.backends import cupy_backend

    fake = FakeNccl(fake_cupy)
    monkeypatch.setattr(fake_cupy.module.cuda, "nccl", fake, raising=False)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", fake)
    monkeypatch.setattr(cupy_backend, "device_pointer", fake.pointer)
    return fake


@pytest.fixture
def staging(fake_cupy, monkeypatch):
    """Pinned host buffers and asnumpy(out=) on the fake GPU; records the buffers handed out."""
    pinned = []

    def empty_pinned(shape, dtype):
        pinned.append(np.empty(shape, dtype=str(dtype).split(".")[-1]))
        return pinned[-1]

    asnumpy = fake_cupy.module.asnumpy

    def asnumpy_out(x, out=None):
        if out is None:
            return asnumpy(x)
        out[...] = asnumpy(x)
        return out

    monkeypatch.setattr(fake_cupy.cupyx, "empty_pinned", empty_pinned, raising=False)
    monkeypatch.setitem(sys.modules, "cupyx", fake_cupy.cupyx)
    monkeypatch.setattr(fake_cupy.module, "asnumpy", asnumpy_out)
    return pinned


@pytest.fixture
def stream_with_address(fake_cupy, monkeypatch):
    stream = fake_cupy.module.cuda.Stream()
    stream.ptr = 0
    monkeypatch.setattr(fake_cupy.module.cuda, "get_current_stream", lambda: stream)


class Doubling:
    """A Communicator of two ranks whose partner always holds the same buffer: allreduce doubles it.

    The partner is on another machine, unless ``same_gpu``.
    """

    rank, size = 0, 2

    def __init__(self, cuda_aware=False, same_gpu=False):
        self.cuda_aware, self.same_gpu, self.buffers = cuda_aware, same_gpu, []

    def allgather(self, value):
        return [value, value if self.same_gpu else ("another-host", value[1])]

    def allreduce(self, buffer):
        self.buffers.append(buffer)
        if isinstance(buffer, np.ndarray):
            buffer *= 2
        else:
            buffer[...] = buffer * 2

    def bcast(self, value, root=0):
        return value


def test_gpu_transports_are_offered_best_first(fake_cupy, nccl, monkeypatch):
    gpu = xn.get_backend("cupy", graphs=False)
    assert gpu.transports(Doubling(cuda_aware=True)) == ["nccl", "cuda-aware-mpi", "mpi"]
    assert gpu.transports(Doubling()) == ["nccl", "mpi"]
    assert gpu.transports(Doubling(cuda_aware=True, same_gpu=True)) == ["cuda-aware-mpi", "mpi"]  # NCCL would refuse
    monkeypatch.setattr(nccl, "available", False)
    assert gpu.transports(Doubling()) == ["mpi"]
    with pytest.raises(xn.errors.ConfigError, match="unknown transport 'nccl'"):
        gpu.allreducer(Doubling(), "nccl")
    assert xn.get_backend("numpy").transports(Doubling(cuda_aware=True)) == ["mpi"]


@pytest.mark.parametrize("transport", ["nccl", "cuda-aware-mpi", "mpi"])
def test_each_gpu_transport_sums_the_device_buffer(transport, fake_cupy, nccl, staging, stream_with_address):
    gpu = xn.get_backend("cupy", graphs=False)
    comm = Doubling(cuda_aware=True)
    if transport == "nccl":  # NCCL's own sums: two thread ranks, each on its own GPU
        flat = np.arange(5.0, dtype=np.float32)

        def rank(c):
            own = xn.get_backend("cupy", graphs=False, device=c.rank)
            return own.to_numpy(own.allreducer(c, "nccl")(own.asarray(flat.copy())))

        results, _ = run_ranks(2, rank)
        for summed in results:
            np.testing.assert_array_equal(summed, 2 * flat)
        assert {call[1:] for call in nccl.calls} == {(True, 5, FakeNccl.NCCL_FLOAT32, FakeNccl.NCCL_SUM, 0)}
        return
    reduce = gpu.allreducer(comm, transport)
    for _ in range(2):
        flat = gpu.asarray(np.arange(5.0))
        out = reduce(flat)
        assert gpu.is_native(out) and out.device == gpu.device
        np.testing.assert_array_equal(gpu.to_numpy(out), 2 * np.arange(5.0))
    if transport == "cuda-aware-mpi":  # MPI got the device array itself, after the stream was synchronised
        assert all(gpu.is_native(b) for b in comm.buffers)
        assert staging == [] and fake_cupy.calls["synchronize"] == 2
    else:  # MPI got one reused page-locked host buffer
        assert len(staging) == 1 and all(b is staging[0] for b in comm.buffers)


@pytest.mark.parametrize("transport", ["nccl", "cuda-aware-mpi", "mpi"])
def test_data_parallel_fit_on_the_fake_gpu_matches_one_process(transport, nccl, staging, stream_with_address,
                                                               monkeypatch):
    gpus = [xn.get_backend("cupy", graphs=False, device=i) for i in range(2)]
    case = dict(CASE, backend=gpus[0], epochs=2)
    want = mpi_worker.train(case)

    def rank(comm):
        net = mpi_worker.build(dict(case, backend=gpus[comm.rank]))  # NCCL needs a GPU per rank
        dp = xn.distributed.DataParallel(net, comm=comm, transport=transport)
        assert dp.transport == transport
        X, y = mpi_worker.data(case)
        hist = dp.fit(X, y, loss=case["loss"], optimizer=case["optimizer"](), epochs=case["epochs"],
                      batch_size=case["batch_size"], validation_split=case["validation_split"], progress=False, seed=3)
        return net.get_weights(), hist.history

    # The fake pool counts bytes by walking gc.get_objects(), which can meet another thread's half-built array.
    for gpu in gpus:
        monkeypatch.setattr(gpu, "memory_info", lambda: {})
    results, _ = run_ranks(2, rank, cuda_aware=True)
    for got in results:
        assert_same_run(got, want, TOL64)


# ---- real processes: mpiexec -n 2 ---------------------------------------------------------------

def mpiexec():
    from xpnet.bench.distributed import mpiexec as find

    if importlib.util.find_spec("mpi4py") is None:
        pytest.skip("mpi4py is not installed (pip install -e '.[mpi]')")
    found = find()
    if found is None:
        pytest.skip("no mpiexec on the PATH (pip install mpich, or your cluster's MPI)")
    return found


def run_mpi(ranks, *args, timeout=120):
    """(exit code, stdout, stderr) of tests/mpi_worker.py under mpiexec; a run past ``timeout`` is killed and fails."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(TESTS), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    env.pop("XPNET_BACKEND", None)
    proc = subprocess.Popen([mpiexec(), "-n", str(ranks), sys.executable, str(TESTS / "mpi_worker.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # mpiexec and the ranks it started
        out, err = proc.communicate()
        pytest.fail(f"mpiexec -n {ranks} did not end within {timeout} s: ranks left waiting\n{err[-3000:]}")
    return proc.returncode, out, err


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("mpi") / "two_ranks.npz"
    code, _, err = run_mpi(2, "equivalence", str(out))
    assert code == 0, err[-3000:]
    with np.load(out) as results:
        return dict(results)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(mpi_worker.CASES))
def test_two_mpi_processes_match_one_process(two_ranks, name, dtype):
    case = mpi_worker.CASES[name]
    if case["backend"] not in xn.backends.available():
        pytest.skip(f"backend {case['backend']} unavailable: {xn.backends.unavailable_reason(case['backend'])}")
    assert int(two_ranks["size"]) == 2
    weights, history = mpi_worker.train(case, dtype=dtype)
    got = ([two_ranks[f"{dtype}/{name}/w{i}"] for i in range(len(weights))],
           {key: two_ranks[f"{dtype}/{name}/{key}"] for key in history if key != "samples_per_sec"})
    assert all(w.dtype == np.dtype(dtype) for w in got[0])
    assert_same_run(got, (weights, history), TOL64 if dtype == "float64" else TOL32)


@pytest.mark.gpu
def test_two_mpi_processes_on_gpus_match_one_process(tmp_path):
    reason = xn.backends.unavailable_reason("cupy")
    if reason is not None:
        pytest.skip(f"needs CuPy and a CUDA GPU: {reason}")
    code, out, err = run_mpi(2, "equivalence-gpu", str(tmp_path / "gpu.npz"))
    print(out)  # which transport each rank used, for gpu_check.sh's log
    assert code == 0, err[-3000:]
    weights, _ = mpi_worker.train(dict(CASE, backend="cupy"))
    with np.load(tmp_path / "gpu.npz") as got:
        from xpnet.backends.cupy_backend import nccl_module

        # NCCL exactly when each rank has a GPU of its own (two ranks on one GPU: NCCL refuses them).
        assert (str(got["transport"]) == "nccl") == (int(got["gpus"]) >= 2 and nccl_module() is not None)
        assert str(got["transport"]) in ("nccl", "cuda-aware-mpi", "mpi")
        for i, w in enumerate(weights):
            np.testing.assert_allclose(got[f"w{i}"], w, **TOL64)


def test_an_mpi_rank_that_raises_in_a_step_stops_every_rank():
    code, out, err = run_mpi(2, "fail-in-step", timeout=60)
    assert code != 0 and "finished training" not in out
    assert ("rank 1 of 2 failed with RuntimeError: rank 1 fails on purpose at its third step; stopping every rank"
            in err)


def test_an_mpi_rank_that_leaves_between_fits_stops_every_rank():
    code, out, err = run_mpi(2, "fail-outside-step", timeout=60)
    assert code != 0 and "rank 0 finished training" not in out
    assert "ValueError: rank 1 fails on purpose between two fits" in err
    assert "rank 1 of 2 ended on an uncaught ValueError: rank 1 fails on purpose between two fits; stopping" in err


def test_mpi_ranks_that_disagree_are_told_so_and_go_on():
    code, out, err = run_mpi(2, "mismatches", timeout=60)
    assert code == 0, err[-3000:]
    assert out.count("rank(s) [1] differ from rank 0's") == 2
    assert out.count("the ranks disagree on the data or its order") == 2
    assert "rank 0 went on" in out and "rank 1 went on" in out


def test_nccl_is_offered_only_when_every_rank_has_a_gpu_of_its_own(fake_cupy, nccl, stream_with_address):
    """NCCL refuses two ranks on one GPU: thread ranks sharing GPU 0 fall back to MPI, ranks on GPUs 0 and 1 use it."""
    def rank(comm, devices):
        net = xn.MLP([2, 3, 1], backend=xn.get_backend("cupy", graphs=False, device=devices[comm.rank]), seed=0)
        return xn.distributed.DataParallel(net, comm=comm).transport

    shared, _ = run_ranks(2, lambda comm: rank(comm, [0, 0]), cuda_aware=True)
    own, _ = run_ranks(2, lambda comm: rank(comm, [0, 1]), cuda_aware=True)
    assert shared == ["cuda-aware-mpi"] * 2 and own == ["nccl"] * 2
    fake_cupy.current = 0
    nccl.NcclCommunicator(2, b"together", 0)
    with pytest.raises(RuntimeError, match="Duplicate GPU"):
        nccl.NcclCommunicator(2, b"together", 1)
    assert isinstance(nccl.get_unique_id(), bytes)
