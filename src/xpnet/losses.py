"""Losses: means, as PyTorch's defaults.

MSE and BCE average over every element, softmax cross-entropy over the
samples. A loss checks and prepares targets on the host (``prepare``), then
calls the backend kernel that returns the value and ∂C/∂prediction, which
is where backprop starts (BP1).
"""
import numpy as np

from . import kernels
from .errors import ConfigError, DataError, ShapeError, lookup


class Loss:
    """Base class; ``kernel`` names the backend kernel, ``classifier`` says whether accuracy applies."""

    name: str | None = None
    kernel: str | None = None
    classifier = False

    def prepare(self, y, n_outputs):
        """Check targets (host NumPy) and return them as (n, n_outputs) floats."""
        y = np.asarray(y)
        if y.ndim == 1 and n_outputs == 1:
            y = y.reshape(-1, 1)
        if y.ndim != 2 or y.shape[1] != n_outputs:
            raise ShapeError(f"{self.name} targets must have shape (n, {n_outputs}) for a network with "
                             f"{n_outputs} output(s), got {y.shape}")
        return y

    def __call__(self, backend, pred, target):
        """(mean loss as a 0-d array, ∂loss/∂pred)."""
        return backend.loss_and_grad(self.kernel, pred, target)

    def value(self, backend, pred, target):
        return backend.loss(self.kernel, pred, target)

    def correct(self, backend, pred, target):
        """Number of correct predictions in a batch, as a 0-d array (classifiers only)."""
        xp = backend.xp
        if pred.shape[1] == 1:
            threshold = 0.0 if self.kernel == "bce_logits" else 0.5
            return xp.sum(xp.astype((pred > threshold) == (target > 0.5), xp.int64))
        return xp.sum(xp.astype(xp.argmax(pred, axis=1) == xp.argmax(target, axis=1), xp.int64))

    def probabilities(self, outputs):
        """Probabilities from network outputs (host NumPy, float64), for ``predict --proba`` and ``predict_proba``.

        Softmax cross-entropy: one column per class; BCE: P(target = 1) per output.
        """
        raise ConfigError(f"the {self.name} loss does not train a classifier, so its outputs are not probabilities")

    def config(self):
        return self.name

    def __repr__(self):
        return f"{type(self).__name__}()"


class MSE(Loss):
    """Mean squared error over every element: (1/(n·k)) Σ (pred − y)²."""

    name = kernel = "mse"


class BCE(Loss):
    """Binary cross-entropy on probabilities (clipped), or from logits (stable) with ``from_logits=True``."""

    classifier = True

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)
        self.name = self.kernel = "bce_logits" if from_logits else "bce"

    def prepare(self, y, n_outputs):
        y = super().prepare(y, n_outputs)
        if y.size and (np.min(y) < 0 or np.max(y) > 1):
            raise DataError(f"BCE targets must lie in [0, 1], got values in [{np.min(y)}, {np.max(y)}]")
        return y

    def probabilities(self, outputs):
        outputs = np.asarray(outputs, dtype=np.float64)
        return kernels.sigmoid(np, outputs, 0.0) if self.from_logits else np.clip(outputs, 0.0, 1.0)

    def __repr__(self):
        return f"BCE(from_logits={self.from_logits})"


class SoftmaxCrossEntropy(Loss):
    """Softmax cross-entropy from logits, averaged over samples; labels as integers (n,) or one-hot (n, k)."""

    name = kernel = "softmax_ce"
    classifier = True

    def prepare(self, y, n_outputs):
        if n_outputs == 1:
            raise ConfigError("softmax_ce needs at least 2 outputs; use 'bce' or 'bce_logits' for one output")
        y = np.asarray(y)
        if y.ndim == 1:
            if y.size and not np.all(np.equal(np.mod(y, 1), 0)):
                raise DataError(f"softmax_ce integer labels must be whole numbers, got e.g. {y[np.mod(y, 1) != 0][0]}")
            if y.size and (np.min(y) < 0 or np.max(y) >= n_outputs):
                raise DataError(f"softmax_ce labels must lie in [0, {n_outputs}) for {n_outputs} outputs, "
                                f"got values in [{np.min(y)}, {np.max(y)}]")
            return np.eye(n_outputs)[y.astype(np.int64)]
        return super().prepare(y, n_outputs)

    def probabilities(self, outputs):
        shifted = np.asarray(outputs, dtype=np.float64)
        shifted = shifted - shifted.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        return exp / exp.sum(axis=1, keepdims=True)


class Weighted(Loss):
    """``base`` averaged over the samples with a weight each: Σ wᵢ Cᵢ / Σ wᵢ per batch (MSE and softmax_ce).

    Targets carry the weights as one more, last column after the base loss's
    prepared targets; integer weights train as repeated rows would, batch for batch.
    """

    def __init__(self, base):
        self.base = get(base)
        if self.base.kernel not in ("mse", "softmax_ce"):
            raise ConfigError(f"sample weights work with the mse and softmax_ce losses, got {self.base.name}")
        self.name, self.kernel, self.classifier = f"weighted {self.base.name}", None, self.base.classifier

    def prepare(self, y, n_outputs):
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != n_outputs + 1:
            raise ShapeError(f"weighted targets must have shape (n, {n_outputs + 1}): the targets, then the "
                             f"weight, got {y.shape}")
        weights = y[:, -1]
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise DataError(f"sample weights must be finite and ≥ 0, got values in [{weights.min()}, {weights.max()}]")
        return y

    def _per_sample(self, backend, pred, target):
        """Each sample's loss, shape (n, 1)."""
        xp = backend.xp
        if self.base.kernel == "mse":
            return xp.mean((pred - target) ** 2, axis=1, keepdims=True)
        return backend.logsumexp(pred) - xp.sum(target * pred, axis=1, keepdims=True)

    def __call__(self, backend, pred, target):
        target, weights = target[:, :-1], target[:, -1:]
        _, grad = self.base(backend, pred, target)  # ∂(mean)/∂pred: each row's own gradient over n
        total = backend.xp.sum(weights)
        value = backend.xp.sum(weights * self._per_sample(backend, pred, target)) / total
        return value, grad * (weights * (pred.shape[0] / total))

    def value(self, backend, pred, target):
        weights = target[:, -1:]
        return backend.xp.sum(weights * self._per_sample(backend, pred, target[:, :-1])) / backend.xp.sum(weights)

    def correct(self, backend, pred, target):
        return self.base.correct(backend, pred, target[:, :-1])

    def probabilities(self, outputs):
        return self.base.probabilities(outputs)

    def config(self):
        return {"weighted": self.base.config()}

    def __repr__(self):
        return f"Weighted({self.base!r})"


LOSSES = {"mse": MSE, "bce": BCE, "bce_logits": lambda: BCE(from_logits=True),
          "softmax_ce": SoftmaxCrossEntropy}


def get(loss: str | Loss) -> Loss:
    """A Loss from a name (``"mse" "bce" "bce_logits" "softmax_ce"``) or an instance."""
    return loss if isinstance(loss, Loss) else lookup("loss", loss, LOSSES)()
