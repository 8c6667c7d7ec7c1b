"""No hidden host round-trips: count every copy between host and device over whole fits.

On the Array API path (array-api-strict on a fake device) and on the fake GPU,
every way an array reaches the host (``float()``, ``bool()``, ``int()``,
``__array__``, ``__dlpack__``, the buffer protocol) and every host array that
becomes a device array (``asarray``) is counted. A fit must move its data once,
a shuffle order once per epoch, and read back only the per-epoch numbers: the
batch losses, and the loss and accuracy of each evaluation. None of this may
grow with the number of batches.
"""
import collections

import pytest
import array_api_strict as strict

import xpnet as xn

from fakecupy import fake_cupy  # noqa: F401 (fixture)

ArrayType = type(strict.asarray(0.0))
TO_HOST = ("__float__", "__int__", "__bool__", "__index__", "__complex__", "__array__", "__dlpack__", "__buffer__")


@pytest.fixture
def transfers(monkeypatch):
    counts = collections.Counter()
    for name in TO_HOST:
        original = getattr(ArrayType, name, None)
        if original is None:
            continue

        def to_host(self, *args, _original=original, _name=name, **kwargs):
            counts["to_host"] += 1
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(ArrayType, name, to_host)
    original_asarray = strict.asarray

    def asarray(obj, *args, **kwargs):
        if not isinstance(obj, ArrayType):
            counts["to_device"] += 1
        return original_asarray(obj, *args, **kwargs)

    monkeypatch.setattr(strict, "asarray", asarray)
    return counts


def backends(kind):
    if kind == "array_api_strict":
        return xn.get_backend("array_api_strict", device="device1")
    return xn.get_backend("cupy", graphs=kind == "cupy-graphs")


@pytest.mark.parametrize("kind", ["array_api_strict", "cupy", "cupy-graphs"])
@pytest.mark.parametrize("classifier", [False, True], ids=["regression", "classifier-with-validation"])
def test_a_fit_moves_data_once_and_reads_back_per_epoch_only(fake_cupy, transfers, kind, classifier):
    X, y = xn.datasets.moons(n=48, seed=0)
    epochs = 3
    counts = {}
    for batch_size in (48, 8):  # one batch per epoch, then six
        net = xn.MLP([2, 6, 2 if classifier else 1], backend=backends(kind), seed=0)
        extra = dict(validation_data=(X[:16], y[:16])) if classifier else {}
        transfers.clear()
        net.fit(X, y if classifier else y.astype(float), loss="softmax_ce" if classifier else "mse",
                optimizer=xn.optim.Adam(0.01), epochs=epochs, batch_size=batch_size, progress=False, **extra)
        counts[batch_size] = (transfers["to_device"], transfers["to_host"])
    data_arrays = 4 if classifier else 2  # X and targets, plus the validation pair
    reads_per_epoch = 1 + (2 + 2 if classifier else 0)  # batch losses; loss and accuracy of train and validation
    assert counts[48] == counts[8] == (data_arrays + epochs, reads_per_epoch * epochs)


def test_the_count_catches_a_read_back_inside_a_step(transfers, monkeypatch):
    """The instrument itself: a step that reads its loss on the host shows up once per batch."""
    from xpnet.steps import PlainStep

    step = PlainStep.step
    monkeypatch.setattr(PlainStep, "step", lambda self, X, T: self.net.backend.asarray(float(step(self, X, T))))
    X, y = xn.datasets.moons(n=48, seed=0)
    net = xn.MLP([2, 6, 1], backend=backends("array_api_strict"), seed=0)
    net.fit(X, y.astype(float), loss="mse", epochs=2, batch_size=8, progress=False)
    assert transfers["__float__"] == 2 * 6 and transfers["to_host"] == 2 * 6 + 2
