"""The numba backend: every compiled kernel against the plain-xp base kernel, the fused step against the plain step."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import xpnet as xn
from xpnet import kernels
from xpnet.backends.base import Backend
from xpnet.steps import PlainStep

pytestmark = pytest.mark.skipif(importlib.util.find_spec("numba") is None,
                                reason="numba is not installed (pip install -e '.[numba]')")

SHAPES = [(1, 1), (3, 5), (7, 1), (1, 9), (33, 17)]
TOL = {"float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-10, atol=1e-13)}


@pytest.fixture(scope="module")
def numba_backend():
    from xpnet.backends.numba_backend import NumbaBackend

    return NumbaBackend()


@pytest.fixture(scope="module")
def base():
    """The plain-xp defaults on NumPy, with the same erf as NumPy's backend so only the kernels differ."""
    from scipy.special import erf

    backend = Backend(np, device="cpu")
    backend.math.erf = erf
    return backend


def arrays(rng, shape, dtype, layout, count=1, low=-3, high=3):
    """``count`` random arrays; layout "strided" gives every other column of a wider array."""
    out = []
    for _ in range(count):
        a = rng.uniform(low, high, shape)
        if layout == "strided":
            wide = np.zeros((shape[0], 2 * shape[1]))
            wide[:, ::2] = a
            a = wide[:, ::2]
        out.append(a.astype(dtype))
    return out


def close(got, want, dtype):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), **TOL[dtype])
    assert np.asarray(got).dtype == np.asarray(want).dtype


def test_every_override_keeps_the_base_signature(numba_backend):
    import inspect

    for name, member in vars(type(numba_backend)).items():
        if callable(member) and not name.startswith("_") and hasattr(Backend, name):
            assert inspect.signature(member) == inspect.signature(getattr(Backend, name)), name


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("activation", list(kernels.ACTIVATIONS))
def test_activation_kernels_match_base(numba_backend, base, activation, shape, layout, dtype, rng):
    z, grad_a = arrays(rng, shape, dtype, layout, count=2)
    a = base.activation(z, activation, 0.05)
    close(numba_backend.activation(z, activation, 0.05), a, dtype)
    close(numba_backend.activation_backward(grad_a, z, a, activation, 0.05),
          base.activation_backward(grad_a, z, a, activation, 0.05), dtype)
    x, = arrays(rng, (shape[0], 4), dtype, layout)
    W, = arrays(rng, (4, shape[1]), dtype, "contiguous")
    b = rng.standard_normal(shape[1]).astype(dtype)
    for got, want in zip(numba_backend.dense_forward(x, W, b, activation, 0.05),
                         base.dense_forward(x, W, b, activation, 0.05)):
        close(got, want, dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layout", ["C", "transposed", "strided"])
def test_matmul_matches_base(numba_backend, base, layout, dtype, rng):
    a, b = rng.standard_normal((7, 5)).astype(dtype), rng.standard_normal((5, 3)).astype(dtype)
    if layout == "transposed":
        a, b = np.ascontiguousarray(a.T).T, np.ascontiguousarray(b.T).T
    elif layout == "strided":
        a, b = np.repeat(a, 2, axis=1)[:, ::2], np.repeat(b, 2, axis=0)[::2]
    close(numba_backend.matmul(a, b), base.matmul(a, b), dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m, n, k", [(6, 25, 50176), (2, 6, 512), (3, 25, 1500), (25, 4, 2049), (5, 200, 1024)])
def test_short_by_long_products_match_base(numba_backend, base, m, n, k, dtype, rng, monkeypatch):
    """A Bᵀ with a short side and a long sum (a conv layer's ∂W = δ₂ colsᵀ) takes _dot_nt: odd and even
    row counts, sums that end inside a chunk, NaN carried; and gives what the base's product gives."""
    from xpnet.backends import numba_backend as nb

    real, calls = nb._dot_nt, []
    monkeypatch.setattr(nb, "_dot_nt", lambda *args: calls.append(args[0].shape) or real(*args))
    a, b = rng.standard_normal((m, k)).astype(dtype), np.ascontiguousarray(rng.standard_normal((n, k)).astype(dtype)).T
    a[m - 1, k // 2] = np.nan
    got, want = numba_backend.matmul(a, b), base.matmul(a, b)
    assert calls, "the product did not take _dot_nt"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    keep = ~np.isnan(want)
    np.testing.assert_allclose(got[keep], want[keep], rtol=2e-4 if dtype == "float32" else 1e-12,
                               atol=2e-3 if dtype == "float32" else 1e-10)


def test_parallel_variant_matches_serial(base, rng, monkeypatch):
    """Arrays above the threshold take the prange variant; it computes the same numbers."""
    from xpnet.backends import numba_backend as nb

    monkeypatch.setattr(nb, "PARALLEL_MIN", 1 << 12)  # the real threshold is millions of elements
    z = rng.standard_normal((100, 100))
    parallel, serial = nb.NumbaBackend(parallel=True), nb.NumbaBackend(parallel=False)
    assert parallel._kernel("_activation", z.size, "tanh") is not serial._kernel("_activation", z.size, "tanh")
    np.testing.assert_array_equal(parallel.activation(z, "tanh", 0.0), serial.activation(z, "tanh", 0.0))
    close(parallel.activation(z, "gelu", 0.0), base.activation(z, "gelu", 0.0), "float64")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("loss", ["mse", "bce", "bce_logits", "softmax_ce"])
def test_loss_kernels_match_base(numba_backend, base, loss, shape, dtype, rng):
    pred, = arrays(rng, shape, dtype, "contiguous", low=0.01 if loss == "bce" else -3, high=0.99 if loss == "bce" else 3)
    if loss == "softmax_ce":
        target = np.eye(shape[1], dtype=dtype)[rng.integers(0, shape[1], shape[0])]
    else:
        target = rng.integers(0, 2, shape).astype(dtype) if loss.startswith("bce") else \
            rng.standard_normal(shape).astype(dtype)
    got_loss, got_grad = numba_backend.loss_and_grad(loss, pred, target)
    want_loss, want_grad = base.loss_and_grad(loss, pred, target)
    close(got_loss, want_loss, dtype)
    close(got_grad, want_grad, dtype)
    assert got_grad.flags.c_contiguous  # rows of samples, as pred: no transposed copy on either side


UPDATES = [("sgd", dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0)),
           ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
           ("rmsprop", dict(lr=0.01, rho=0.9, eps=1e-8, weight_decay=0.01)),
           ("adam", dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(1, 1), (7, 3), (600, 200)], ids=str)  # the last takes the parallel variant
@pytest.mark.parametrize("kind,hp", UPDATES, ids=["sgd", "nesterov", "rmsprop", "adam"])
def test_update_kernels_match_base(numba_backend, base, kind, hp, shape, dtype, rng):
    p0, g0, s0, v0 = (rng.standard_normal(shape).astype(dtype) for _ in range(4))
    s0, v0 = np.abs(s0), np.abs(v0)
    results = []
    for backend in (numba_backend, base):
        p, s, v = p0.copy(), s0.copy(), v0.copy()
        for step in (1, 2):
            if kind == "sgd":
                backend.sgd_update(p, g0, s if hp["momentum"] else None, **hp)
            elif kind == "rmsprop":
                backend.rmsprop_update(p, g0, s, hp["lr"], hp["rho"], hp["eps"], hp["weight_decay"])
            else:
                backend.adam_update(p, g0, s, v, hp["lr"], hp["beta1"], hp["beta2"], hp["eps"], hp["weight_decay"],
                                    step)
        results.append((p, s, v))
    for got, want in zip(*results):
        close(got, want, dtype)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_max_norm_matches_base(numba_backend, base, shape, rng):
    W = rng.standard_normal(shape) * 3
    a, b = W.copy(), W.copy()
    numba_backend.max_norm(a, 1.0)
    base.max_norm(b, 1.0)
    close(a, b, "float64")


# ---- the fused step against the plain layer-by-layer step ----------------------------------

OPTIMIZERS = {
    "sgd": lambda: xn.optim.SGD(0.1),
    "sgd-l2": lambda: xn.optim.SGD(0.1, weight_decay=0.01),
    "momentum": lambda: xn.optim.SGD(0.05, momentum=0.9),
    "momentum-l2": lambda: xn.optim.SGD(0.05, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda: xn.optim.SGD(0.05, momentum=0.9, nesterov=True),
    "rmsprop": lambda: xn.optim.RMSProp(0.005),
    "adam": lambda: xn.optim.Adam(0.01),
    "adam-l2": lambda: xn.optim.Adam(0.01, weight_decay=0.01),
}


def twin_runs(sizes, activation, loss, make_opt, data, steps=100, batch_size=None, dtype="float64", **compile_kw):
    """The same net trained by the numba fused step and by the plain step; returns both weight lists."""
    X, y = data
    weights = []
    for fused in (True, False):
        net = xn.MLP(sizes, activation=activation, output_activation="sigmoid" if loss == "bce" else None,
                     dtype=dtype, seed=3, backend="numba")
        opt = make_opt()
        step = net.compile(loss, opt, **compile_kw) if fused else \
            PlainStep(net, xn.losses.get(loss), opt, **compile_kw)
        assert ("fused" in repr(step)) == fused
        from xpnet.validation import prepare

        Xd, Td = prepare(net, xn.losses.get(loss), X, y)
        order_rng = np.random.default_rng(0)
        for _ in range(steps if batch_size is None else steps // 5):
            if batch_size is None:
                step.step(Xd, Td)
            else:
                step.run_epoch(Xd, Td, order_rng.permutation(len(X)), batch_size)
        weights.append(net.get_weights())
    return weights


def classification(rng, n=40, d=3, k=3):
    return rng.standard_normal((n, d)), rng.integers(0, k, n)


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_fused_step_matches_plain_step_over_100_steps(opt, rng):
    fused, plain = twin_runs([3, 8, 5, 3], "tanh", "softmax_ce", OPTIMIZERS[opt], classification(rng))
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", ["mse", "bce", "bce_logits", "softmax_ce"])
@pytest.mark.parametrize("activation", list(kernels.ACTIVATIONS))
def test_fused_step_matches_for_every_activation_and_loss(activation, loss, rng):
    X = rng.standard_normal((20, 2))
    y = rng.integers(0, 2, 20) if loss == "softmax_ce" else \
        rng.standard_normal((20, 2)) if loss == "mse" else rng.integers(0, 2, (20, 2)).astype(float)
    fused, plain = twin_runs([2, 7, 2], activation, loss, OPTIMIZERS["momentum"], (X, y), steps=30)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_fused_shuffled_minibatch_epochs_match_plain(rng):
    fused, plain = twin_runs([3, 6, 3], "relu", "softmax_ce", OPTIMIZERS["adam"], classification(rng, n=37),
                             steps=50, batch_size=8)  # 37 rows: a short last batch
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_fused_blas_path_matches_plain(rng):
    """Layers large enough for BLAS (fan_in · fan_out · batch ≥ BLAS_MIN) go through np.dot."""
    from xpnet.backends.numba_mlp import BLAS_MIN

    X, y = rng.standard_normal((64, 40)), rng.integers(0, 10, 64)
    assert 40 * 48 * 64 >= BLAS_MIN
    fused, plain = twin_runs([40, 48, 10], "relu", "softmax_ce", OPTIMIZERS["momentum-l2"], (X, y), steps=20)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_networks_without_blas_sized_products_get_the_variant_without_blas():
    from xpnet.backends import numba_mlp as mlp

    small = xn.MLP([2, 16, 16, 2], backend="numba").compile("softmax_ce", "sgd")
    large = xn.MLP([40, 48, 10], backend="numba").compile("softmax_ce", "sgd")
    assert small._compiled(32).key[3] is False and large._compiled(64).key[3] is True
    assert large._compiled(8).key[3] is False
    assert not small._compiled(32).train.py_func.__globals__["USE_BLAS"] and mlp.USE_BLAS


def test_a_variant_compiles_only_what_its_network_uses():
    """Flags frozen per variant: a tanh backprop step has no other activation, no other loss, no finite
    differences and no clipping or max-norm limit in it (those come with clip_norm or max_norm), a
    finite-difference step no backprop, and the module's own functions keep everything."""
    from xpnet.backends import numba_mlp as mlp

    step = xn.MLP([2, 16, 16, 2], activation="tanh", backend="numba").compile("softmax_ce", "sgd")
    flags = step._compiled(32).train.py_func.__globals__
    assert flags["TANH_ON"] and flags["IDENTITY_ON"] and flags["SOFTMAX_CE_ON"]
    assert not any(flags[name] for name in ("SIGMOID_ON", "RELU_ON", "LEAKY_RELU_ON", "GELU_ON", "GELU_TANH_ON",
                                            "MSE_ON", "BCE_ON", "BCE_LOGITS_ON", "FD_ON", "FD_ONLY", "LIMITS_ON"))
    assert step._compiled(32).output_loss.py_func.__globals__ is flags  # the loss it calls is the variant's
    assert mlp.GELU_ON and mlp.MSE_ON and mlp.BCE_ON and mlp.FD_ON and mlp.LIMITS_ON and not mlp.FD_ONLY
    fd = xn.MLP([2, 16, 16, 2], activation="tanh", backend="numba").compile("softmax_ce", "sgd",
                                                                             gradient="finite_difference")
    fd_flags = fd._compiled(32).train.py_func.__globals__
    assert fd_flags["FD_ON"] and fd_flags["FD_ONLY"]  # finite differences, and no backprop, in it
    assert fd._compiled(32).key in mlp.every_variant_key()
    assert step._compiled(32).key in mlp.every_variant_key()
    for option in ({"max_norm": 2.0}, {"clip_norm": 1.0}):
        limited = xn.MLP([2, 16, 16, 2], activation="tanh", backend="numba").compile("softmax_ce", "sgd", **option)
        assert limited._compiled(32).train.py_func.__globals__["LIMITS_ON"]
        assert limited._compiled(32).key in mlp.every_variant_key()
    assert step._compiled(32) is step._compiled(16)  # one compiled variant per network, whatever the batch


REFCOUNT_CHILD = """
import numpy as np
import xpnet as xn
from xpnet.datasets import xor
X, y = xor()
for sizes, batch in (([2, 2, 1], 4), ([2, 256, 256, 1], 128)):  # XOR's loops, and a step with BLAS products
    net = xn.MLP(sizes, activation="sigmoid", output_activation="sigmoid", backend="numba")
    step = net.compile("mse", xn.optim.SGD(lr=1.0))
    step.notices = False
    step.repeat(np.tile(X, (batch // 4, 1)), np.tile(y, (batch // 4, 1)), 2)
    train = step._compiled(batch).train
    print(train.targetoptions.get("_nrt"), train.inspect_llvm(train.signatures[0]).count("@NRT_incref"))
"""


def test_the_compiled_steps_have_no_reference_counting():
    """The XOR-sized step and a step with BLAS products compile without numba's runtime: no atomic
    reference-count increments in train (with it, every inlined call passing arrays made two per array per
    batch). Compiled afresh, uncached, in a child process, so that its LLVM IR is there to read."""
    env = dict(os.environ, XPNET_NUMBA_CACHE="0")
    out = subprocess.run([sys.executable, "-c", REFCOUNT_CHILD], capture_output=True, text=True, env=env,
                         check=True, timeout=600).stdout.split()
    assert out == ["False", "0", "False", "0"]


GEMM_CHILD = """
import numpy as np
from numba import njit
from xpnet.backends import numba_blas

@njit(_nrt=False)
def product(trans_a, trans_b, m, n, k, a, a_offset, b, b_offset, c, c_offset):
    numba_blas.gemm(trans_a, trans_b, m, n, k, a, a_offset, b, b_offset, c, c_offset)

rng = np.random.default_rng(0)
worst = 0.0
for dtype in (np.float32, np.float64):
    for trans_a in (False, True):
        for trans_b in (False, True):
            for m, n, k in ((1, 1, 1), (5, 7, 3), (33, 2, 17)):
                a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
                b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
                A, B = np.concatenate([np.ones(4, dtype), a.ravel()]), np.concatenate([np.ones(2, dtype), b.ravel()])
                C = np.full(3 + m * n + 5, 7.0, dtype)
                product(trans_a, trans_b, m, n, k, A, 4, B, 2, C, 3)
                expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
                assert (C[:3] == 7).all() and (C[3 + m * n:] == 7).all(), "wrote outside C"
                err = np.abs(C[3:3 + m * n].reshape(m, n) - expected).max() / max(1.0, np.abs(expected).max())
                worst = max(worst, err / np.finfo(dtype).eps)
print(numba_blas.NAME, worst)
"""


@pytest.mark.parametrize("library", ["numpy", "scipy"])
def test_gemm_matches_numpy_with_either_blas(library):
    """numba_blas.gemm, every transposition, float32 and float64, from offsets inside flat arrays, against
    NumPy's @: through NumPy's CBLAS, and through numba's helper (SciPy's BLAS), which XPNET_NUMBA_BLAS=scipy
    selects as where NumPy's cannot be found. A child process each, as the choice is made at import."""
    env = dict(os.environ, XPNET_NUMBA_CACHE="0", XPNET_NUMBA_BLAS=library)
    out = subprocess.run([sys.executable, "-c", GEMM_CHILD], capture_output=True, text=True, env=env,
                         check=True, timeout=600).stdout.split()
    assert out[0] == ("cblas" if library == "numpy" else "dot")
    assert float(out[1]) < 64  # in units of the dtype's epsilon, relative to the largest entry


def test_a_wrong_blas_choice_makes_the_backend_unavailable_and_says_why():
    env = dict(os.environ, XPNET_NUMBA_BLAS="mkl")
    child = ("import xpnet as xn\n"
             "print(xn.backends.unavailable_reason('numba'))\n"
             "try:\n    xn.get_backend('numba')\nexcept xn.errors.BackendUnavailableError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, check=True,
                         timeout=600).stdout.splitlines()
    assert out[0] == "XPNET_NUMBA_BLAS must be 'numpy' (the default) or 'scipy', got 'mkl'"
    assert "XPNET_NUMBA_BLAS" in out[1]


SCIPY_BLAS_CHILD = """
import numpy as np
import xpnet as xn
from xpnet.steps import PlainStep
from xpnet.validation import prepare
rng = np.random.default_rng(1)
X, y = rng.standard_normal((64, 40)), rng.integers(0, 10, 64)
weights = []
for fused in (True, False):
    net = xn.MLP([40, 48, 10], activation="tanh", dtype="float64", seed=3, backend="numba")
    loss, opt = xn.losses.get("softmax_ce"), xn.optim.Adam(lr=0.01)
    step = net.compile(loss, opt) if fused else PlainStep(net, loss, opt)
    step.notices = False
    Xd, Td = prepare(net, loss, X, y)
    for _ in range(10):
        step.step(Xd, Td)
    weights.append(net.get_weights())
print(max(float(np.abs(a - b).max()) for a, b in zip(*weights)))
"""


def test_fused_blas_step_with_scipys_blas_matches_plain():
    """Where NumPy's BLAS cannot be found, the fused step's products go through numba's helper: the same
    trajectory as the plain step (float64, 10 full-batch Adam steps with products large enough for BLAS)."""
    env = dict(os.environ, XPNET_NUMBA_CACHE="0", XPNET_NUMBA_BLAS="scipy")
    out = subprocess.run([sys.executable, "-c", SCIPY_BLAS_CHILD], capture_output=True, text=True, env=env,
                         check=True, timeout=600).stdout.split()
    assert float(out[-1]) < 1e-12


def test_fused_blas_path_with_shuffled_batches_matches_plain(rng):
    """Mini-batches of 24 go to BLAS (the batch loaded as rows); the short last one, 16 rows, to plain loops."""
    from xpnet.backends.numba_mlp import BLAS_MIN

    X, y = rng.standard_normal((64, 40)), rng.integers(0, 10, 64)
    assert 40 * 48 * 16 < BLAS_MIN <= 40 * 48 * 24
    fused, plain = twin_runs([40, 48, 10], "tanh", "softmax_ce", OPTIMIZERS["adam"], (X, y), steps=25, batch_size=24)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["forward", "central"])
def test_fused_finite_differences_match_plain(method, rng):
    X, y = xn.datasets.xor()
    fused, plain = twin_runs([2, 2, 1], "sigmoid", "mse", lambda: xn.optim.SGD(1.0), (X, y), steps=50,
                             gradient="finite_difference", eps=1e-4, method=method)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)


def test_fused_max_norm_matches_plain(rng):
    fused, plain = twin_runs([3, 8, 3], "relu", "softmax_ce", lambda: xn.optim.SGD(0.5), classification(rng),
                             steps=30, max_norm=0.5)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert np.all(np.linalg.norm(fused[0], axis=0) <= 0.5 + 1e-12)


def test_fused_clip_norm_matches_plain(rng):
    fused, plain = twin_runs([3, 8, 3], "tanh", "softmax_ce", lambda: xn.optim.SGD(0.5), classification(rng),
                             steps=30, clip_norm=0.05)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_float32_fused_step_stays_float32_and_close_to_plain(rng):
    fused, plain = twin_runs([3, 8, 3], "tanh", "softmax_ce", OPTIMIZERS["adam"], classification(rng), steps=20,
                             dtype="float32")
    for a, b in zip(fused, plain):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fused_state_is_the_optimizers_state(rng):
    """Switching between fused and plain steps mid-training, and state_dict(), see the same arrays."""
    X, y = classification(rng)
    net = xn.MLP([3, 5, 3], dtype="float64", backend="numba")
    opt = xn.optim.Adam(0.01)
    fused = net.compile("softmax_ce", opt)
    plain = PlainStep(net, xn.losses.get("softmax_ce"), opt)
    twin = xn.MLP([3, 5, 3], dtype="float64", backend="numpy")
    twin_step = twin.compile("softmax_ce", xn.optim.Adam(0.01))
    for i in range(6):
        (fused if i % 2 else plain)(X, y)
        twin_step(X, y)
    for a, b in zip(net.get_weights(), twin.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    assert opt.steps == 6 and len(opt.state_dict(net.backend)["state"]["m"]) == 4


def test_set_weights_after_compile_is_seen_by_the_fused_step(rng):
    X, y = classification(rng)
    net = xn.MLP([3, 4, 3], dtype="float64", backend="numba")
    step = net.compile("softmax_ce", xn.optim.SGD(0.1))
    step(X, y)
    fresh = xn.MLP([3, 4, 3], dtype="float64", seed=9, backend="numba")
    net.set_weights(fresh.get_weights())
    assert step(X, y) == pytest.approx(fresh.evaluate(X, y, "softmax_ce")["loss"], rel=1e-12)


def test_dropout_falls_back_to_the_plain_step_and_says_why():
    net = xn.MLP([2, 4, 2], dropout=0.5, backend="numba")
    step = net.compile("softmax_ce", "sgd")
    assert "plain" in repr(step) and "Dropout" in repr(step)


def test_fit_uses_the_fused_step_and_learns_xor():
    X, y = xn.datasets.xor()
    net = xn.MLP([2, 2, 1], activation="sigmoid", output_activation="sigmoid", init=xn.init.Uniform(0, 1),
                 backend="numba")
    assert "fused" in repr(net.compile("mse", xn.optim.SGD(1.0)))
    assert net.compile("mse", xn.optim.SGD(1.0)).repeat(X, y, 5000) < 0.01


def test_info_reports_threads_and_layer(numba_backend):
    info = numba_backend.info()
    assert info["threads"] >= 1 and info["threading layer"] and info["numba"]


def test_importing_xpnet_compiles_nothing_and_does_not_import_numba():
    code = "import sys, xpnet; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_cache_switch(tmp_path):
    """XPNET_NUMBA_CACHE=0 compiles without writing a cache; by default the cache lands in NUMBA_CACHE_DIR."""
    code = "import numpy as np, xpnet as xn; xn.get_backend('numba').activation(np.ones((2, 2)), 'tanh', 0.0)"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "on"))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)
    assert any(p.suffix == ".nbi" for p in (tmp_path / "on").rglob("*"))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "off"), XPNET_NUMBA_CACHE="0")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)
    assert not any(p.suffix == ".nbi" for p in (tmp_path / "off").rglob("*"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_vectorisable_exp_expm1_tanh_are_within_3_ulp_of_numpy(dtype):
    """numba_math's own exp, expm1 and tanh (written so LLVM can vectorise them) against NumPy's libm."""
    from numba import njit

    from xpnet.backends import numba_math as M

    @njit
    def apply(which, x, out):
        for i in range(x.shape[0]):
            out[i] = M.exp(x[i]) if which == 0 else M.expm1(x[i]) if which == 1 else M.tanh(x[i])

    x = np.concatenate([np.linspace(-800, 800, 20001), np.linspace(-1, 1, 20001), np.geomspace(1e-30, 1, 200),
                        -np.geomspace(1e-30, 1, 200), [np.nan, np.inf, -np.inf, 0.0, -0.0]]).astype(dtype)
    for which, reference in enumerate((np.exp, np.expm1, np.tanh)):
        out = np.empty_like(x)
        apply(which, x, out)
        with np.errstate(all="ignore"):
            want = reference(x)
        assert out.dtype == dtype
        np.testing.assert_array_equal(np.isnan(out), np.isnan(want))
        np.testing.assert_array_equal(out[np.isinf(want)], want[np.isinf(want)])
        normal = np.isfinite(want) & (np.abs(want) >= np.finfo(dtype).smallest_normal)
        ulps = np.abs(out[normal] - want[normal]) / (np.abs(want[normal]) * np.finfo(dtype).eps)
        assert ulps.max() <= 3, (reference.__name__, ulps.max())


@pytest.mark.parametrize("opt", ["momentum-l2", "rmsprop", "adam"])
def test_fused_halves_match_the_plain_step(opt, rng):
    """gradients() then update(): the compiled halves data-parallel training runs, around its Allreduce."""
    from xpnet.validation import prepare

    X, y = classification(rng, n=30)
    nets = [xn.MLP([3, 8, 5, 3], activation="tanh", dtype="float64", seed=3, backend="numba") for _ in range(2)]
    fused = nets[0].compile("softmax_ce", OPTIMIZERS[opt](), max_norm=2.0)
    plain = PlainStep(nets[1], xn.losses.get("softmax_ce"), OPTIMIZERS[opt](), max_norm=2.0)
    assert "fused" in repr(fused)
    Xd, Td = prepare(nets[0], xn.losses.get("softmax_ce"), X, y)
    for i in range(24):
        rows = np.arange(i % 5, 30, 2 + i % 3)  # batches of different sizes and rows
        (loss_f, grads_f), (loss_p, grads_p) = fused.gradients(Xd[rows], Td[rows]), plain.gradients(Xd[rows], Td[rows])
        close(loss_f, loss_p, "float64")
        for a, b in zip(grads_f, grads_p):
            close(a, b, "float64")
        # its own views into G, or new arrays (what an Allreduce gives back) that it copies in
        fused.update(grads_f if i % 2 else [g * 1.0 for g in grads_f])
        plain.update(grads_p)
    fused.step(Xd, Td)  # the whole compiled step carries on from the same state
    plain.step(Xd, Td)
    for a, b in zip(*(net.get_weights() for net in nets)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert fused.optimizer.steps == plain.optimizer.steps == 25


LABELS = {"int64": lambda y, k: y.astype(np.int64), "int32": lambda y, k: y.astype(np.int32),
          "uint8": lambda y, k: y.astype(np.uint8), "one-hot": lambda y, k: np.eye(k)[y],
          "one-hot float32": lambda y, k: np.eye(k, dtype=np.float32)[y]}


@pytest.mark.parametrize("x_dtype", ["float32", "float64"])
@pytest.mark.parametrize("labels", list(LABELS))
@pytest.mark.parametrize("net_dtype", ["float32", "float64"])
def test_fused_call_with_any_label_form_matches_plain_step(labels, x_dtype, net_dtype, rng):
    """step(X, y), the user's call (the fast input checks and the compiled one-hot), equals the plain step."""
    X, y = classification(rng, n=32, d=2, k=3)
    X, y = X.astype(x_dtype), LABELS[labels](y, 3)
    results = []
    for fused in (True, False):
        net = xn.MLP([2, 16, 16, 3], activation="tanh", dtype=net_dtype, seed=3, backend="numba")
        opt = xn.optim.SGD(0.1, momentum=0.9)
        step = net.compile("softmax_ce", opt) if fused else PlainStep(net, xn.losses.get("softmax_ce"), opt)
        assert ("fused" in repr(step)) == fused
        assert not fused or step._checked(X, y) is not None  # the fast path takes every one of these forms
        losses = [step(X, y) for _ in range(20)]
        results.append((losses, net.get_weights()))
    tol = {"rtol": 1e-4, "atol": 1e-5} if net_dtype == "float32" else {"rtol": 1e-9, "atol": 1e-12}
    np.testing.assert_allclose(results[0][0], results[1][0], **tol)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("x_dtype", ["float32", "float64"])
def test_fused_call_still_catches_bad_values_written_in_place(x_dtype, rng):
    """The fast path checks values on every call: a NaN put into X, or a label out of range put into y,
    between two calls makes the second call raise DataError."""
    X, y = classification(rng, n=32, d=2, k=2)
    X = X.astype(x_dtype)
    step = xn.MLP([2, 16, 16, 2], activation="tanh", backend="numba").compile("softmax_ce", xn.optim.SGD(0.1))
    step(X, y)
    X[5, 1] = np.nan
    with pytest.raises(xn.errors.DataError, match="finite"):
        step(X, y)
    X[5, 1] = 0.0
    step(X, y)
    y[7] = 2
    with pytest.raises(xn.errors.DataError, match=r"\[0, 2\)"):
        step(X, y)
    y[7] = -1
    with pytest.raises(xn.errors.DataError, match=r"\[0, 2\)"):
        step(X, y)
    y[7] = 1
    onehot = np.eye(2)[y]
    step(X, onehot)
    onehot[3, 0] = np.inf
    with pytest.raises(xn.errors.DataError, match="finite"):
        step(X, onehot)


NOTICE_CHILD = """
import warnings
import numpy as np
import xpnet as xn
X, y = np.random.default_rng(0).standard_normal((32, 2)), np.arange(32) % 2
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    xn.MLP([2, 3, 2], activation="relu", backend="numba").fit(X, y, loss="softmax_ce", optimizer="sgd", epochs=1,
                                                               progress=False)
    quiet = len(caught)
    step = xn.MLP([2, 3, 2], activation="tanh", backend="numba").compile("softmax_ce", "sgd")
    step(X, y)
    step(X, y)
    xn.MLP([2, 3, 2], activation="sigmoid", backend="numba").compile("mse", "adam")(X, np.eye(2)[y])
notices = [w for w in caught if issubclass(w.category, xn.errors.CompileWarning)]
print(quiet, len(notices), notices[0].filename if notices else "")
"""


def test_first_compile_says_so_once_per_process_and_not_with_progress_false():
    """With nothing cached, fit(progress=False) compiles silently; then the first compiling step(X, y) warns
    once, pointing at the caller's line, and no later compile in the process warns again."""
    env = dict(os.environ, XPNET_NUMBA_CACHE="0")
    result = subprocess.run([sys.executable, "-c", NOTICE_CHILD], capture_output=True, text=True, env=env,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "1", "<string>"]


WARM_CHILD = """
import sys, warnings
import numpy as np
import xpnet as xn
from xpnet.steps import warmup
key = (("tanh",), "softmax_ce", False, False, False)  # activations, loss, finite differences, BLAS, limits
if sys.argv[1] == "warm":
    warmup.compile_variant(key, "float32")
else:
    net, X, batch = warmup.network_for(key, "float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error", xn.errors.CompileWarning)
        net.compile("softmax_ce", "adam")(X, np.arange(batch) % 2)
"""


def test_warmup_fills_numba_cache_so_a_later_process_compiles_nothing(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), XPNET_NUMBA_CACHE="1")
    for stage in ("warm", "use"):
        result = subprocess.run([sys.executable, "-c", WARM_CHILD, stage], capture_output=True, text=True, env=env,
                                timeout=600, check=False)
        assert result.returncode == 0, result.stderr


WARM_LAYERS_CHILD = """
import sys
import numpy as np
import xpnet as xn
from numba.core import event
from xpnet.steps import warmup
if sys.argv[1] == "warm":
    warmup.compile_layer_kernels("float32", parallel=False)
else:
    net = xn.Sequential([xn.layers.Conv2D(3, 3, activation="relu"), xn.layers.MaxPool2D(2), xn.layers.Flatten(),
                         xn.layers.Dense(2)], input_shape=(1, 6, 6), backend="numba", dtype="float32")
    X, y = np.random.default_rng(1).standard_normal((5, 1, 6, 6)), np.arange(5) % 2
    with event.install_recorder("numba:compile") as compiles:
        net.fit(X, y, loss="softmax_ce", optimizer="adam", epochs=2, batch_size=2, progress=False)
        net.predict(X)
    print(len(compiles.buffer))
"""


def test_warmup_compiles_the_layers_kernels_so_a_later_convnet_compiles_nothing(tmp_path):
    """The layers' kernels warmed in one process (serial, float32): a convnet's fit and predict in the next
    compile nothing (numba's compile events, none), where with an empty cache they compile many."""
    counts = []
    for stage, cache in (("use", "empty"), ("warm", "warmed"), ("use", "warmed")):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / cache), XPNET_NUMBA_CACHE="1")
        result = subprocess.run([sys.executable, "-c", WARM_LAYERS_CHILD, stage], capture_output=True, text=True,
                                env=env, timeout=600, check=False)
        assert result.returncode == 0, result.stderr
        counts.append(result.stdout.strip())
    assert int(counts[0]) > 0 and counts[2] == "0", counts


def test_warmup_covers_the_variant_of_every_default_network():
    from xpnet.backends import numba_mlp as mlp

    keys = mlp.every_variant_key()
    for activation in kernels.ACTIVATIONS:
        for output in (None, "sigmoid"):
            for gradient in ("backprop", "finite_difference"):
                for blas in (False, True):
                    for limits in (False, True):
                        for loss in mlp.WARMUP_LOSSES[output or "identity"]:
                            key = mlp.variant_key([activation, output or "identity"], loss, gradient, blas, limits)
                            assert key in keys
