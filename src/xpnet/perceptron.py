"""The perceptron: one neuron trained by the delta rule, sample by sample."""
import numpy as np

from . import backends
from .errors import ConfigError
from .validation import check_Xy, check_X


class Perceptron:
    """A single neuron, ŷ = f(w·x + b), trained online by the delta rule w ← w + lr (y − ŷ) x.

    ``output="step"`` (f = 1 if w·x + b > 0 else 0) is Rosenblatt's classifier;
    ``output="linear"`` (f = identity) is the Widrow–Hoff rule, a continuous output for regression.

    >>> import numpy as np
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]]); y = np.array([0, 0, 0, 1])  # AND
    >>> p = Perceptron(2, output="step", lr=0.1).fit(X, y, epochs=20)
    >>> p.predict(X).tolist()
    [0.0, 0.0, 0.0, 1.0]
    """

    def __init__(self, n_inputs, output="step", lr=0.1, seed=0, backend=None, dtype="float32"):
        if output not in ("step", "linear"):
            raise ConfigError(f"Perceptron output must be 'step' or 'linear', got {output!r}")
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ConfigError(f"lr must be a positive number, got {lr!r}")
        self.n_inputs, self.output, self.lr, self.seed = n_inputs, output, float(lr), seed
        self.backend = backends.get_backend(backend)
        self.dtype = self.backend.dtype(dtype)
        self.w = self.backend.asarray(np.zeros(n_inputs), dtype=self.dtype)
        self.b = self.backend.asarray(np.zeros(()), dtype=self.dtype)
        self.errors_ = []

    def _output(self, z):
        xp = self.backend.xp
        return xp.astype(z > 0, z.dtype) if self.output == "step" else z

    def fit(self, X, y, epochs=10, shuffle=True):
        """Online delta-rule updates over ``epochs`` passes; records each epoch's error in ``errors_``.

        The error is the number of mistakes for "step", the mean squared error for "linear".
        """
        X, y = check_Xy(X, y, self.n_inputs)
        xp, backend = self.backend.xp, self.backend
        Xd, yd = backend.asarray(X, dtype=self.dtype), backend.asarray(y.reshape(-1), dtype=self.dtype)
        rng = np.random.default_rng(self.seed)
        for _ in range(epochs):
            order = rng.permutation(len(X)) if shuffle else range(len(X))
            error = 0.0
            for i in order:
                x, target = Xd[int(i), :], yd[int(i)]
                delta = target - self._output(xp.sum(x * self.w) + self.b)
                self.w += self.lr * delta * x  # the delta rule
                self.b += self.lr * delta
                error += backend.scalar(delta * delta)
            self.errors_.append(error if self.output == "step" else error / len(X))
        return self

    def decision_function(self, X):
        X = self.backend.asarray(check_X(X, self.n_inputs), dtype=self.dtype)
        return self.backend.matmul(X, self.w) + self.b

    def predict(self, X):
        """Outputs for X as a NumPy array: 0/1 for "step", real values for "linear"."""
        return self.backend.to_numpy(self._output(self.decision_function(X)))
