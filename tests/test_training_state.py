"""Ctrl-C, periodic checkpoints and resume: a run that is stopped and resumed ends exactly as one that never stopped."""
import io
import json
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="the fuzz test needs Hypothesis (pip install -e '.[dev]')")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

import xpnet as xn

X, Y = xn.datasets.moons(n=96, seed=0)


def make_net(backend="numpy"):
    return xn.Sequential([xn.layers.Dense(2, 12, activation="tanh"), xn.layers.Dropout(0.2),
                          xn.layers.Dense(12, 2)], seed=0, backend=backend)


FIT = dict(loss="softmax_ce", batch_size=16, validation_split=0.25, early_stopping=xn.EarlyStopping(patience=100),
           progress=False, seed=3)


def train(epochs, backend="numpy", optimizer=None, **kwargs):
    net, opt = make_net(backend), optimizer or xn.optim.Adam(0.01)
    hist = net.fit(X, Y, optimizer=opt, epochs=epochs, **{**FIT, **kwargs})
    return net, opt, hist


def assert_same_run(a, b):
    """Same weights, optimiser state and History (bar the timings), bit for bit."""
    (net_a, opt_a, hist_a), (net_b, opt_b, hist_b) = a, b
    for u, v in zip(net_a.get_weights(), net_b.get_weights()):
        np.testing.assert_array_equal(u, v)
    state_a, state_b = opt_a.state_dict(net_a.backend), opt_b.state_dict(net_b.backend)
    assert state_a["steps"] == state_b["steps"] and state_a["state"].keys() == state_b["state"].keys()
    for name in state_a["state"]:
        for u, v in zip(state_a["state"][name], state_b["state"][name]):
            np.testing.assert_array_equal(u, v)
    timing = "samples_per_sec"
    assert {k: v for k, v in hist_a.history.items() if k != timing} == \
        {k: v for k, v in hist_b.history.items() if k != timing}
    assert (hist_a.epochs, hist_a.best_epoch) == (hist_b.epochs, hist_b.best_epoch)


def test_resume_continues_bitwise_like_an_uninterrupted_run(backend, tmp_path):
    """Dropout, shuffling, a validation split, Adam and early-stopping bookkeeping all carry over."""
    whole = train(8, backend)
    train(5, backend, checkpoint=tmp_path, every=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-000003.npz", "epoch-000005.npz"]
    net, opt = make_net(backend), xn.optim.Adam(0.01)
    hist = net.fit(X, Y, optimizer=opt, epochs=8, resume=tmp_path / "epoch-000003.npz", **FIT)
    assert_same_run((net, opt, hist), whole)


def test_resume_from_a_folder_takes_its_latest_checkpoint(tmp_path):
    train(4, checkpoint=tmp_path, every=2, optimizer=xn.optim.SGD(0.1, momentum=0.9))
    net, opt = make_net(), xn.optim.SGD(0.1, momentum=0.9)
    hist = net.fit(X, Y, optimizer=opt, epochs=6, resume=tmp_path, **FIT)
    assert_same_run((net, opt, hist), train(6, optimizer=xn.optim.SGD(0.1, momentum=0.9)))


def test_periodic_checkpoints_hold_that_epochs_weights_and_history(tmp_path):
    net, _, hist = train(5, checkpoint=tmp_path, every=2, early_stopping=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-000002.npz", "epoch-000004.npz", "epoch-000005.npz"]
    for epoch in (2, 4, 5):
        saved = xn.load(tmp_path / f"epoch-{epoch:06d}.npz")  # a training checkpoint is also a network file
        for u, v in zip(saved.get_weights(), train(epoch, early_stopping=None)[0].get_weights()):
            np.testing.assert_array_equal(u, v)
        _, _, extra = xn.checkpoint.load(tmp_path / f"epoch-{epoch:06d}.npz")
        assert extra["epoch"] == epoch and extra["history"]["loss"] == hist.history["loss"][:epoch]


def test_resume_after_early_stopping_stops_at_once_with_the_best_weights(tmp_path):
    stopper = xn.EarlyStopping(patience=2, min_delta=10.0)  # nothing improves by 10: stops after epoch 3
    net, _, hist = train(20, early_stopping=stopper, checkpoint=tmp_path, every=100)
    assert hist.stopped_early and hist.epochs == 3 and hist.best_epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-000003.npz"]  # written when fit ended
    again = make_net()
    resumed = again.fit(X, Y, optimizer=xn.optim.Adam(0.01), epochs=20, resume=tmp_path,
                        **{**FIT, "early_stopping": stopper})
    assert resumed.stopped_early and resumed.epochs == 3
    for u, v in zip(again.get_weights(), net.get_weights()):
        np.testing.assert_array_equal(u, v)


class InterruptAt(xn.optim.Adam):
    """Adam that raises KeyboardInterrupt (as Ctrl-C would) in the middle of its ``at``-th step."""

    def __init__(self, at, lr=0.01):
        super().__init__(lr)
        self.at = at

    def update(self, backend, param, grad, lr, m, v):
        super().update(backend, param, grad, lr, m, v)
        if self.steps == self.at and param.shape == (12,):  # some parameters updated, others not yet
            raise KeyboardInterrupt


def test_ctrl_c_rolls_back_to_the_last_completed_epoch_and_can_be_resumed(tmp_path):
    steps_per_epoch = 5  # 72 training samples in batches of 16
    net, opt = make_net(), InterruptAt(at=3 * steps_per_epoch + 2)  # in epoch 4, between two parameters' updates
    hist = net.fit(X, Y, optimizer=opt, epochs=10, checkpoint=tmp_path, every=100, **{**FIT, "early_stopping": None})
    assert hist.interrupted and hist.epochs == 3 and len(hist.history["loss"]) == 3
    assert_same_run((net, opt, hist), train(3, early_stopping=None))  # the optimiser rolled back too
    assert [p.name for p in tmp_path.iterdir()] == ["epoch-000003.npz"]  # written on the way out
    resumed, opt = make_net(), xn.optim.Adam(0.01)
    hist = resumed.fit(X, Y, optimizer=opt, epochs=10, resume=tmp_path, **{**FIT, "early_stopping": None})
    assert_same_run((resumed, opt, hist), train(10, early_stopping=None))


CHILD = """
import json, signal, sys
import xpnet as xn

signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C's KeyboardInterrupt, even where this process
# inherited SIGINT ignored (a shell starts background jobs so, and CI may run the suite as one)

class Beacon(xn.optim.SGD):
    '''SGD that tells the parent, once, that training is well under way.'''
    def step(self, backend, params, grads, lr=None):
        super().step(backend, params, grads, lr=lr)
        if self.steps == 150:
            print("training", flush=True)

xn.use("numpy")  # as the parent, which checks the numbers
X, Y = xn.datasets.moons(n=96, seed=0)
net = xn.Sequential([xn.layers.Dense(2, 12, activation="tanh"), xn.layers.Dropout(0.2), xn.layers.Dense(12, 2)], seed=0)
stopper = xn.EarlyStopping(patience=10**6) if sys.argv[2] == "best" else None
hist = net.fit(X, Y, loss="softmax_ce", optimizer=Beacon(0.5, momentum=0.9), epochs=10**6, batch_size=16,
               validation_split=0.25, early_stopping=stopper, progress=False, seed=3, checkpoint=sys.argv[1])
net.save(sys.argv[1] + "/final.npz")
print(json.dumps({"epochs": hist.epochs, "interrupted": hist.interrupted, "best_epoch": hist.best_epoch,
                  "history": hist.history}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals (SIGKILL, SIGINT)")
@pytest.mark.parametrize("mode", ["last", "best"])
def test_sigint_mid_fit_returns_the_history_and_keeps_the_right_weights(tmp_path, mode):
    """A real SIGINT to a process in fit: History so far comes back, the net holds the last completed (or,
    with early stopping, the best) epoch's weights, and the checkpoint written on the way out resumes exactly."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), mode], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "training", child.stderr.read()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=120)
    finally:
        child.kill()
    assert child.returncode == 0, err
    got = json.loads(out)
    assert got["interrupted"] and got["epochs"] >= 150 // 5 - 1 and len(got["history"]["loss"]) == got["epochs"]
    stopper = xn.EarlyStopping(patience=10**6) if mode == "best" else None
    fit = dict(FIT, early_stopping=stopper)
    kept = got["best_epoch"] if mode == "best" else got["epochs"]
    reference, ref_opt = make_net(), xn.optim.SGD(0.5, momentum=0.9)
    ref_hist = reference.fit(X, Y, optimizer=ref_opt, epochs=got["epochs"], **fit)
    assert ref_hist.history["loss"] == got["history"]["loss"] and ref_hist.best_epoch == got["best_epoch"]
    if mode == "best":
        reference = make_net()
        reference.fit(X, Y, optimizer=xn.optim.SGD(0.5, momentum=0.9), epochs=kept, **fit)
    for u, v in zip(xn.load(tmp_path / "final.npz").get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(u, v)
    resumed, opt = make_net(), xn.optim.SGD(0.5, momentum=0.9)
    hist = resumed.fit(X, Y, optimizer=opt, epochs=got["epochs"] + 3, resume=tmp_path, **fit)
    whole, whole_opt = make_net(), xn.optim.SGD(0.5, momentum=0.9)
    whole_hist = whole.fit(X, Y, optimizer=whole_opt, epochs=got["epochs"] + 3, **fit)
    assert_same_run((resumed, opt, hist), (whole, whole_opt, whole_hist))


# ---- damaged training checkpoints ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    train(2, checkpoint=folder)
    return (folder / "epoch-000002.npz").read_bytes()


JSON = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)


def places(value, prefix=()):
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield from places(inner, prefix + (key,))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_resume_from_a_damaged_training_header_raises_only_readable_errors(tmp_path, training_checkpoint, data):
    with zipfile.ZipFile(io.BytesIO(training_checkpoint)) as zf:
        parts = {name: zf.read(name) for name in zf.namelist()}
    header = json.loads(np.lib.format.read_array(io.BytesIO(parts["__xpnet_header__.npy"])).tobytes())
    where = data.draw(st.sampled_from([p for p in places(header["extra"], ("extra",))][1:]))
    target = header
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = data.draw(JSON)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.frombuffer(json.dumps(header).encode(), np.uint8))
    parts["__xpnet_header__.npy"] = buffer.getvalue()
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as zf:
        for name, member in parts.items():
            zf.writestr(name, member)
    (tmp_path / "epoch-000002.npz").write_bytes(packed.getvalue())
    try:
        make_net().fit(X, Y, optimizer=xn.optim.Adam(0.01), epochs=2, resume=tmp_path, **FIT)
    except (xn.errors.CheckpointError, xn.errors.ConfigError):
        pass
