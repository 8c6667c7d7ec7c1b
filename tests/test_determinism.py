"""One seed, one backend: bitwise the same weights. Across backends: equal within the tolerance in docs/reliability.md."""
import functools

import numpy as np
import pytest

import xpnet as xn
from fakecupy import fake_cupy  # noqa: F401 (fixture)

# After the 10 epochs of `train` below, every weight array of every backend lies within
# CROSS_BACKEND_RTOL × (its largest |weight|) of NumPy's. Measured here (torch): 3e-7 (float32), 4e-16 (float64).
CROSS_BACKEND_RTOL = {"float32": 1e-5, "float64": 1e-12}
X, Y = xn.datasets.spirals(n=150, seed=0)


def train(backend, dtype="float32", seed=1, dropout=0.1):
    """Everything that draws random numbers or reduces in some order: init, shuffles, dropout, Adam."""
    net = xn.Sequential([xn.layers.Dense(2, 16, activation="tanh"), xn.layers.Dropout(dropout),
                         xn.layers.Dense(16, 16, activation="gelu_tanh"), xn.layers.Dense(16, 3)],
                        seed=0, dtype=dtype, backend=backend)
    net.fit(X, Y, loss="softmax_ce", optimizer=xn.optim.Adam(0.01), epochs=10, batch_size=16, progress=False,
            seed=seed)
    return net.get_weights()


@functools.cache
def reference(dtype, dropout):
    return train("numpy", dtype, dropout=dropout)


def comparable_dropout(backend):
    """The rule (docs/reliability.md): a backend whose masks come from another generator than NumPy's (CuPy's
    cuRAND) is compared with NumPy without dropout."""
    return 0.1 if isinstance(backend.rng(0), np.random.Generator) else 0.0


def test_same_seed_and_backend_give_bitwise_identical_weights(backend):
    first, second = train(backend), train(backend)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, train(backend, seed=2)))  # the seed matters


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_backends_agree_with_numpy_within_the_documented_tolerance(backend, dtype):
    if backend.name == "numpy":
        pytest.skip("numpy is the reference")
    dropout = comparable_dropout(backend)
    for name, got, want in zip(["W", "b"] * 3, train(backend, dtype, dropout=dropout), reference(dtype, dropout)):
        error = np.max(np.abs(got - want)) / np.max(np.abs(want))
        assert error <= CROSS_BACKEND_RTOL[dtype], f"{name}: {error:.2e} relative to its largest weight"


def test_cupy_is_compared_without_dropout_and_is_deterministic_with_it(fake_cupy):
    gpu = xn.get_backend("cupy", graphs=False)
    assert comparable_dropout(gpu) == 0.0 and comparable_dropout(xn.get_backend("numpy")) == 0.1
    test_same_seed_and_backend_give_bitwise_identical_weights(gpu)
    with_dropout = train(gpu, "float64")
    assert any(np.max(np.abs(a - b)) > 1e-6 for a, b in zip(with_dropout, reference("float64", 0.1)))  # other masks
    for got, want in zip(train(gpu, "float64", dropout=0.0), reference("float64", 0.0)):
        assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= CROSS_BACKEND_RTOL["float64"]
