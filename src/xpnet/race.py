"""The optimiser race: xpnet's own optimisers on a 2-parameter problem.

The "network" is one backend array p = (x, y) with a hand-written gradient;
each optimiser updates it in place through the backend's update kernels,
exactly as it updates a layer's weights. ``plot.race`` draws the paths.

>>> paths = race("rosenbrock", steps=10)
>>> sorted(paths), paths["Adam"].shape
(['Adam', 'Momentum', 'RMSProp', 'SGD'], (11, 2))
"""
import numpy as np

from . import backends, optim
from .errors import ConfigError, lookup


class Surface:
    """A function of two parameters: value and gradient written in ``xp``, a start, its minima, a plot window."""

    def __init__(self, name, formula, value, gradient, start, minima, window, optimizers):
        self.name, self.formula, self.value, self.gradient = name, formula, value, gradient
        self.start, self.minima, self.window, self.optimizers = start, minima, window, optimizers

    def __repr__(self):
        return f"<Surface {self.name}: {self.formula}>"


def rosenbrock_value(xp, x, y):
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def rosenbrock_gradient(xp, x, y):
    return xp.stack([-2.0 * (1.0 - x) - 400.0 * x * (y - x * x), 200.0 * (y - x * x)])


def saddle_value(xp, x, y):
    return x * x + 0.25 * y ** 4 - 0.5 * y * y


def saddle_gradient(xp, x, y):
    return xp.stack([2.0 * x, y * y * y - y])


SURFACES = {
    "rosenbrock": Surface(
        "rosenbrock", "f(x, y) = (1 − x)² + 100 (y − x²)²", rosenbrock_value, rosenbrock_gradient,
        start=(-1.8, -0.5), minima=[(1.0, 1.0)], window=((-2.0, 2.0), (-1.0, 3.0)),
        optimizers=lambda: {"SGD": optim.SGD(lr=5e-4), "Momentum": optim.SGD(lr=2e-4, momentum=0.9),
                            "RMSProp": optim.RMSProp(lr=1e-2), "Adam": optim.Adam(lr=0.2)}),
    "saddle": Surface(
        "saddle", "f(x, y) = x² − y²/2 + y⁴/4: a saddle at 0, minima at (0, ±1)", saddle_value, saddle_gradient,
        start=(-1.5, 1e-3), minima=[(0.0, 1.0), (0.0, -1.0)], window=((-2.0, 2.0), (-1.5, 1.5)),
        optimizers=lambda: {"SGD": optim.SGD(lr=1e-2), "Momentum": optim.SGD(lr=1e-2, momentum=0.9),
                            "RMSProp": optim.RMSProp(lr=1e-2), "Adam": optim.Adam(lr=5e-2)}),
}


def race(surface="rosenbrock", optimizers=None, steps=1000, start=None, backend="numpy"):
    """Paths {optimiser name: (steps + 1, 2) NumPy array of (x, y)} from one start on ``surface``.

    ``optimizers`` maps names to xpnet optimisers (default: SGD, momentum,
    RMSProp and Adam, with learning rates tuned per surface).
    """
    surface = lookup("surface", surface, SURFACES) if isinstance(surface, str) else surface
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"steps must be a positive integer, got {steps!r}")
    optimizers = surface.optimizers() if optimizers is None else {k: optim.get(v) for k, v in optimizers.items()}
    backend = backends.get_backend(backend)
    dtype = backend.dtype("float64")
    paths = {}
    for name, optimizer in optimizers.items():
        p = backend.asarray(np.array(start or surface.start, dtype=np.float64), dtype=dtype)
        path = [backend.to_numpy(p).copy()]
        for _ in range(steps):
            gradient = surface.gradient(backend.xp, p[0], p[1])
            optimizer.step(backend, [p], [gradient])  # in place, through the backend's update kernel
            path.append(backend.to_numpy(p).copy())
        paths[name] = np.array(path)
    return paths


def distance_to_minimum(surface, point):
    """Distance from ``point`` to the nearest minimum of ``surface``."""
    return float(min(np.hypot(point[0] - mx, point[1] - my) for mx, my in surface.minima))
