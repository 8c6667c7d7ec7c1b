"""Checks on user data at the public boundary, with messages that say what was expected and what came."""
import numbers

import numpy as np

from .errors import ConfigError, DataError, DataTypeError, ShapeError


def as_numbers(a, what):
    """``a`` as a host NumPy array of real numbers (bool, int or float)."""
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as e:  # ragged lists and the like
        raise DataTypeError(f"{what} must be a rectangular array of numbers, got {type(a).__name__} ({e})") from None
    if arr.dtype.kind not in "biuf":
        hint = " (convert it with .astype(float) if it holds numbers)" if arr.dtype.kind == "O" else ""
        raise DataTypeError(f"{what} must hold real numbers (bool, int or float), got dtype {arr.dtype}{hint}")
    return arr


def check_finite(arr, what):
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(f"{what} must be finite, got {arr[tuple(bad)]} at index {tuple(int(i) for i in bad)}")


def check_X(X, input_shape=None, what="X"):
    """X as an array of finite numbers of shape (samples, *input_shape); an int input_shape means (features,).

    Host data comes back as NumPy; an array of a backend (one with
    ``__array_namespace__`` that is not NumPy's) is only shape-checked, so
    checking never copies device data to the host.
    """
    if (hasattr(X, "__array_namespace__") or hasattr(X, "__dlpack__")) and not isinstance(X, np.ndarray):
        shape = tuple(X.shape)
    else:
        X = as_numbers(X, what)
        shape = X.shape
    input_shape = (input_shape,) if isinstance(input_shape, int) else input_shape
    rank = 2 if input_shape is None else len(input_shape) + 1
    if len(shape) != rank:
        hint = " (one sample per row: use X.reshape(-1, 1) for one feature, or X.reshape(1, -1) for one sample)" \
            if len(shape) == 1 else ""
        if rank == 2:
            raise ShapeError(f"{what} must be 2-D (samples, features), got shape {shape}{hint}")
        raise ShapeError(f"{what} must be {rank}-D (samples, {', '.join(map(str, input_shape))}), got shape {shape}")
    if input_shape is not None and tuple(shape[1:]) != tuple(input_shape):
        if rank == 2:
            raise ShapeError(f"{what} has {shape[1]} features per sample, the network expects {input_shape[0]}")
        raise ShapeError(f"{what} has samples of shape {tuple(shape[1:])}, the network expects {tuple(input_shape)}")
    if isinstance(X, np.ndarray):
        check_finite(X, what)
    return X


def check_Xy(X, y, input_shape):
    """Training data: X (n, *input_shape) and y with n rows, both finite and non-empty."""
    X = check_X(X, input_shape)
    y = as_numbers(y, "y")
    if y.ndim not in (1, 2):
        raise ShapeError(f"y must be 1-D labels or 2-D targets, got shape {y.shape}")
    if len(X) != len(y):
        raise ShapeError(f"X and y must have the same number of samples, got {len(X)} and {len(y)}")
    if len(X) == 0:
        raise DataError("cannot train on empty data: X has 0 samples")
    check_finite(y, "y")
    return X, y


def check_int(name, value, low):
    """``value`` as an int ≥ ``low``, else ConfigError (bools and floats are refused)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}")
    return int(value)


def check_seed(seed):
    """A seed for ``numpy.random.default_rng``: None (fresh entropy) or an integer ≥ 0."""
    return None if seed is None else check_int("seed", seed, 0)


def prepare(net, loss, X, y):
    """Checked (X, targets) as backend arrays in the net's dtype; backend arrays pass through unchecked."""
    backend = net.backend
    dtype = backend.dtype(net.dtype)
    if backend.is_native(X) and backend.is_native(y) and not isinstance(X, np.ndarray):
        return backend.asarray(X, dtype=dtype), backend.asarray(y, dtype=dtype)
    X, y = check_Xy(X, y, net.input_shape)
    return backend.asarray(X, dtype=dtype), backend.asarray(prepare_targets(net, loss, y), dtype=dtype)


def prepare_targets(net, loss, y):
    """Host targets checked by ``loss`` for the outputs of ``net`` (the losses take (samples, outputs))."""
    if len(net.output_shape) != 1:
        raise ShapeError(f"the losses take outputs of shape (samples, outputs); this network's samples come out "
                         f"as {net.output_shape}: end it with xn.layers.Flatten() or a Dense layer")
    return loss.prepare(y, net.n_outputs)
