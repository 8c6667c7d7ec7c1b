"""The optimiser race: hand-written gradients against finite differences, the same paths on every backend."""
import numpy as np
import pytest

import xpnet as xn
from xpnet.race import SURFACES, distance_to_minimum, race


@pytest.mark.parametrize("name", list(SURFACES))
def test_gradients_match_finite_differences(name):
    surface = SURFACES[name]
    eps = 1e-6
    for x, y in np.random.default_rng(0).uniform(-2, 2, (20, 2)):
        exact = surface.gradient(np, np.float64(x), np.float64(y))
        numeric = [(surface.value(np, x + eps, y) - surface.value(np, x - eps, y)) / (2 * eps),
                   (surface.value(np, x, y + eps) - surface.value(np, x, y - eps)) / (2 * eps)]
        np.testing.assert_allclose(exact, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", list(SURFACES))
def test_every_backend_runs_the_same_race(backend, name):
    here = race(name, steps=50, backend=backend)
    reference = race(name, steps=50, backend="numpy")
    for optimiser, path in here.items():
        np.testing.assert_allclose(path, reference[optimiser], rtol=1e-10, atol=1e-12)


def test_the_first_step_is_the_optimisers_update():
    surface = SURFACES["rosenbrock"]
    paths = race("rosenbrock", optimizers={"SGD": xn.optim.SGD(lr=1e-3), "Adam": xn.optim.Adam(lr=0.1)}, steps=1)
    start = np.array(surface.start)
    gradient = surface.gradient(np, *start)
    np.testing.assert_allclose(paths["SGD"][1], start - 1e-3 * gradient, rtol=1e-14)
    # Adam's first step moves each coordinate by lr against the sign of its gradient (m/√v = ±1).
    np.testing.assert_allclose(paths["Adam"][1], start - 0.1 * np.sign(gradient), rtol=1e-6)


def test_the_race_has_a_story():
    rosenbrock = race("rosenbrock", steps=3000)
    final = {name: distance_to_minimum(SURFACES["rosenbrock"], p[-1]) for name, p in rosenbrock.items()}
    assert final["Adam"] < 0.05 < final["SGD"]  # plain SGD crawls along the valley
    saddle = race("saddle", steps=1000)
    for name, p in saddle.items():  # everyone leaves the saddle point for a minimum in the end
        assert distance_to_minimum(SURFACES["saddle"], p[-1]) < 0.05, name
    first = {name: next(i for i, q in enumerate(p) if distance_to_minimum(SURFACES["saddle"], q) < 0.05)
             for name, p in saddle.items()}
    assert first["SGD"] > 3 * first["Adam"]  # plain SGD lingers where the gradient vanishes


def test_bad_arguments_are_readable():
    with pytest.raises(xn.errors.ConfigError, match="Did you mean 'saddle'"):
        race("sadle")
    with pytest.raises(xn.errors.ConfigError, match="steps must be a positive integer"):
        race("saddle", steps=0)
