"""A stand-in for ``cupy`` and ``cupyx`` so the CuPy backend's code runs on a machine without a GPU.

Arrays are array-api-strict arrays on its fake devices (GPU 0 is
``Device("device2")``, GPU 1 ``Device("device1")``), so an array that changes
device, or is mixed with another device's, fails loudly.

As in CuPy: the current device is per thread; creation functions of the
array namespace (array-api-compat's, ``fake.xp``) ignore ``device=`` and
allocate on the current device; during stream capture custom kernels run but
cuBLAS (``matmul``), host copies, host reads (``float(x)``) and
synchronisation raise; a captured graph records every array operation and
kernel launched during capture, and ``launch()`` replays that work on the
same arrays, without running the Python that recorded it. cuRAND's stream
(``random.RandomState``) is not NumPy's default PCG64 stream.

``ElementwiseKernel`` does not fake the math: it interprets the CUDA C it is
given — the one-operation-per-line subset xpnet.backends.cuda_source emits —
statement by statement on strict arrays, with CuPy's rules (all ``T`` operands
one dtype, output shapes fixed by broadcasting, outputs all given or none). It
is stricter than CuPy in two ways that check the backend's own rules: numbers
must come as NumPy scalars of the kernel's dtype, and every array input must
have gone through ``ascontiguousarray``.

``calls`` counts what the tests check (host copies, kernels, captures, ...).
"""
import collections
import contextlib
import gc
import re
import sys
import threading
import types

import numpy as np
import pytest
import array_api_strict as strict

from xpnet import kernels

DEVICES = ("device2", "device1")
ArrayType = type(strict.asarray(0.0))
asarray = strict.asarray  # the fake's own conversions of kernel numbers are not host transfers


class CUDARuntimeError(RuntimeError):
    pass


class FakeCupy:
    """Build with the situation to fake; ``modules()`` gives the sys.modules entries to install."""

    def __init__(self, n_devices=1, available=True, runtime_error=None, compute_capability="80"):
        self.n_devices, self.available, self.runtime_error = n_devices, available, runtime_error
        self.compute_capability = compute_capability
        self.thread = threading.local()  # CUDA's current device is per host thread
        self.calls = collections.Counter()
        self.contiguous = set()  # ids of arrays returned by ascontiguousarray
        self.allocator = None  # set by cuda.using_allocator
        self.capture_error = None  # raised by begin_capture when set
        self.capturing = False
        self.tape, self.depth = None, 0  # what a capture records; depth > 0 inside a recorded operation
        self.compute_types = {}  # dtype name → compute type, as cupy._core._routines_linalg keeps them
        self.matmul_compute_types = []
        self.pool = Pool(self)
        self.module = self._build()
        self.xp = self._namespace()

    @property
    def current(self):
        return getattr(self.thread, "index", 0)

    @current.setter
    def current(self, index):
        self.thread.index = index

    def device(self, index=None):
        return strict.Device(DEVICES[self.current if index is None else index])

    def refuse_in_capture(self, what):
        if self.capturing:
            raise RuntimeError(f"{what} is not allowed while the stream is capturing "
                               f"(cudaErrorStreamCaptureUnsupported, fake)")

    def check_current(self, device, what):
        if device != self.device():
            raise ValueError(f"{what}: the array is on {device} but the current device is {self.device()} "
                             f"(CuPy launches on the current device)")

    def recorded(self, operation):
        """``operation``, recorded on the capture's tape when called (outside another recorded operation)
        during a capture."""
        fake = self

        def call(*args, **kwargs):
            if not fake.capturing or fake.depth:
                return operation(*args, **kwargs)
            fake.depth += 1
            try:
                result = operation(*args, **kwargs)
            finally:
                fake.depth -= 1
            fake.tape.append((operation, args, kwargs, result))
            return result

        return call

    def _namespace(self):
        """array-api-compat's namespace for these arrays: strict's functions, each recorded during capture;
        creation functions allocate on the current device whatever ``device=`` says, as for CuPy."""
        fake = self
        xp = types.ModuleType("array_api_compat.cupy")
        def late(name):  # strict's function looked up at each call: tests may wrap it
            return lambda *args, **kwargs: getattr(strict, name)(*args, **kwargs)

        for name in strict.__all__:
            value = getattr(strict, name)
            xp.__dict__[name] = fake.recorded(late(name)) if callable(value) and not isinstance(value, type) else value

        def current_device(name):
            def call(*args, device=None, **kwargs):
                if name == "asarray" and isinstance(args[0], ArrayType):
                    return strict.asarray(*args, **kwargs)  # CuPy arrays stay where they are
                if name == "asarray":
                    fake.refuse_in_capture("a host-to-device copy")
                return getattr(strict, name)(*args, device=fake.device(), **kwargs)
            return fake.recorded(call)

        def clip(x, min=None, max=None):
            """array-api-compat's clip for CuPy: it assigns through boolean masks, whose count CuPy reads to the host."""
            out = strict.asarray(x, copy=True)
            for bound, outside in ((min, strict.less), (max, strict.greater)):
                if bound is not None:
                    limit = strict.broadcast_to(strict.asarray(bound, dtype=x.dtype, device=x.device), x.shape)
                    mask = outside(out, limit)
                    out[mask] = limit[mask]
            return out

        xp.clip = fake.recorded(clip)
        for name in ("arange", "asarray", "empty", "empty_like", "eye", "full", "full_like", "linspace", "ones",
                     "ones_like", "zeros", "zeros_like"):
            xp.__dict__[name] = current_device(name)
        return xp

    def modules(self):
        cupy = self.module
        return {"cupy": cupy, "cupy.cuda": cupy.cuda, "cupy.cuda.runtime": cupy.cuda.runtime,
                "cupy.random": cupy.random, "cupy._core": cupy._core,
                "cupy._core._routines_linalg": cupy._core._routines_linalg,
                "cupyx": self.cupyx, "cupyx.scipy": self.cupyx.scipy, "cupyx.scipy.special": self.cupyx.scipy.special}

    # ---- the module --------------------------------------------------------------------

    def _build(self):
        fake = self
        cupy = types.ModuleType("cupy")
        cupy.__version__ = "13.6.0+fake"
        # Not strict's array type: array_api_compat recognises cupy arrays by cupy.ndarray, and the arrays
        # here must keep their own namespace (the backend tells its arrays apart by that, not by cupy.ndarray).
        cupy.ndarray = type("ndarray", (), {})
        cupy.float32, cupy.float64 = strict.float32, strict.float64

        runtime = types.ModuleType("cupy.cuda.runtime")
        runtime.CUDARuntimeError = CUDARuntimeError

        def get_device_count():
            if fake.runtime_error:
                raise CUDARuntimeError(fake.runtime_error)
            return fake.n_devices

        runtime.getDeviceCount = get_device_count
        runtime.getDevice = lambda: fake.current
        runtime.getDeviceProperties = lambda i: {"name": f"Fake GPU {i}".encode(), "totalGlobalMem": 16 * 2**30}
        runtime.runtimeGetVersion = lambda: 12080

        class Device:
            def __init__(self, index=None):
                self.id = fake.current if index is None else int(index)
                if not 0 <= self.id < fake.n_devices:
                    raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")
                self.compute_capability = fake.compute_capability
                self.pci_bus_id = f"0000:{self.id + 1:02x}:00.0"
                self._stack = []

            def use(self):
                fake.current = self.id

            def __enter__(self):
                self._stack.append(fake.current)
                self.use()
                return self

            def __exit__(self, *exc):
                fake.current = self._stack.pop()

            def synchronize(self):
                fake.refuse_in_capture("synchronising the device")
                fake.calls["synchronize"] += 1

        class Graph:
            """The work recorded during capture, replayed on the same arrays (no Python of the step runs)."""

            def __init__(self, tape):
                self.tape, self.launches = tape, 0

            def launch(self, stream=None):
                fake.calls["graph_launch"] += 1
                self.launches += 1
                for operation, args, kwargs, result in self.tape:
                    new = operation(*args, **kwargs)
                    for old, value in zip(*((result, new) if isinstance(result, tuple) else ([result], [new]))):
                        # What the capture allocated is the graph's memory: the replay writes it again.
                        if isinstance(old, ArrayType) and value is not old and old._array.flags.writeable:
                            old[...] = value

        class Stream:
            def __init__(self, non_blocking=False):
                self.non_blocking = non_blocking

            def __enter__(self):
                fake.calls["stream_enter"] += 1
                return self

            def __exit__(self, *exc):
                pass

            def begin_capture(self):
                if not self.non_blocking:
                    raise RuntimeError("cannot capture on a blocking stream in this fake")
                if fake.capture_error:
                    raise CUDARuntimeError(fake.capture_error)
                fake.calls["begin_capture"] += 1
                # A capture records work without running it: what the fake computes meanwhile is undone at the end.
                fake.before_capture = [(a, a._array.copy()) for a in fake.pool.arrays() if a._array.flags.writeable]
                fake.capturing, fake.tape = True, []
                fake.array_methods = {name: getattr(ArrayType, name) for name in ARRAY_METHODS + HOST_READS}
                for name in ARRAY_METHODS:
                    method = fake.array_methods[name]
                    setattr(ArrayType, name, fake.recorded(masked(method) if "item" in name else method))
                for name in HOST_READS:
                    setattr(ArrayType, name, host_read(name))

            def end_capture(self):
                fake.calls["end_capture"] += 1
                for name, method in fake.array_methods.items():  # as they were (a test may have wrapped some)
                    setattr(ArrayType, name, method)
                fake.capturing = False
                for array, values in fake.before_capture:
                    array._array[...] = values
                fake.before_capture = None
                graph, fake.tape = Graph(fake.tape), None
                return graph

            def synchronize(self):
                fake.refuse_in_capture("synchronising a stream")
                fake.calls["synchronize"] += 1

        def masked(method):
            def index(self, key, *value):
                if isinstance(key, ArrayType) and key.dtype == strict.bool:
                    fake.refuse_in_capture("boolean-mask indexing (it reads the mask's count to the host)")
                return method(self, key, *value)
            return index

        def host_read(name):
            def refused(self, *args):
                fake.refuse_in_capture(f"reading an array on the host ({name})")
            return refused

        @contextlib.contextmanager
        def using_allocator(allocator=None):
            previous, fake.allocator = fake.allocator, allocator
            try:
                yield
            finally:
                fake.allocator = previous

        cuda = types.ModuleType("cupy.cuda")
        cuda.runtime, cuda.Device, cuda.Stream, cuda.Graph = runtime, Device, Stream, Graph
        cuda.is_available = lambda: fake.available and fake.n_devices > 0
        cuda.using_allocator = using_allocator
        cuda.get_current_stream = lambda: Stream()
        cupy.cuda = cuda

        def empty(shape, dtype=strict.float32):
            return strict.empty(shape, dtype=dtype, device=fake.device())

        def zeros(shape, dtype=strict.float32):
            return strict.zeros(shape, dtype=dtype, device=fake.device())

        def asarray(x):
            fake.refuse_in_capture("a host-to-device copy")
            fake.calls["asarray"] += 1
            return strict.asarray(np.asarray(x), device=fake.device())

        def asnumpy(x):
            fake.refuse_in_capture("a device-to-host copy (asnumpy)")
            fake.calls["asnumpy"] += 1
            return np.array(np.from_dlpack(x), copy=True)

        def ascontiguousarray(x):
            fake.calls["ascontiguousarray"] += 1
            fake.contiguous.add(id(x))
            return x

        def matmul(a, b):
            fake.refuse_in_capture("a cuBLAS call (matmul)")
            fake.check_current(a.device, "matmul")
            fake.calls["matmul"] += 1
            fake.matmul_compute_types.append(fake.compute_types.get(str(a.dtype).split(".")[-1]))
            return strict.matmul(a, b)

        def from_dlpack(x):
            # As CuPy: the array stays where it is; one on another device (or the host) is refused.
            if x.__dlpack_device__() != (2, fake.current):
                raise BufferError(f"from_dlpack: the array is on DLPack device {x.__dlpack_device__()}, "
                                  f"the current device is (2, {fake.current})")
            fake.calls["from_dlpack"] += 1
            return strict.asarray(x.memory, device=fake.device(), copy=False)

        cupy.empty, cupy.zeros, cupy.asarray, cupy.asnumpy = empty, zeros, asarray, asnumpy
        cupy.from_dlpack = from_dlpack
        cupy.ascontiguousarray, cupy.matmul = fake.recorded(ascontiguousarray), matmul
        cupy.ElementwiseKernel = lambda in_params, out_params, operation, name: ElementwiseKernel(
            fake, in_params, out_params, operation, name)
        cupy.get_default_memory_pool = lambda: fake.pool

        random = types.ModuleType("cupy.random")
        random.RandomState = lambda seed=None: RandomState(fake, seed)
        cupy.random = random

        linalg = types.ModuleType("cupy._core._routines_linalg")
        linalg.COMPUTE_TYPE_DEFAULT, linalg.COMPUTE_TYPE_TF32 = 1, 7
        linalg.get_compute_type = lambda dtype: fake.compute_types.get(str(dtype).split(".")[-1], 1)
        linalg.set_compute_type = lambda dtype, kind: fake.compute_types.__setitem__(str(dtype).split(".")[-1], kind)
        cupy._core = types.ModuleType("cupy._core")
        cupy._core._routines_linalg = linalg

        self.cupyx = types.ModuleType("cupyx")
        self.cupyx.scipy = types.ModuleType("cupyx.scipy")
        self.cupyx.scipy.special = types.ModuleType("cupyx.scipy.special")
        self.cupyx.scipy.special.erf = cuda_erf
        return cupy


class Pool:
    """The memory pool: used bytes are the bytes of live strict arrays on the fake GPUs; total keeps a cache."""

    def __init__(self, fake):
        self.fake, self.total = fake, 0
        self.on_free = None  # a test hook called by free_all_blocks

    def arrays(self):
        """Every live array on the fake GPUs."""
        devices = {strict.Device(d) for d in DEVICES}
        return [a for a in gc.get_objects() if type(a) is ArrayType and a.device in devices]

    def used_bytes(self):
        return sum(a.size * (4 if a.dtype == strict.float32 else 8) for a in self.arrays())

    def total_bytes(self):
        self.total = max(self.total, self.used_bytes())
        return self.total

    def free_all_blocks(self):
        self.fake.calls["free_all_blocks"] += 1
        if self.on_free is not None:
            self.on_free()
        self.total = self.used_bytes()

    def malloc(self, size):
        self.fake.calls["malloc"] += 1
        return ("block", size)


class RandomState:
    """cupy.random.RandomState (cuRAND's XORWOW): a stream of its own, not NumPy's PCG64, on the current fake GPU."""

    def __init__(self, fake, seed):
        fake.calls["generator_built"] += 1  # on a GPU: a state allocation and a kernel launch
        self.fake = fake
        self.seed(seed)

    def seed(self, seed=None):
        self.host = np.random.Generator(np.random.Philox(seed))

    def random_sample(self, size=None, dtype=float):
        return strict.asarray(self.host.random(size), dtype=dtype, device=self.fake.device())


ARRAY_METHODS = tuple(name for name in dir(ArrayType) if name in {
    "__abs__", "__add__", "__and__", "__eq__", "__ge__", "__getitem__", "__gt__", "__iadd__", "__imul__",
    "__invert__", "__ipow__", "__isub__", "__itruediv__", "__le__", "__lt__", "__matmul__", "__mul__", "__ne__",
    "__neg__", "__or__", "__pos__", "__pow__", "__radd__", "__rmatmul__", "__rmul__", "__rpow__", "__rsub__",
    "__rtruediv__", "__setitem__", "__sub__", "__truediv__"})
HOST_READS = tuple(name for name in ("__bool__", "__float__", "__int__", "__index__", "__complex__", "__dlpack__",
                                     "__array__", "__buffer__") if hasattr(ArrayType, name))


# ---- ElementwiseKernel: an interpreter for the generated CUDA C -------------------------------

def cuda_erf(x):
    """CUDA's erf / erff, within 2 ulp of erf (CUDA Math API): the series in float64, rounded to x's dtype.

    The series evaluated in float32 is less accurate than erff (2.3× the kernels' float32 tolerance at |z| = 8).
    """
    return strict.astype(kernels.erf_series(strict, strict.astype(x, strict.float64)), x.dtype)


FUNCTIONS = {"exp": strict.exp, "tanh": strict.tanh, "sqrt": strict.sqrt, "log": strict.log, "fabs": strict.abs,
             "erf": cuda_erf}
OPERATORS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b,
             ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}
OPERAND = r"(\(T\)[-+0-9.eE]+|[A-Za-z_]\w*)"
STATEMENT = re.compile(r"const (T|bool) (t\d+) = (.+);")
ASSIGNMENT = re.compile(r"([A-Za-z_]\w*) = " + OPERAND + ";")
TERNARY = re.compile(rf"{OPERAND} \? {OPERAND} : {OPERAND}")
BINARY = re.compile(rf"{OPERAND} (\+|-|\*|/|>=|<=|>|<) {OPERAND}")
CALL = re.compile(rf"(\w+)\({OPERAND}\)")
NEGATE = re.compile(rf"-{OPERAND}")


def params(text):
    names = [p.split() for p in text.split(",") if p.strip()]
    for words in names:
        if words[0] != "T" or len(words) != 2:
            raise ValueError(f"the fake supports only 'T name' parameters, got {' '.join(words)!r}")
    return [words[1] for words in names]


class ElementwiseKernel:
    def __init__(self, fake, in_params, out_params, operation, name):
        self.fake, self.name = fake, name
        self.ins, self.outs = params(in_params), params(out_params)
        self.lines = [line.strip() for line in operation.splitlines() if line.strip()]
        for line in self.lines:  # CuPy compiles on first call; the fake checks the grammar up front
            if not (STATEMENT.fullmatch(line) or ASSIGNMENT.fullmatch(line)):
                raise SyntaxError(f"{name}: the fake cannot interpret {line!r}")

    def __call__(self, *args):
        return self.fake.recorded(self._launch)(*args)

    def _launch(self, *args):
        fake = self.fake
        fake.calls["kernel"] += 1
        fake.calls[self.name] += 1
        if len(args) not in (len(self.ins), len(self.ins) + len(self.outs)):
            raise TypeError(f"{self.name} takes {len(self.ins)} inputs and optionally {len(self.outs)} outputs, "
                            f"got {len(args)} arguments")
        inputs, outputs = args[:len(self.ins)], args[len(self.ins):]
        arrays = [a for a in args if isinstance(a, ArrayType)]
        dtype, device = arrays[0].dtype, arrays[0].device
        for a in arrays:
            if a.dtype != dtype:
                raise TypeError(f"Type is mismatched: {a.dtype} and {dtype} in {self.name}")
            if a.device != device:
                raise ValueError(f"{self.name}: arrays on {a.device} and {device}")
        fake.check_current(device, self.name)
        for name, a in zip(self.ins, inputs):
            if isinstance(a, ArrayType) and id(a) not in fake.contiguous:
                raise AssertionError(f"{self.name}: input {name} was not made contiguous")
        env = {}
        for name, a in zip(self.ins, inputs):
            if not isinstance(a, ArrayType):
                if not isinstance(a, np.generic) or np.dtype(a.dtype).name != str(dtype).split(".")[-1]:
                    raise TypeError(f"{self.name}: number {name}={a!r} is not a NumPy scalar of the kernel's "
                                    f"dtype {dtype}")
                a = asarray(float(a), dtype=dtype, device=device)
            env[name] = a
        shape = np.broadcast_shapes(*(tuple(a.shape) for a in arrays))
        for name, out in zip(self.outs, outputs):
            if tuple(out.shape) != shape:
                raise ValueError(f"{self.name}: out shape {tuple(out.shape)} is mismatched with {shape}")
            env[name] = out
        for line in self.lines:
            self._execute(line, env, dtype, device)
        results = [strict.broadcast_to(strict.astype(env[name], dtype), shape) for name in self.outs]
        if not outputs:
            results = [strict.asarray(r, copy=True) for r in results]
            return results[0] if len(results) == 1 else tuple(results)
        for out, value in zip(outputs, results):
            out[...] = value
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _execute(self, line, env, dtype, device):
        def value(token):
            if token.startswith("(T)"):
                return asarray(float(token[3:]), dtype=dtype, device=device)
            return env[token]

        assignment = ASSIGNMENT.fullmatch(line)
        if assignment and not line.startswith("const "):
            env[assignment.group(1)] = value(assignment.group(2))
            return
        _, target, expression = STATEMENT.fullmatch(line).groups()
        if m := TERNARY.fullmatch(expression):
            result = strict.where(value(m.group(1)), value(m.group(2)), value(m.group(3)))
        elif m := BINARY.fullmatch(expression):
            result = OPERATORS[m.group(2)](value(m.group(1)), value(m.group(3)))
        elif m := CALL.fullmatch(expression):
            result = FUNCTIONS[m.group(1)](value(m.group(2)))
        elif m := NEGATE.fullmatch(expression):
            result = -value(m.group(1))
        else:
            raise SyntaxError(f"{self.name}: the fake cannot interpret {expression!r}")
        env[target] = result


# ---- fixtures (import them into a test module to use them) -----------------------------------

class ForeignGPUArray:
    """Another library's array on fake GPU ``index`` (a torch CUDA tensor, a JAX GPU array): it speaks
    DLPack only, and ``memory`` is its device memory (a NumPy array the fake's from_dlpack shares)."""

    def __init__(self, memory, index=0):
        self.memory, self.index = memory, index
        self.shape, self.dtype = memory.shape, memory.dtype

    def __dlpack_device__(self):
        return (2, self.index)

    def __dlpack__(self, **kwargs):
        raise BufferError("a GPU array cannot be read on the host through DLPack")

    def __getitem__(self, key):
        return ForeignGPUArray(self.memory[key], self.index)

    def __len__(self):
        return len(self.memory)


def install(monkeypatch, fake):
    """Put ``fake`` in sys.modules as cupy/cupyx and make the registry forget its probes and instances.

    Arrays on the fake GPUs report a CUDA DLPack device, as CuPy's do (array-api-strict says CPU)."""
    import array_api_compat

    import xpnet.backends as registry

    for name, module in fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(array_api_compat, "array_namespace", lambda *arrays, **options: fake.xp)
    original = ArrayType.__dlpack_device__

    def dlpack_device(self):
        name = str(self.device).split("'")[1] if "'" in str(self.device) else None
        return (2, DEVICES.index(name)) if name in DEVICES else original(self)

    monkeypatch.setattr(ArrayType, "__dlpack_device__", dlpack_device)
    monkeypatch.setattr(registry, "_probes", {})
    monkeypatch.setattr(registry, "_instances", {})
    return fake


@pytest.fixture
def fake_cupy(monkeypatch):
    """A fake CuPy with one working GPU, installed for the test."""
    return install(monkeypatch, FakeCupy())


@pytest.fixture
def gpu(fake_cupy):
    """The CuPy backend on the fake GPU, with CUDA graphs off (test_graph_step.py covers them)."""
    import xpnet as xn

    return xn.get_backend("cupy", graphs=False)


