"""Learning-rate schedules: their rates (against PyTorch's schedulers), bad settings, every training step
reading them at run time, History's lr, and resuming a scheduled run bit for bit."""
import math

import numpy as np
import pytest

import xpnet as xn
from xpnet.errors import ConfigError
from xpnet.steps import FusedMLPStep, GraphStep, PlainStep

from fakecupy import fake_cupy  # noqa: F401 (fixture)

S = xn.schedules


def torch_rates(make, steps, lr=0.1):
    """The rate of each of ``steps`` optimiser steps under a PyTorch scheduler stepped once per step."""
    torch = pytest.importorskip("torch")
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    scheduler = make(torch.optim.lr_scheduler, opt)
    rates = []
    for _ in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("ours, theirs", [
    (S.Step(step_size=7, gamma=0.5, lr=0.1), lambda s, o: s.StepLR(o, step_size=7, gamma=0.5)),
    (S.Exponential(gamma=0.97, lr=0.1), lambda s, o: s.ExponentialLR(o, gamma=0.97)),
    (S.Cosine(total=50, min_lr=0.001, lr=0.1), lambda s, o: s.CosineAnnealingLR(o, T_max=50, eta_min=0.001)),
    (S.OneCycle(max_lr=0.1, total=60), lambda s, o: s.OneCycleLR(o, max_lr=0.1, total_steps=60,
                                                                 cycle_momentum=False)),
], ids=["step", "exponential", "cosine", "one_cycle"])
def test_rates_match_pytorchs_schedulers(ours, theirs):
    steps = 50
    np.testing.assert_allclose([ours(t) for t in range(steps)], torch_rates(theirs, steps), rtol=1e-9)


def test_cosine_warms_up_linearly_then_ends_at_min_lr():
    s = S.Cosine(total=20, warmup=4, min_lr=0.01, lr=1.0)
    assert [s(t) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert s(4) == 1.0 and s(20) == pytest.approx(0.01) and s(1000) == pytest.approx(0.01)
    assert S.Constant(lr=0.3)(10**6) == 0.3


def test_a_schedule_without_a_base_rate_takes_the_optimisers_default():
    assert xn.optim.Adam(lr=S.Step(step_size=2)).lr == 0.001
    assert xn.optim.SGD(lr=S.Step(step_size=2)).lr == 0.01
    shared = S.Cosine(total=10)
    a, b = xn.optim.Adam(lr=shared), xn.optim.SGD(lr=shared)
    assert (a.schedule.lr, b.schedule.lr, shared.lr) == (0.001, 0.01, None)  # each optimiser binds its own copy


def test_an_optimiser_reads_its_schedule_per_step_and_a_number_replaces_it():
    opt = xn.optim.SGD(lr=lambda step: 1.0 / (step + 1))
    assert opt.lr == 1.0
    opt.steps = 3
    assert opt.lr == 0.25
    opt.lr = 0.5
    assert opt.schedule is None and opt.lr == 0.5 and opt.config()["lr"] == 0.5


def test_reduce_on_plateau_counts_epochs_without_improvement():
    s = S.ReduceOnPlateau(factor=0.5, patience=1, monitor="loss", lr=1.0).bind(0.01)
    rates = []
    for loss in [1.0, 0.9, 0.95, 0.95, 0.8, 0.85, 0.85]:
        s.epoch_end({"loss": loss})
        rates.append(s(0))
    assert rates == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    up = S.ReduceOnPlateau(factor=0.1, patience=0, monitor="val_accuracy", min_lr=0.05, lr=1.0).bind(0.01)
    for accuracy in [0.5, 0.6, 0.6, 0.55]:
        up.epoch_end({"val_accuracy": accuracy})
    assert up(0) == 0.05  # 1 → 0.1 → 0.05 (not below min_lr)


@pytest.mark.parametrize("make, fragment", [
    (lambda: xn.optim.SGD(lr=S.Step(step_size=3, lr=-0.1)), "lr must be a finite number > 0, got -0.1"),
    (lambda: S.Exponential(gamma=float("inf")), "gamma must be a finite number ≥ 0, got inf"),
    (lambda: S.Cosine(total=10, warmup=11), "warmup must be at most total=10 steps, got 11"),
    (lambda: S.Cosine(total=10, min_lr=float("nan")), "min_lr must be a finite number ≥ 0, got nan"),
    (lambda: S.ReduceOnPlateau(monitor="val_los"), "monitor must be one of 'loss', 'val_loss'"),
    (lambda: S.ReduceOnPlateau(factor=1.5), "factor must be in (0, 1), got 1.5"),
    (lambda: S.Step(step_size=0), "step_size must be a whole number ≥ 1, got 0"),
    (lambda: xn.optim.Adam(lr=lambda step: -1.0), "must return a finite number ≥ 0, got -1.0 at step 0"),
    (lambda: xn.optim.get({"name": "adam", "lr": {"name": "cosin", "total": 3}}), "Did you mean 'cosine'?"),
])
def test_bad_schedules_are_config_errors_naming_the_argument(make, fragment):
    with pytest.raises(ConfigError) as info:
        make()
    assert fragment in str(info.value)


def test_a_callable_returning_nan_later_stops_fit_with_a_config_error():
    X, y = xn.datasets.xor()
    opt = xn.optim.SGD(lr=lambda step: 0.1 if step < 5 else math.nan)
    with pytest.raises(ConfigError, match="got nan at step 5"):
        xn.MLP([2, 4, 1], seed=0, backend="numpy").fit(X, y, optimizer=opt, epochs=3, batch_size=2, progress=False)


def test_plateau_on_val_loss_without_validation_data_is_a_config_error():
    X, y = xn.datasets.xor()
    with pytest.raises(ConfigError, match="ReduceOnPlateau on val_loss needs validation_data"):
        xn.MLP([2, 4, 1], seed=0).fit(X, y, optimizer=xn.optim.SGD(lr=S.ReduceOnPlateau()), progress=False)


SCHEDULED = [
    lambda: xn.optim.SGD(lr=S.Cosine(total=30, warmup=5, lr=0.3), momentum=0.9, nesterov=True),
    lambda: xn.optim.Adam(lr=S.OneCycle(max_lr=0.02, total=30), weight_decay=0.01),
    lambda: xn.optim.RMSProp(lr=lambda step: 0.01 * 0.9**step),
    lambda: xn.optim.SGD(lr=S.ReduceOnPlateau(factor=0.5, patience=0, monitor="loss", lr=0.5)),
]
IDS = ["sgd-nesterov-cosine", "adam-one_cycle", "rmsprop-callable", "sgd-plateau"]


def scheduled_fit(backend, make_optimizer, epochs=4, **options):
    X, y = xn.datasets.spirals(n=60, seed=0)
    net = xn.MLP([2, 8, 8, 3], activation="tanh", dtype="float64", backend=backend, seed=0)
    opt = make_optimizer()
    hist = net.fit(X, y % 3, loss="softmax_ce", optimizer=opt, epochs=epochs, batch_size=16, progress=False,
                   seed=1, **options)
    return net, opt, hist


@pytest.mark.parametrize("make_optimizer", SCHEDULED, ids=IDS)
def test_the_fused_numba_step_follows_a_schedule_as_the_plain_step_does(make_optimizer):
    pytest.importorskip("numba")
    net, opt, hist = scheduled_fit("numba", make_optimizer)
    assert isinstance(net.compile("softmax_ce", opt), FusedMLPStep)
    ref, ref_opt, ref_hist = scheduled_fit("numpy", make_optimizer)
    assert opt.steps == ref_opt.steps == 16
    np.testing.assert_allclose(hist.history["loss"], ref_hist.history["loss"], rtol=1e-9)
    assert hist.history["lr"] == ref_hist.history["lr"]
    for a, b in zip(net.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_history_records_the_rate_of_each_epochs_last_step():
    _, opt, hist = scheduled_fit("numpy", SCHEDULED[0])
    assert hist.history["lr"] == [opt.schedule(4 * epoch - 1) for epoch in (1, 2, 3, 4)]  # 60 rows: 4 batches
    _, _, plateau = scheduled_fit("numpy", SCHEDULED[3], epochs=6)
    assert plateau.history["lr"][0] == 0.5 and min(plateau.history["lr"]) < 0.5


def test_a_schedule_reuses_the_compiled_fused_step():
    pytest.importorskip("numba")
    X, y = xn.datasets.xor()
    net = xn.MLP([2, 4, 1], activation="sigmoid", dtype="float64", backend="numba", seed=0)
    step = net.compile("mse", xn.optim.SGD(lr=1.0))
    step.repeat(X, y, 3)
    kernel = step._compiled(4).train
    compiled = len(kernel.signatures)
    scheduled = net.compile("mse", xn.optim.SGD(lr=S.Exponential(gamma=0.999, lr=1.0)))
    scheduled.repeat(X, y, 300)
    assert len(kernel.signatures) == compiled  # the rates are data, not a new specialisation
    ref = xn.MLP([2, 4, 1], activation="sigmoid", dtype="float64", backend="numpy", seed=0)
    ref_step = ref.compile("mse", xn.optim.SGD(lr=1.0))
    ref_step.repeat(X, y, 3)
    ref.compile("mse", xn.optim.SGD(lr=S.Exponential(gamma=0.999, lr=1.0))).repeat(X, y, 300)
    for a, b in zip(net.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9)


@pytest.mark.parametrize("make_optimizer", SCHEDULED, ids=IDS)
def test_resuming_a_scheduled_run_continues_it_bit_for_bit(tmp_path, make_optimizer):
    options = dict(validation_split=0.25, checkpoint=tmp_path / "run")
    scheduled_fit("numpy", make_optimizer, epochs=3, **options)
    net, opt, hist = scheduled_fit("numpy", make_optimizer, epochs=6, resume=tmp_path / "run", **options)
    again, again_opt, again_hist = scheduled_fit("numpy", make_optimizer, epochs=6, **options)
    assert hist.history["lr"] == again_hist.history["lr"]
    assert hist.history["loss"] == again_hist.history["loss"]
    for a, b in zip(net.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert opt.schedule_state() == again_opt.schedule_state()


def test_a_plain_step_given_a_runtime_rate_uses_it():
    X, y = xn.datasets.xor()
    nets = [xn.MLP([2, 3, 1], dtype="float64", backend="numpy", seed=0) for _ in range(2)]
    steps = [PlainStep(net, xn.losses.get("mse"), xn.optim.SGD(lr=1.0)) for net in nets]
    steps[0].runtime_lr = np.asarray(0.25)
    steps[1].optimizer.lr = 0.25
    for step in steps:
        step(X, y)
    for a, b in zip(*(net.get_weights() for net in nets)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make_optimizer", SCHEDULED[:3], ids=IDS[:3])
def test_the_cuda_graph_step_reads_the_rate_from_the_device_and_never_recaptures(fake_cupy, make_optimizer):
    graphs = xn.get_backend("cupy", graphs="auto")
    captures = []
    real_capture = graphs.capture_graph

    def capture(record):  # the fake's own capture: replays the recorded device work, not the step's Python
        graph, memory = real_capture(record)
        captures.append(graph)
        return graph, memory

    graphs.capture_graph = capture
    net, opt, hist = scheduled_fit(graphs, make_optimizer)
    assert isinstance(net.compile("softmax_ce", opt), GraphStep)
    ref, ref_opt, ref_hist = scheduled_fit(xn.get_backend("cupy", graphs=False), make_optimizer)
    assert len(captures) == 2  # 60 rows in batches of 16: one graph for 16 rows, one for the last 12
    assert sum(g.launches for g in captures) == 16 - 2  # every step but the two warm-ups, each at its own rate
    np.testing.assert_allclose(hist.history["loss"], ref_hist.history["loss"], rtol=1e-9)
    assert hist.history["lr"] == ref_hist.history["lr"]
    for a, b in zip(net.get_weights(), ref.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
