"""Plots: decision boundaries, loss and accuracy curves, the optimiser race (matplotlib, the ``plot`` extra).

Figures are made with ``matplotlib.figure.Figure`` and written with the Agg
renderer, so plotting never opens a window or changes pyplot's global state.
Each function draws on ``ax`` when given, else on a new figure, saves to
``path`` when given, and returns the figure.
"""
import numpy as np

from .errors import BackendUnavailableError, ConfigError

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")  # classes differ in shape, not only colour
LINESTYLES = ("-", "--", "-.", ":")
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray",
           "tab:olive", "tab:cyan")


def require():
    """matplotlib's Figure class, or BackendUnavailableError saying how to install matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise BackendUnavailableError("plots need matplotlib, which is not installed. To fix: "
                                      "pip install -e '.[plot]'") from None
    return Figure


def _new_figure(ncols=1, width=5.0, height=4.5):
    Figure = require()
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, [fig.add_subplot(1, ncols, k + 1) for k in range(ncols)]


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def _axes(ax):
    if ax is None:
        fig, (ax,) = _new_figure()
        return fig, ax
    return ax.figure, ax


def decision_boundary(net, X, y, ax=None, path=None, transform=None, resolution=200, threshold=0.5):
    """The classes a trained 2-D classifier predicts over the plane, with the data (X, y) on top.

    ``transform`` maps plane points to the net's inputs (e.g. a Standardizer's
    ``transform``); a net with one output predicts class 1 above ``threshold``.
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ConfigError(f"a decision boundary needs 2-D inputs, got X of shape {X.shape}")
    labels = y.reshape(len(y), -1)
    labels = (labels[:, 0] > 0.5).astype(int) if labels.shape[1] == 1 and labels.dtype.kind == "f" \
        else (labels.argmax(axis=1) if labels.shape[1] > 1 else labels[:, 0].astype(int))
    fig, ax = _axes(ax)
    pad = 0.1 * (X.max(axis=0) - X.min(axis=0)) + 1e-9
    lo, hi = X.min(axis=0) - pad, X.max(axis=0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    out = net.predict(transform(grid) if transform is not None else grid)
    predicted = (out[:, 0] > threshold).astype(int) if out.shape[1] == 1 else out.argmax(axis=1)
    k = max(int(labels.max()) + 1, out.shape[1] if out.shape[1] > 1 else 2)
    from matplotlib.colors import ListedColormap

    ax.contourf(gx, gy, predicted.reshape(gx.shape), levels=np.arange(k + 1) - 0.5,
                cmap=ListedColormap(COLOURS[:k]), alpha=0.25)
    for c in range(k):
        pts = X[labels == c]
        ax.scatter(pts[:, 0], pts[:, 1], s=14, marker=MARKERS[c % len(MARKERS)], c=COLOURS[c % len(COLOURS)],
                   edgecolors="black", linewidths=0.3, label=f"class {c}")
    ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]), xlabel="x₁", ylabel="x₂", title="decision boundary")
    ax.legend(loc="best", fontsize="small", framealpha=0.8)  # "best" keeps it off the data points
    return _finish(fig, path)


def curves(history, ax=None, path=None):
    """Loss (left axis) and accuracy (right axis) per epoch, training solid, validation dashed."""
    metrics = getattr(history, "history", history)
    if not metrics.get("loss"):
        raise ConfigError("the history has no 'loss' entries to plot (train for at least one epoch)")
    fig, ax = _axes(ax)
    epochs = np.arange(1, len(metrics["loss"]) + 1)
    lines = ax.plot(epochs, metrics["loss"], color="tab:blue", label="loss")
    if metrics.get("val_loss"):
        lines += ax.plot(epochs, metrics["val_loss"], color="tab:blue", linestyle="--", label="validation loss")
    ax.set(xlabel="epoch", ylabel="loss", title="training curves")
    ax.set_yscale("log")
    if metrics.get("accuracy"):
        right = ax.twinx()
        lines += right.plot(epochs, metrics["accuracy"], color="tab:green", label="accuracy")
        if metrics.get("val_accuracy"):
            lines += right.plot(epochs, metrics["val_accuracy"], color="tab:green", linestyle="--",
                                label="validation accuracy")
        right.set(ylabel="accuracy", ylim=(min(0.5, *metrics["accuracy"]) - 0.02, 1.01))
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize="small")
    return _finish(fig, path)


def training(net, history, X, y, path=None, transform=None):
    """What ``xpnet train --plot`` writes: the decision boundary (2-D data only) beside the curves."""
    two_d = np.asarray(X).ndim == 2 and np.asarray(X).shape[1] == 2
    fig, axes = _new_figure(ncols=2 if two_d else 1)
    if two_d:
        decision_boundary(net, X, y, ax=axes[0], transform=transform)
    curves(history, ax=axes[-1])
    return _finish(fig, path)


def race(paths, surface="rosenbrock", ax=None, path=None):
    """Optimiser paths from ``xpnet.race.race`` over the contours of their surface."""
    from .errors import lookup
    from .race import SURFACES

    surface = lookup("surface", surface, SURFACES) if isinstance(surface, str) else surface
    fig, ax = _axes(ax)
    (x0, x1), (y0, y1) = surface.window
    gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
    values = surface.value(np, gx, gy)
    low = min(surface.value(np, mx, my) for mx, my in surface.minima)
    ax.contour(gx, gy, np.log1p(values - low), levels=20, cmap="Greys", linewidths=0.6)
    for k, (name, p) in enumerate(paths.items()):
        ax.plot(p[:, 0], p[:, 1], color=COLOURS[k % len(COLOURS)], linestyle=LINESTYLES[k % len(LINESTYLES)],
                linewidth=1.6, label=name)
        ax.plot(p[-1, 0], p[-1, 1], marker=MARKERS[k % len(MARKERS)], color=COLOURS[k % len(COLOURS)],
                markeredgecolor="black", markersize=8, linestyle="none")
    start = next(iter(paths.values()))[0]
    ax.plot(*start, marker="o", color="black", markersize=6, linestyle="none", label="start")
    ax.plot(*np.array(surface.minima).T, marker="*", color="gold", markeredgecolor="black", markersize=14,
            linestyle="none", label="minimum")
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y", title=f"{surface.name}: {surface.formula}")
    ax.title.set_fontsize("small")
    ax.legend(loc="lower right", fontsize="small", framealpha=0.8)
    return _finish(fig, path)


def races(paths_by_surface, path=None):
    """One panel per surface, side by side: what ``xpnet race --plot`` writes."""
    fig, axes = _new_figure(ncols=len(paths_by_surface))
    for ax, (surface, paths) in zip(axes, paths_by_surface.items()):
        race(paths, surface, ax=ax)
    return _finish(fig, path)
