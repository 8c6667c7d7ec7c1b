"""Every error class is raised by a bad input, with a message naming what was expected and what came."""
import numpy as np
import pytest

import xpnet as xn
from xpnet import errors

X, Y = np.zeros((4, 2)), np.zeros(4)
NET = lambda: xn.MLP([2, 3, 2])  # noqa: E731

BAD_INPUTS = [
    # (description, call, error class, message fragment)
    ("X and y of different lengths", lambda: NET().fit(X, Y[:3], loss="softmax_ce", progress=False),
     errors.ShapeError, "same number of samples, got 4 and 3"),
    ("wrong feature count", lambda: NET().predict(np.zeros((4, 3))), errors.ShapeError, "3 features per sample, the network expects 2"),
    ("1-D X", lambda: NET().predict(np.zeros(2)), errors.ShapeError, "must be 2-D"),
    ("3-D X", lambda: NET().predict(np.zeros((1, 2, 2))), errors.ShapeError, "got shape (1, 2, 2)"),
    ("string X", lambda: NET().predict(np.array([["a", "b"]])), errors.DataTypeError, "real numbers"),
    ("complex X", lambda: NET().predict(np.zeros((1, 2), complex)), errors.DataTypeError, "complex128"),
    ("ragged X", lambda: NET().predict([[1.0, 2.0], [1.0]]), errors.DataTypeError, "rectangular"),
    ("NaN in X", lambda: NET().fit(np.array([[0, np.nan]] * 4), Y, loss="softmax_ce", progress=False),
     errors.DataError, "must be finite, got nan at index (0, 1)"),
    ("inf in y", lambda: xn.MLP([2, 1]).fit(X, np.array([0, 1, np.inf, 0]), progress=False), errors.DataError,
     "y must be finite"),
    ("label outside [0, k)", lambda: NET().fit(X, np.array([0, 1, 2, 0]), loss="softmax_ce", progress=False),
     errors.DataError, "[0, 2)"),
    ("non-integer label", lambda: NET().fit(X, np.array([0, 0.5, 1, 0]), loss="softmax_ce", progress=False),
     errors.DataError, "whole numbers"),
    ("BCE target outside [0, 1]", lambda: xn.MLP([2, 1]).fit(X, np.array([0, 2, 1, 0]), loss="bce", progress=False),
     errors.DataError, "[0, 1]"),
    ("empty data", lambda: NET().fit(np.zeros((0, 2)), np.zeros(0), progress=False), errors.DataError, "empty"),
    ("batch_size 0", lambda: NET().fit(X, Y, loss="softmax_ce", batch_size=0, progress=False), errors.ConfigError,
     "batch_size must be an integer ≥ 1, got 0"),
    ("negative epochs", lambda: NET().fit(X, Y, loss="softmax_ce", epochs=-1, progress=False), errors.ConfigError,
     "epochs must be an integer ≥ 0"),
    ("lr ≤ 0", lambda: xn.optim.SGD(lr=0), errors.ConfigError, "lr must be a number in (0.0, inf)"),
    ("lr NaN", lambda: xn.optim.Adam(lr=float("nan")), errors.ConfigError, "got nan"),
    ("dropout p = 1", lambda: xn.layers.Dropout(1.0), errors.ConfigError, "[0, 1)"),
    ("unknown activation", lambda: xn.MLP([2, 2], activation="rleu"), errors.ConfigError, "Did you mean 'relu'"),
    ("unknown loss", lambda: NET().fit(X, Y, loss="softmax", progress=False), errors.ConfigError,
     "Did you mean 'softmax_ce'"),
    ("unknown optimiser", lambda: NET().fit(X, Y, optimizer="adamw", progress=False), errors.ConfigError,
     "Did you mean 'adam'"),
    ("unknown initialiser", lambda: xn.MLP([2, 2], init="glorot"), errors.ConfigError, "unknown initializer"),
    ("unknown dtype", lambda: xn.MLP([2, 2], dtype="float16"), errors.ConfigError, "float16"),
    ("set_weights count", lambda: NET().set_weights([np.zeros((2, 3))]), errors.ShapeError, "expected 4 arrays"),
    ("not installed backend", lambda: xn.use("cupy") if "cupy" not in xn.backends.available() else
     (_ for _ in ()).throw(errors.BackendUnavailableError("cupy usable here; pip install")),
     errors.BackendUnavailableError, "pip install"),
    ("diverging loss", lambda: xn.MLP([2, 8, 1], activation="relu").fit(
        np.full((8, 2), 1e3), np.full(8, 1e3), loss="mse", optimizer=xn.optim.SGD(10.0), epochs=30, progress=False),
     errors.DivergenceError, "epoch"),
    ("missing checkpoint", lambda: xn.load("/nonexistent/net.npz"), errors.CheckpointError, "cannot read"),
]


@pytest.mark.parametrize("call,cls,fragment", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gives_a_readable_xpnet_error(call, cls, fragment):
    with np.errstate(all="ignore"), pytest.raises(cls) as info:
        call()
    assert fragment in str(info.value)


def test_every_error_class_is_raised_by_some_bad_input():
    raised = {b[2] for b in BAD_INPUTS} | {errors.DeviceError}  # DeviceError: test_backends
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.XpnetError) and cls is not errors.XpnetError:
            assert cls in raised, cls.__name__


def test_errors_subclass_the_matching_builtins():
    assert issubclass(errors.ShapeError, ValueError) and issubclass(errors.DataError, ValueError)
    assert issubclass(errors.DataTypeError, TypeError) and issubclass(errors.DeviceError, TypeError)
    assert issubclass(errors.BackendUnavailableError, ImportError)
    assert issubclass(errors.DivergenceError, ArithmeticError)


@pytest.mark.parametrize("content", [b"", b"not a zip file at all", b"PK\x03\x04truncated"], ids=["empty", "garbage", "truncated"])
def test_corrupt_checkpoints_raise_checkpoint_error(tmp_path, content):
    path = tmp_path / "bad.npz"
    path.write_bytes(content)
    with pytest.raises(errors.CheckpointError, match="bad.npz"):
        xn.load(path)


def test_foreign_and_pickled_npz_are_refused(tmp_path):
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(errors.CheckpointError, match="not an xpnet checkpoint"):
        xn.load(tmp_path / "foreign.npz")
    np.savez(tmp_path / "pickled.npz", __xpnet_header__=np.array([{"format": "x"}], dtype=object))
    with pytest.raises(errors.CheckpointError, match="pickle"):
        xn.load(tmp_path / "pickled.npz")
