"""The CuPy backend: arrays on an NVIDIA GPU, elementwise work in fused CUDA kernels.

Importing this module imports no CuPy: ``probe()`` says whether a GPU works,
``CupyBackend`` imports CuPy when it is built, and each kernel's CUDA C is
generated from xpnet.kernels (cuda_source.py) and compiled on first use.

Rules the backend keeps:

- Host data (NumPy arrays, lists) is copied to the device once when it enters
  (``asarray``; ``fit`` moves the whole data set once per fit). Arrays of other
  libraries on this GPU (torch, JAX) are shared through DLPack, without a copy;
  arrays on another device raise DeviceError naming both sides.
- Every kernel, allocation, graph launch and allreduce runs inside this backend's
  GPU (``cupy.cuda.Device``): with 2+ GPUs the current one may be another's, and
  array-api-compat ignores ``device=`` for CuPy's creation functions.
- Matrix products go to cuBLAS (``cupy.matmul``) in the arrays' dtype;
  ``tf32=True`` lets float32 products use TensorFloat-32 (compute capability 8.0+),
  ``tf32=False`` keeps them full float32 even when $CUPY_TF32 is set.
- Dropout masks come from CuPy's generator (cuRAND's XORWOW) on the device, one per
  Dropout layer, reseeded in place each epoch; they differ from NumPy's, so
  cross-backend comparisons leave dropout out (docs/reliability.md).
- Elementwise work runs in one ``ElementwiseKernel`` per step of a layer: bias +
  activation, activation slope, softmax cross-entropy, each optimiser update
  (in place). Inputs are made contiguous first.
- ``capture_graph`` and ``graph_kernels`` let a training step be captured into a
  CUDA graph (xpnet.steps.cuda_graph uses them; ``graphs="auto"`` for small nets).
"""
import contextlib
import gc
import socket
import types
import warnings
import weakref

import numpy as np

from ..errors import ConfigError, lookup
from .. import kernels
from . import cuda_source
from .base import Backend



def probe():
    """None when CuPy can copy to a GPU, compile and run a kernel, call cuBLAS and give its array namespace; else why not."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed"
    except Exception as e:  # a broken install (missing CUDA libraries) raises more than ImportError
        return f"CuPy failed to import ({type(e).__name__}: {e})"
    stage = "use the GPU"
    try:
        if not cupy.cuda.is_available():
            return "CuPy is installed but finds no usable CUDA GPU (cupy.cuda.is_available() is False)"
        cupy.cuda.runtime.getDeviceCount()
        stage = "copy an array to the GPU"
        a = cupy.asarray(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
        stage = "compile and run a kernel (NVRTC)"
        square = cupy.ElementwiseKernel("T x", "T y", "const T t0 = x * x;\ny = t0;", "xpnet_probe")
        squared = cupy.asnumpy(square(cupy.ascontiguousarray(a)))
        stage = "multiply matrices (cuBLAS)"
        product = cupy.asnumpy(cupy.matmul(a, a))
        stage = "get CuPy's array namespace (array-api-compat)"
        import array_api_compat

        total = float(array_api_compat.array_namespace(a).sum(a))
    except Exception as e:  # driver/runtime mismatch, no NVRTC or cuBLAS library, no device memory, ...
        return f"CuPy cannot {stage} ({type(e).__name__}: {e})"
    for what, got, want in (("kernel", squared, [[1, 4], [9, 16]]), ("matmul", product, [[7, 10], [15, 22]]),
                            ("sum", total, 10)):
        if not np.array_equal(got, want):
            return f"the GPU computed a wrong {what} in the probe: {np.asarray(got).tolist()}, expected {want}"
    return None


class CupyBackend(Backend):
    """CuPy arrays on GPU ``device`` (an index; None: the current device).

    ``tf32``: float32 matrix products may use TensorFloat-32 (needs compute capability 8.0+).
    ``graphs``: "auto" replays the training step of small nets from a CUDA graph,
    True tries it for every net, False never does.

    >>> import xpnet as xn
    >>> X, y = xn.datasets.spirals(n=200, seed=0)
    >>> net = xn.MLP([2, 16, 16, 2], backend="cupy")
    >>> hist = net.fit(X, y, loss="softmax_ce", epochs=2, progress=False)
    >>> hist.history["memory_used_bytes"][-1] > 0
    True
    """

    name = "cupy"

    def __init__(self, device=None, tf32=False, graphs="auto"):
        import array_api_compat
        import cupy as cp
        import cupyx.scipy.special

        if graphs not in ("auto", True, False):
            raise ConfigError(f"graphs must be 'auto', True or False, got {graphs!r}")
        count = cp.cuda.runtime.getDeviceCount()
        index = cp.cuda.runtime.getDevice() if device is None else device
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise ConfigError(f"device must be a GPU index from 0 to {count - 1} ({count} GPU(s) here), got {device!r}")
        self.cp, self.device_id, self.graphs = cp, index, graphs
        self.dlpack_device = (2, index)  # torch CUDA tensors, JAX GPU arrays, ... on this GPU are shared
        with cp.cuda.Device(index):
            probe_array = cp.empty(0, dtype=cp.float32)
        xp = on_device(array_api_compat.array_namespace(probe_array), self._device)
        super().__init__(xp, device=array_api_compat.device(probe_array))
        self.math.erf = cupyx.scipy.special.erf
        self.tf32 = bool(tf32)
        if self.tf32 and int(cp.cuda.Device(index).compute_capability) < 80:
            warnings.warn(f"tf32=True needs compute capability 8.0 or newer; GPU {index} has "
                          f"{cp.cuda.Device(index).compute_capability}, so float32 products stay full float32",
                          stacklevel=2)
            self.tf32 = False
        self._kernels = {}  # key → (ElementwiseKernel, Spec), built on first use
        self._graph_counter = None  # set while a CUDA-graph step runs: Adam's step count, on the device
        self._capture_stream = None  # made on the first capture, kept: the pool files captured blocks under it
        self._generators = weakref.WeakSet()  # the dropout generators made here: reseeded, never rebuilt
        self.activate()

    def _device(self):
        """This backend's GPU as a context: what runs inside it launches and allocates there."""
        return self.cp.cuda.Device(self.device_id)

    def activate(self):
        """Make this backend's GPU the current one (CuPy launches kernels on the current device)."""
        if self.cp.cuda.runtime.getDevice() != self.device_id:
            self.cp.cuda.Device(self.device_id).use()

    def info(self):
        cp = self.cp
        props = cp.cuda.runtime.getDeviceProperties(self.device_id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        runtime = cp.cuda.runtime.runtimeGetVersion()
        return {"device": f"cuda:{self.device_id} {name}", "cupy": cp.__version__,
                "cuda runtime": f"{runtime // 1000}.{runtime % 1000 // 10}",
                "compute capability": cp.cuda.Device(self.device_id).compute_capability,
                "tf32": self.tf32, "graphs": self.graphs}

    # ---- arrays, devices, memory ---------------------------------------------------------

    def asarray(self, x, dtype=None):
        self.activate()
        with self._device():
            return super().asarray(x, dtype=dtype)

    def from_dlpack(self, x):
        return self.cp.from_dlpack(x)

    def to_numpy(self, x):
        return x if isinstance(x, np.ndarray) else self.cp.asnumpy(x)

    def synchronize(self):
        self._device().synchronize()

    def memory_info(self):
        pool = self.cp.get_default_memory_pool()
        with self._device():
            return {"used_bytes": int(pool.used_bytes()), "total_bytes": int(pool.total_bytes())}

    def free_memory(self):
        gc.collect()  # arrays held only by reference cycles (closures of a finished step) hold blocks too
        with self._device():
            self.cp.get_default_memory_pool().free_all_blocks()

    def rng(self, seed, reuse=None):
        """CuPy's cuRAND generator on the device: dropout masks never cross to the host. ``reuse``, if made
        here, is reseeded in place (building one costs an allocation and a kernel launch; fit reseeds every epoch)."""
        if reuse is not None and reuse in self._generators:
            with self._device():
                reuse.seed(seed)
            return reuse
        with self._device():
            generator = self.cp.random.RandomState(seed)
        self._generators.add(generator)
        return generator

    def dropout_mask(self, rng, shape, p, dtype):
        with self._device():
            keep = rng.random_sample(shape, dtype=dtype) >= p  # drawn on the device, in the layer's dtype
            return self.xp.astype(keep, dtype) * (1.0 / (1.0 - p))

    # ---- kernels ---------------------------------------------------------------------------

    def _run(self, key, build, values, outputs=()):
        """Launch the kernel ``build()`` describes on ``values`` (arrays made contiguous, numbers cast to
        the arrays' dtype); with ``outputs`` the kernel writes into them, otherwise it returns new arrays."""
        if key not in self._kernels:
            spec = build()
            self._kernels[key] = (self.cp.ElementwiseKernel(spec.in_params, spec.out_params, spec.operation,
                                                            spec.name), spec)
        kernel, spec = self._kernels[key]
        arrays = [v for v in values.values() if isinstance(v, self._array_type)] + list(outputs)
        number = np.float32 if arrays[0].dtype == self.xp.float32 else np.float64
        with self._device():
            args = [self.cp.ascontiguousarray(values[name]) if isinstance(values[name], self._array_type)
                    else number(values[name]) for name in spec.inputs]
            return kernel(*args, *outputs)

    def matmul(self, a, b):
        xp = self.xp
        with self._device():
            if self._graph_counter is not None:
                # CuPy refuses cuBLAS calls during stream capture: inside a graph, multiply and sum over k instead.
                return xp.sum(xp.expand_dims(a, axis=2) * xp.expand_dims(b, axis=0), axis=1)
            if a.dtype != xp.float32:
                return self.cp.matmul(a, b)
            # CuPy's compute type is process-wide, and $CUPY_TF32=1 sets it: set this backend's for this call.
            from cupy._core import _routines_linalg as linalg

            previous = linalg.get_compute_type(a.dtype)
            linalg.set_compute_type(a.dtype, linalg.COMPUTE_TYPE_TF32 if self.tf32 else linalg.COMPUTE_TYPE_DEFAULT)
            try:
                return self.cp.matmul(a, b)
            finally:
                linalg.set_compute_type(a.dtype, previous)

    def activation(self, z, activation, alpha):
        lookup("activation", activation, kernels.ACTIVATIONS)
        if activation == "identity":
            return z
        return self._run(("forward", activation), lambda: cuda_source.activation_forward(activation),
                         {"z": z, "alpha": alpha})

    def activation_backward(self, grad_a, z, a, activation, alpha):
        lookup("activation", activation, kernels.ACTIVATIONS)
        if activation == "identity":
            return grad_a
        return self._run(("backward", activation), lambda: cuda_source.activation_backward(activation),
                         {"grad_a": grad_a, "z": z, "a": a, "alpha": alpha})

    def dense_forward(self, x, W, b, activation, alpha):
        lookup("activation", activation, kernels.ACTIVATIONS)
        z = self.matmul(x, W)  # a fresh array: the kernel adds b into it in place
        if activation == "identity":
            z += b
            return z, z
        a = self.xp.empty_like(z)
        self._run(("bias", activation), lambda: cuda_source.bias_activation(activation), {"b": b, "alpha": alpha},
                  outputs=(z, a))
        return z, a

    def _softmax_ce(self, z, onehot, need_grad):
        if not need_grad:
            return Backend._softmax_ce(self, z, onehot, need_grad)
        xp = self.xp
        row_max = xp.max(z, axis=1, keepdims=True)
        row_sum = xp.sum(xp.exp(z - row_max), axis=1, keepdims=True)
        terms, grad = self._run(("softmax_ce",), cuda_source.softmax_ce,
                                {"z": z, "row_max": row_max, "row_sum": row_sum, "onehot": onehot,
                                 "count": z.shape[0]})
        return xp.sum(terms) / z.shape[0], grad  # BP1: (softmax − y) / n

    _LOSSES = {**Backend._LOSSES, "softmax_ce": _softmax_ce}  # type: ignore[dict-item]

    # Convolution and pooling are the base kernels: im2col/col2im as strided slices, the products on cuBLAS.

    def batch_norm_forward(self, x, mean, inv_std, gamma, beta):
        column = lambda v: self.xp.reshape(v, (-1, 1))  # noqa: E731 (C,) → (C, 1), broadcast over n and s
        xhat, y = self._run(("batch_norm",), cuda_source.batch_norm,
                            {"x": x, "mean": column(mean), "inv_std": column(inv_std), "gamma": column(gamma),
                             "beta": column(beta)})
        return y, xhat

    def batch_norm_backward(self, grad_y, xhat, inv_std, gamma, mean_dy, mean_dy_xhat):
        column = lambda v: self.xp.reshape(v, (-1, 1))  # noqa: E731
        return self._run(("batch_norm_grad",), cuda_source.batch_norm_grad,
                         {"grad_y": grad_y, "xhat": xhat, "inv_std": column(inv_std), "gamma": column(gamma),
                          "mean_dy": column(mean_dy), "mean_dy_xhat": column(mean_dy_xhat)})

    def sgd_update(self, param, grad, velocity, lr, momentum, nesterov, weight_decay):
        decay = bool(weight_decay)
        values = {"grad": grad, "lr": lr, "momentum": momentum, "weight_decay": weight_decay}
        if velocity is None:
            self._run(("sgd", decay), lambda: cuda_source.sgd(False, False, decay), values, outputs=(param,))
        else:
            nesterov = bool(nesterov)
            self._run(("sgd_momentum", nesterov, decay), lambda: cuda_source.sgd(True, nesterov, decay), values,
                      outputs=(param, velocity))

    def rmsprop_update(self, param, grad, square_avg, lr, rho, eps, weight_decay):
        decay = bool(weight_decay)
        self._run(("rmsprop", decay), lambda: cuda_source.rmsprop(decay),
                  {"grad": grad, "lr": lr, "rho": rho, "eps": eps, "weight_decay": weight_decay},
                  outputs=(param, square_avg))

    def adam_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step):
        if self._graph_counter is None:
            bias1, bias2 = 1.0 - beta1**step, 1.0 - beta2**step
        else:  # in a graph the step count lives on the device, so every replay uses its own
            xp, t = self.xp, self._graph_counter
            bias1, bias2 = xp.astype(1.0 - beta1**t, param.dtype), xp.astype(1.0 - beta2**t, param.dtype)
        decay = bool(weight_decay)
        self._run(("adam", decay), lambda: cuda_source.adam(decay),
                  {"grad": grad, "lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "bias1": bias1,
                   "bias2": bias2, "weight_decay": weight_decay}, outputs=(param, m, v))

    # ---- data-parallel training: summing a flat buffer over MPI ranks -------------------------

    def transports(self, comm):
        """NCCL when CuPy has it and every rank has a GPU of its own, MPI on device buffers when MPI is
        CUDA-aware, MPI through pinned host memory. Collective: every rank calls it."""
        # NCCL refuses two ranks on one GPU ("Duplicate GPU"): a GPU is its host and PCI bus id.
        placement = comm.allgather((socket.gethostname(), self._device().pci_bus_id))
        own_gpus = len(set(placement)) == len(placement)
        names = ["nccl"] if nccl_module() is not None and own_gpus else []
        return names + (["cuda-aware-mpi"] if comm.cuda_aware else []) + ["mpi"]

    def allreducer(self, comm, transport):
        lookup("transport", transport, dict.fromkeys(self.transports(comm)))
        reduce = self._nccl_allreducer(comm) if transport == "nccl" else self._mpi_allreducer(comm, transport)

        def on_device(flat):
            with self._device():
                return reduce(flat)

        return on_device

    def _mpi_allreducer(self, comm, transport):
        cp = self.cp
        if transport == "cuda-aware-mpi":
            def reduce(flat):
                flat = cp.ascontiguousarray(flat)
                # MPI reads the memory right away: the kernels that write it, queued on the stream, must be done.
                cp.cuda.get_current_stream().synchronize()
                comm.allreduce(flat)
                return flat

            return reduce
        import cupyx

        staging = {}  # one page-locked host buffer per (size, dtype): copies to and from it run at full speed

        def reduce(flat):
            key = (flat.shape[0], str(flat.dtype))
            if key not in staging:
                staging[key] = cupyx.empty_pinned(flat.shape, dtype=flat.dtype)
            host = cp.asnumpy(flat, out=staging[key])  # waits for the kernels that write flat
            comm.allreduce(host)
            return self.asarray(host)

        return reduce

    def _nccl_allreducer(self, comm):
        cp, nccl = self.cp, nccl_module()
        unique_id = comm.bcast(nccl.get_unique_id() if comm.rank == 0 else None)
        with self._device():
            nccl_comm = nccl.NcclCommunicator(comm.size, unique_id, comm.rank)

        def reduce(flat):
            flat = cp.ascontiguousarray(flat)
            kind = nccl.NCCL_FLOAT32 if flat.dtype == self.xp.float32 else nccl.NCCL_FLOAT64
            pointer = device_pointer(flat)  # in place; queued on the current stream, so no host wait
            nccl_comm.allReduce(pointer, pointer, flat.size, kind, nccl.NCCL_SUM, cp.cuda.get_current_stream().ptr)
            return flat

        return reduce

    # ---- CUDA graph primitives ------------------------------------------------------

    @contextlib.contextmanager
    def graph_kernels(self, counter):
        """Within: kernels a CUDA graph can capture (matmuls without cuBLAS; Adam reads its step count from
        ``counter``, a 0-d float64 device array)."""
        self._graph_counter = counter
        try:
            yield
        finally:
            self._graph_counter = None

    def capture_graph(self, record):
        """Capture what ``record()`` launches into a CUDA graph; returns (graph, memory blocks it uses).

        Capture runs on a non-blocking stream (the legacy default stream cannot
        capture). Every block allocated during capture is kept for the graph's
        life, so the pool never hands memory a replay writes to anyone else.
        """
        cp = self.cp
        pool, kept = cp.get_default_memory_pool(), []

        def allocate(size):
            memory = pool.malloc(size)
            kept.append(memory)
            return memory

        with self._device():
            if self._capture_stream is None:
                self._capture_stream = cp.cuda.Stream(non_blocking=True)
            stream = self._capture_stream
            gc.collect()  # an old graph freed by the collector in the middle of a capture would break it
            with cp.cuda.using_allocator(allocate), stream:
                stream.begin_capture()
                try:
                    record()
                except BaseException:
                    with contextlib.suppress(Exception):  # leave capture mode; the original error is the one to report
                        stream.end_capture()
                    raise
                graph = stream.end_capture()
        return graph, kept

    def launch_graph(self, graph):
        """Replay a graph ``capture_graph`` made, on this GPU's current stream."""
        with self._device():
            graph.launch()


CREATION = ("arange", "asarray", "empty", "empty_like", "eye", "from_dlpack", "full", "full_like", "linspace",
            "ones", "ones_like", "zeros", "zeros_like")


def on_device(xp, device):
    """``xp`` with its array-creating functions run inside ``device()`` (array-api-compat ignores device= for CuPy)."""
    namespace = types.ModuleType(xp.__name__)
    namespace.__dict__.update(vars(xp))

    def scoped(create):
        def within(*args, **kwargs):
            with device():
                return create(*args, **kwargs)
        return within

    for name in CREATION:
        if hasattr(xp, name):
            setattr(namespace, name, scoped(getattr(xp, name)))
    return namespace


def nccl_module():
    """``cupy.cuda.nccl`` when CuPy was built with NCCL and finds it, else None."""
    try:
        from cupy.cuda import nccl
    except ImportError:
        return None
    return nccl if getattr(nccl, "available", False) else None


def device_pointer(array):
    """The device address of a contiguous CuPy array (NCCL takes addresses)."""
    return array.data.ptr
