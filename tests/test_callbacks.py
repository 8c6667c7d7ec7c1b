"""Callbacks: the hooks fit calls and when, stopping, a raising callback, the built-in loggers and checkpoints."""
import csv
import json

import numpy as np
import pytest

import xpnet as xn
from xpnet import checkpoint
from xpnet.errors import ConfigError

CB = xn.callbacks


def data():
    X, y = xn.datasets.spirals(n=60, seed=0)
    return X, y


def train(epochs=4, net=None, lr=0.01, **options):
    X, y = data()
    net = net or xn.MLP([2, 8, 2], activation="tanh", backend="numpy", seed=0)
    hist = net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.Adam(lr), epochs=epochs, batch_size=16,
                   progress=False, seed=1, **options)
    return net, hist


class Recorder:
    """A duck-typed callback (no base class) that notes every call."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, net, history):
        self.calls.append(("train_begin", history.epochs))

    def on_epoch_begin(self, epoch):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs):
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, history):
        self.calls.append(("train_end", history.epochs))


def test_hooks_run_in_order_with_the_epochs_metrics():
    recorder = Recorder()
    train(epochs=2, callbacks=[recorder], validation_split=0.25)
    names = ["accuracy", "loss", "lr", "samples_per_sec", "val_accuracy", "val_loss"]
    assert recorder.calls == [("train_begin", 0), ("epoch_begin", 1), ("epoch_end", 1, names), ("epoch_begin", 2),
                              ("epoch_end", 2, names), ("train_end", 2)]


@pytest.mark.parametrize("how", ["return True", "stop()"])
def test_a_callback_stops_training_after_the_epoch(how):
    class Stopper(CB.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                return True if how == "return True" else self.stop()

    _, hist = train(epochs=5, callbacks=[Stopper()])
    assert hist.epochs == 2 and hist.stopped_early


def test_a_raising_callback_leaves_the_last_completed_epoch_and_its_own_message():
    two, two_hist = train(epochs=2)

    def fail(epoch, logs):
        if epoch == 3:
            raise RuntimeError("disk full (from the callback)")

    net = xn.MLP([2, 8, 2], activation="tanh", backend="numpy", seed=0)
    with pytest.raises(RuntimeError) as info:
        train(epochs=5, net=net, callbacks=[CB.LambdaCallback(on_epoch_end=fail)])
    assert str(info.value) == "disk full (from the callback)"
    for a, b in zip(net.get_weights(), two.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_callback_with_no_hooks_is_a_config_error():
    with pytest.raises(ConfigError, match=r"callbacks\[1\] \(int\) has none of the methods on_train_begin"):
        train(callbacks=[Recorder(), 3])
    with pytest.raises(ConfigError, match="callbacks must be a list"):
        train(callbacks=Recorder())


def test_early_stopping_as_a_callback_is_early_stopping_as_an_argument():
    results = [train(epochs=30, validation_split=0.25, **options)
               for options in ({"early_stopping": CB.EarlyStopping(patience=2, min_delta=0.05)},
                               {"callbacks": [CB.EarlyStopping(patience=2, min_delta=0.05)]})]
    (net, hist), (net2, hist2) = results
    assert hist.stopped_early and hist.epochs < 30
    assert hist.history["val_loss"] == hist2.history["val_loss"]
    assert hist.best_epoch == hist2.best_epoch == hist.epochs - 2
    for a, b in zip(net.get_weights(), net2.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ConfigError, match="give one EarlyStopping"):
        train(early_stopping=3, callbacks=[CB.EarlyStopping()])


def test_csv_logger_writes_a_row_per_epoch_and_appends_on_resume(tmp_path):
    log, run = tmp_path / "log.csv", tmp_path / "run"
    train(epochs=2, callbacks=[CB.CSVLogger(log)], checkpoint=run, every=2)
    train(epochs=3, callbacks=[CB.CSVLogger(log)], checkpoint=run, every=2, resume=run)  # a row past the checkpoint
    _, hist = train(epochs=4, callbacks=[CB.CSVLogger(log)], checkpoint=run, resume=run / "epoch-000002.npz")
    rows = list(csv.DictReader(open(log, newline="")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["loss"]) for r in rows] == hist.history["loss"]
    _, fresh = train(epochs=1, callbacks=[CB.CSVLogger(log)])  # a new run starts the file again
    assert len(list(csv.DictReader(open(log, newline="")))) == 1


def test_model_checkpoint_keeps_the_best_across_a_resume(tmp_path):
    """A resumed run only replaces the best file with a net better than every epoch in the history."""
    run, options = tmp_path / "run", dict(lr=0.3, validation_split=0.25)
    best = lambda path: CB.ModelCheckpoint(path, monitor="val_loss", save_best_only=True)  # noqa: E731
    train(epochs=2, callbacks=[best(tmp_path / "best.npz")], checkpoint=run, every=2, **options)
    _, resumed = train(epochs=6, callbacks=[best(tmp_path / "best.npz")], resume=run, **options)
    _, straight = train(epochs=6, callbacks=[best(tmp_path / "straight.npz")], **options)
    assert resumed.history["val_loss"] == straight.history["val_loss"]
    assert np.argmin(straight.history["val_loss"]) < 2  # the best epoch is before the resume: forgetting it fails
    _, saved, _ = checkpoint.load(tmp_path / "best.npz")
    _, expected, _ = checkpoint.load(tmp_path / "straight.npz")
    for name in expected:
        np.testing.assert_array_equal(saved[name], expected[name])


def test_json_lines_logger_writes_one_object_per_epoch(tmp_path):
    log = tmp_path / "logs" / "run.jsonl"
    _, hist = train(epochs=3, callbacks=[CB.JSONLinesLogger(log)])
    records = [json.loads(line) for line in open(log)]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert [r["lr"] for r in records] == hist.history["lr"] == [0.01] * 3


def test_model_checkpoint_keeps_the_best_net(tmp_path):
    best = tmp_path / "best.npz"
    every = str(tmp_path / "net-{epoch:02d}.npz")
    net, hist = train(epochs=6, lr=0.3, validation_split=0.25, callbacks=[  # a rate that makes val_loss jump
        CB.ModelCheckpoint(best, monitor="val_loss", save_best_only=True), CB.ModelCheckpoint(every)])
    assert sorted(p.name for p in tmp_path.glob("net-*.npz")) == [f"net-{e:02d}.npz" for e in range(1, 7)]
    best_epoch = int(np.argmin(hist.history["val_loss"])) + 1
    _, saved, _ = checkpoint.load(best)
    _, at_best, _ = checkpoint.load(tmp_path / f"net-{best_epoch:02d}.npz")
    _, last, _ = checkpoint.load(tmp_path / "net-06.npz")
    assert saved.keys() == at_best.keys() and best_epoch < 6
    for name in saved:
        np.testing.assert_array_equal(saved[name], at_best[name])
    assert not all(np.array_equal(saved[name], last[name]) for name in saved)
    with pytest.raises(ConfigError, match="ModelCheckpoint on val_loss needs validation_data"):
        train(callbacks=[CB.ModelCheckpoint(best, monitor="val_loss")])
    with pytest.raises(ConfigError, match="monitor must be one of"):
        CB.ModelCheckpoint(best, monitor="val_acc")


def test_no_callbacks_leave_the_fused_epoch_as_one_compiled_call(monkeypatch):
    pytest.importorskip("numba")
    from xpnet.steps import FusedMLPStep

    calls = []
    original = FusedMLPStep._train
    monkeypatch.setattr(FusedMLPStep, "_train", lambda self, *a: calls.append(a[3]) or original(self, *a))
    X, y = data()
    xn.MLP([2, 8, 2], backend="numba", seed=0).fit(X, y, loss="softmax_ce", epochs=3, batch_size=8, progress=False,
                                                   callbacks=[CB.LambdaCallback(on_epoch_end=lambda e, logs: None)])
    assert calls == [8, 8, 8]  # one call per epoch, every batch inside it
