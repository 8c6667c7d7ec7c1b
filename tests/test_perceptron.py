import numpy as np
import pytest

import xpnet as xn


def test_step_perceptron_learns_a_linearly_separable_problem(backend):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    p = xn.Perceptron(2, output="step", lr=0.1, backend=backend).fit(X, np.array([0, 1, 1, 1]), epochs=20)
    assert p.predict(X).tolist() == [0, 1, 1, 1]  # OR
    assert p.errors_[-1] == 0


def test_linear_perceptron_fits_a_line_by_the_delta_rule(backend, rng):
    X = rng.uniform(-1, 1, (50, 1))
    y = 3 * X[:, 0] - 0.5
    p = xn.Perceptron(1, output="linear", lr=0.1, backend=backend, dtype="float64").fit(X, y, epochs=40)
    np.testing.assert_allclose(p.predict(X), y, atol=1e-3)
    assert p.errors_[-1] < p.errors_[0]


def test_step_perceptron_cannot_learn_xor():
    X, y = xn.datasets.xor()
    p = xn.Perceptron(2, output="step").fit(X, y.ravel(), epochs=50)
    assert p.errors_[-1] > 0  # why hidden layers exist


def test_perceptron_rejects_bad_arguments():
    with pytest.raises(xn.errors.ConfigError):
        xn.Perceptron(2, output="sigmoid")
    with pytest.raises(xn.errors.ShapeError):
        xn.Perceptron(2).fit(np.zeros((3, 3)), np.zeros(3))
