"""Plots: the boundary is where the net puts it, classes differ in shape, curves and paths are the data given."""
import sys

import numpy as np
import pytest

import xpnet as xn
from xpnet.race import race as run_race

pytest.importorskip("matplotlib", reason="plots need matplotlib (pip install -e '.[plot]')")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from xpnet import plot  # noqa: E402


def left_right_net():
    """Logits (x₁, −x₁): class 0 right of x₁ = 0, class 1 left of it."""
    net = xn.MLP([2, 2], seed=0, dtype="float64")
    net.set_weights([np.array([[1.0, -1.0], [0.0, 0.0]]), np.zeros(2)])
    return net


def pixel(fig, ax, x, y):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3] / 255.0
    px, py = ax.transData.transform((x, y))
    return image[image.shape[0] - int(round(py)), int(round(px))]


def test_decision_boundary_colours_each_side_by_the_predicted_class(tmp_path):
    X = np.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    y = np.array([1, 1, 0, 0])
    fig = plot.decision_boundary(left_right_net(), X, y, path=tmp_path / "b.png")
    ax = fig.axes[0]
    tint = {c: 0.75 + 0.25 * np.array(to_rgb(plot.COLOURS[c])) for c in (0, 1)}  # alpha 0.25 over white
    np.testing.assert_allclose(pixel(fig, ax, 0.5, 0.0), tint[0], atol=0.02)
    np.testing.assert_allclose(pixel(fig, ax, -0.5, 0.0), tint[1], atol=0.02)
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_classes_differ_in_marker_shape_not_only_colour():
    X, y = xn.datasets.spirals(n=90, classes=3, seed=0)
    net = xn.MLP([2, 4, 3], seed=0)
    ax = plot.decision_boundary(net, X, y).axes[0]
    scatters = {c.get_label(): c for c in ax.collections if c.get_label().startswith("class")}
    assert sorted(scatters) == ["class 0", "class 1", "class 2"]
    shapes = [tuple(map(tuple, np.round(s.get_paths()[0].vertices, 6))) for s in scatters.values()]
    assert len(set(shapes)) == 3
    for c, s in enumerate(scatters.values()):
        np.testing.assert_allclose(s.get_offsets(), X[y == c])


def test_one_output_nets_and_transforms():
    X, y = xn.datasets.xor()
    net = xn.MLP([2, 1], output_activation="sigmoid", seed=0, dtype="float64")
    net.set_weights([np.array([[10.0], [0.0]]), np.array([-5.0])])  # class 1 where x₁ > 0.5
    fig = plot.decision_boundary(net, X, y)
    ax = fig.axes[0]
    assert np.allclose(pixel(fig, ax, 0.25, 0.5), 0.75 + 0.25 * np.array(to_rgb(plot.COLOURS[0])), atol=0.02)
    assert np.allclose(pixel(fig, ax, 0.75, 0.5), 0.75 + 0.25 * np.array(to_rgb(plot.COLOURS[1])), atol=0.02)
    # transform maps the plotted plane to the net's inputs: shifting by 0.5 moves the boundary to x₁ = 0
    fig = plot.decision_boundary(net, X, y, transform=lambda P: P + 0.5)
    assert np.allclose(pixel(fig, fig.axes[0], 0.1, 0.5), 0.75 + 0.25 * np.array(to_rgb(plot.COLOURS[1])),
                       atol=0.02)
    with pytest.raises(xn.errors.ConfigError, match="2-D inputs"):
        plot.decision_boundary(xn.MLP([3, 2]), np.zeros((4, 3)), np.zeros(4))


def test_curves_draw_the_history_against_epochs():
    history = xn.History()
    for loss, val_loss, acc, val_acc in [(1.0, 1.2, 0.5, 0.4), (0.5, 0.7, 0.8, 0.7), (0.25, 0.4, 0.9, 0.85)]:
        history.append(loss=loss, val_loss=val_loss, accuracy=acc, val_accuracy=val_acc)
    fig = plot.curves(history)
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    assert sorted(lines) == ["accuracy", "loss", "validation accuracy", "validation loss"]
    np.testing.assert_array_equal(lines["loss"].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(lines["validation loss"].get_ydata(), [1.2, 0.7, 0.4])
    np.testing.assert_array_equal(lines["accuracy"].get_ydata(), [0.5, 0.8, 0.9])
    assert lines["loss"].axes is not lines["accuracy"].axes  # accuracy on its own (right) axis, same epochs
    assert lines["validation loss"].get_linestyle() == "--"
    with pytest.raises(xn.errors.ConfigError, match="no 'loss'"):
        plot.curves({})


def test_training_figure_has_both_panels_for_2d_data_and_curves_only_otherwise(tmp_path):
    X, y = xn.datasets.moons(n=100, seed=0)
    net = xn.MLP([2, 8, 2], seed=0)
    hist = net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.Adam(0.01), epochs=2, progress=False)
    assert len(plot.training(net, hist, X, y, path=tmp_path / "t.png").axes) == 3  # boundary, loss, accuracy twin
    X4 = np.random.default_rng(0).standard_normal((20, 4))
    net4 = xn.MLP([4, 2], seed=0)
    hist4 = net4.fit(X4, np.arange(20) % 2, loss="softmax_ce", epochs=2, progress=False)
    assert len(plot.training(net4, hist4, X4, np.arange(20) % 2).axes) == 2


def test_race_plot_draws_the_paths_it_is_given(tmp_path):
    paths = {name: run_race(name, steps=100) for name in ("rosenbrock", "saddle")}
    fig = plot.races(paths, path=tmp_path / "race.png")
    assert len(fig.axes) == 2
    for ax, (surface, runs) in zip(fig.axes, paths.items()):
        lines = {line.get_label(): line for line in ax.get_lines()}
        for name, p in runs.items():
            np.testing.assert_array_equal(lines[name].get_xdata(), p[:, 0])
            np.testing.assert_array_equal(lines[name].get_ydata(), p[:, 1])
        assert "start" in lines and "minimum" in lines
    assert (tmp_path / "race.png").stat().st_size > 10_000


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(xn.errors.BackendUnavailableError, match=r"pip install -e '\.\[plot\]'"):
        plot.curves({"loss": [1.0]})
