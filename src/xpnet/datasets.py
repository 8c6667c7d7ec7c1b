"""Built-in data: seeded toy generators, scikit-learn's digits, MNIST from local IDX files, and preprocessing.

Every generator returns ``(X, y)`` as NumPy arrays: X float64 of shape
(n, features), y integer class labels of shape (n,) (XOR: float targets
of shape (4, 1)).
"""
import gzip
import os
import struct

import numpy as np

from .errors import BackendUnavailableError, ConfigError, DataError


def xor():
    """The four XOR points and their targets, the articles' data set.

    >>> X, y = xor()
    >>> y.ravel().tolist()
    [0.0, 1.0, 1.0, 0.0]
    """
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return X, np.array([[0.0], [1.0], [1.0], [0.0]])


def _check_n(n, classes=1):
    if not isinstance(n, (int, np.integer)) or n < classes:
        raise ConfigError(f"n must be an integer ≥ {classes}, got {n!r}")


def spirals(n=1000, classes=2, noise=0.2, turns=1.0, seed=0):
    """``classes`` interleaved spiral arms in 2-D, ``n`` points in all."""
    _check_n(n, classes)
    if not isinstance(classes, int) or classes < 2:
        raise ConfigError(f"classes must be an integer ≥ 2, got {classes!r}")
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    radius = rng.uniform(0.05, 1.0, n)
    angle = 2 * np.pi * (turns * radius + y / classes) + rng.normal(0.0, noise / 4, n) * np.pi
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return X, y


def circles(n=1000, noise=0.1, factor=0.5, seed=0):
    """Two concentric circles (inner radius ``factor``), class 1 inside."""
    _check_n(n, 2)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    angle = rng.uniform(0.0, 2 * np.pi, n)
    radius = np.where(y == 1, factor, 1.0)
    X = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1) + rng.normal(0.0, noise, (n, 2))
    return X, y


def moons(n=1000, noise=0.1, seed=0):
    """Two interleaving half circles."""
    _check_n(n, 2)
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    angle = rng.uniform(0.0, np.pi, n)
    X = np.where(y[:, None] == 0,
                 np.stack([np.cos(angle), np.sin(angle)], axis=1),
                 np.stack([1.0 - np.cos(angle), 0.5 - np.sin(angle)], axis=1))
    return X + rng.normal(0.0, noise, (n, 2)), y


def digits(images=False):
    """scikit-learn's bundled 8×8 digits: 1797 samples, 64 features in [0, 16], 10 classes.

    ``images=True`` gives X as (1797, 1, 8, 8) images, channels first, for convolutional layers.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise BackendUnavailableError("the digits data set comes with scikit-learn: pip install -e '.[sklearn]'") \
            from None
    data = load_digits()
    X = data.data.astype(np.float64)
    return X.reshape(-1, 1, 8, 8) if images else X, data.target.astype(np.int64)


MNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path):
    """An array from an IDX file (MNIST's format), plain or gzipped."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from None
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path} is truncated: header says {shape}, found {body.size} values")
    return body.reshape(shape)


def mnist(path, split="train", images=False):
    """MNIST from IDX files you already have in folder ``path`` (no download).

    Returns X (n, 784) scaled to [0, 1] and y (n,) labels. The folder must hold
    ``train-images-idx3-ubyte``/``train-labels-idx1-ubyte`` (or ``t10k-...`` for
    split="test"), each plain or with a ``.gz`` suffix. ``images=True`` gives X as (n, 1, 28, 28).
    """
    if split not in MNIST_FILES:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    arrays = []
    for stem in MNIST_FILES[split]:
        found = [os.path.join(path, stem + ext) for ext in ("", ".gz") if os.path.exists(os.path.join(path, stem + ext))]
        if not found:
            raise DataError(f"MNIST file {stem} (or {stem}.gz) not found in {os.path.abspath(path)}; put the four IDX "
                            f"files from the MNIST distribution there: {', '.join(sum(MNIST_FILES.values(), ()))}")
        arrays.append(read_idx(found[0]))
    pixels, labels = arrays
    if len(pixels) != len(labels):
        raise DataError(f"MNIST {split}: {len(pixels)} images but {len(labels)} labels")
    X = pixels.reshape(len(pixels), -1).astype(np.float64) / 255.0
    return X.reshape(-1, 1, 28, 28) if images else X, labels.astype(np.int64)


# ---- preprocessing -------------------------------------------------------------------


class Standardizer:
    """Zero mean, unit variance per feature, fitted on training data only.

    >>> scaler = Standardizer().fit(np.array([[0.0], [2.0]]))
    >>> scaler.transform(np.array([[1.0]])).tolist()
    [[0.0]]
    """

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)  # a constant feature stays at 0
        return self

    def transform(self, X):
        return (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_

    def fit_transform(self, X):
        return self.fit(X).transform(X)


class MinMaxScaler:
    """Each feature mapped to [0, 1] by the training data's min and max."""

    def fit(self, X):
        X = np.asarray(X, dtype=np.float64)
        self.min_ = X.min(axis=0)
        span = X.max(axis=0) - self.min_
        self.scale_ = np.where(span > 0, span, 1.0)
        return self

    def transform(self, X):
        return (np.asarray(X, dtype=np.float64) - self.min_) / self.scale_

    def fit_transform(self, X):
        return self.fit(X).transform(X)


def train_val_test_split(X, y, val=0.15, test=0.15, seed=0):
    """Seeded shuffle split into (X_train, y_train), (X_val, y_val), (X_test, y_test)."""
    X, y = np.asarray(X), np.asarray(y)
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise ConfigError(f"val and test fractions must be in [0, 1) and sum below 1, got val={val}, test={test}")
    if len(X) != len(y):
        raise DataError(f"X and y must have the same number of samples, got {len(X)} and {len(y)}")
    order = np.random.default_rng(seed).permutation(len(X))
    n_test, n_val = int(round(test * len(X))), int(round(val * len(X)))
    test_idx, val_idx, train_idx = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    return (X[train_idx], y[train_idx]), (X[val_idx], y[val_idx]), (X[test_idx], y[test_idx])


def one_hot(y, k=None):
    """Integer labels (n,) → one-hot rows (n, k)."""
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and (y.min() < 0 or not np.all(y == np.round(y)))):
        raise DataError(f"one_hot needs 1-D non-negative integer labels, got shape {y.shape}")
    k = int(y.max()) + 1 if k is None else k
    if y.size and y.max() >= k:
        raise DataError(f"labels must be below k={k}, got {int(y.max())}")
    return np.eye(k)[y.astype(np.int64)]
