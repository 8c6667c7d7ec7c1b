import gzip

import numpy as np
import pytest

import xpnet as xn
from xpnet import datasets


@pytest.mark.parametrize("make", [datasets.spirals, datasets.circles, datasets.moons])
def test_generators_are_seeded_and_balanced(make):
    X, y = make(n=300, seed=3)
    assert X.shape == (300, 2) and y.shape == (300,) and X.dtype == np.float64
    np.testing.assert_array_equal(make(n=300, seed=3)[0], X)
    assert not np.array_equal(make(n=300, seed=4)[0], X)
    assert np.bincount(y).tolist() == [150, 150]


def test_spirals_with_k_classes():
    X, y = datasets.spirals(n=300, classes=3)
    assert sorted(set(y.tolist())) == [0, 1, 2]
    with pytest.raises(xn.errors.ConfigError):
        datasets.spirals(classes=1)


def test_digits():
    pytest.importorskip("sklearn")
    X, y = datasets.digits()
    assert X.shape == (1797, 64) and set(y.tolist()) == set(range(10))


def write_idx(path, array, gz=False):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    (gzip.open if gz else open)(path, "wb").write(header + array.astype(np.uint8).tobytes())


def test_mnist_reads_plain_and_gzipped_idx(tmp_path):
    images = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images, gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1, 7, 3]))
    X, y = datasets.mnist(tmp_path)
    assert X.shape == (3, 784) and X.max() <= 1.0 and y.tolist() == [1, 7, 3]
    np.testing.assert_allclose(X[0], images[0].ravel() / 255)


def test_mnist_says_which_files_go_where(tmp_path):
    with pytest.raises(xn.errors.DataError, match="train-images-idx3-ubyte.*not found in"):
        datasets.mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") * 3 + b"xx")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([1]))
    with pytest.raises(xn.errors.DataError, match="truncated"):
        datasets.mnist(tmp_path)


def test_scalers_fit_on_training_data_only():
    train, test = np.array([[0.0, 5.0], [2.0, 5.0]]), np.array([[4.0, 6.0]])
    std = datasets.Standardizer().fit(train)
    np.testing.assert_allclose(std.transform(train), [[-1, 0], [1, 0]])
    np.testing.assert_allclose(std.transform(test), [[3, 1]])  # the constant feature is centred, not divided by 0
    mm = datasets.MinMaxScaler().fit(train)
    np.testing.assert_allclose(mm.transform(test), [[2, 1]])


def test_train_val_test_split_partitions_the_data():
    X, y = np.arange(100).reshape(50, 2), np.arange(50)
    (a, ya), (b, yb), (c, yc) = datasets.train_val_test_split(X, y, val=0.2, test=0.1, seed=0)
    assert (len(a), len(b), len(c)) == (35, 10, 5)
    assert sorted(np.concatenate([ya, yb, yc]).tolist()) == list(range(50))
    np.testing.assert_array_equal(a[:, 0] // 2, ya)


def test_one_hot():
    np.testing.assert_array_equal(datasets.one_hot([2, 0]), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(xn.errors.DataError):
        datasets.one_hot([0, 3], k=3)
