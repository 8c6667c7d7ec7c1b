"""scikit-learn estimators trained by xpnet: ``MLPClassifier`` and ``MLPRegressor``.

They take scikit-learn's parameter names (plus ``backend=`` and ``dtype=``),
pass ``sklearn.utils.estimator_checks``, and work in ``Pipeline`` and
``GridSearchCV``. The fitted network is ``net_``, an ordinary xpnet MLP.

>>> import xpnet as xn
>>> from xpnet.sklearn import MLPClassifier
>>> X, y = xn.datasets.moons(n=200, seed=0)
>>> clf = MLPClassifier(hidden_layer_sizes=(16,), batch_size=32, learning_rate_init=0.01, random_state=0)
>>> clf.fit(X, y).score(X, y) > 0.95
True

Like scikit-learn's, an iteration is an epoch, batches are min(200, n) rows
by default, weights and biases start uniform in ±√(6/(fan_in + fan_out)),
``learning_rate="constant" | "invscaling" | "adaptive"`` (with ``power_t``)
steers the SGD solver, and ``fit`` takes ``sample_weight``. ``backend`` may be
a name or a backend object (``xn.get_backend(...)``).

Differences from scikit-learn's own MLP: solvers are ``"adam"``, ``"sgd"``
and ``"rmsprop"`` (no L-BFGS); ``alpha`` becomes
the optimiser's L2 ``weight_decay = alpha / batch_size`` (scikit-learn's
per-batch scaling), which xpnet also applies to the biases; classifiers
always have one softmax output per class; the MSE loss has no ½ factor.
"""
import numbers
import warnings

import numpy as np

from .errors import BackendUnavailableError, ConfigError, lookup

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError:
    raise BackendUnavailableError("xpnet.sklearn needs scikit-learn ≥ 1.6: pip install 'xpnet[sklearn]'") from None

from . import losses, optim
from .init import GlorotBias
from .network import MLP, build

# scikit-learn's activation names, and xpnet's own
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu",
               "leaky_relu": "leaky_relu", "gelu": "gelu", "gelu_tanh": "gelu_tanh"}
SOLVERS = ("adam", "sgd", "rmsprop")
LEARNING_RATES = ("constant", "invscaling", "adaptive")  # scikit-learn's schedules for the SGD solver
SEED_RANGE = 2**31 - 1


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the epoch loop, stopping rules, pickling."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None,
                 tol=1e-4, verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, backend=None, dtype="float64"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype

    # ---- fitted attributes read from the network ---------------------------------------

    @property
    def coefs_(self):
        """The weight matrices W (fan_in, fan_out), as scikit-learn's MLP names them."""
        return self.net_.get_weights()[0::2]

    @property
    def intercepts_(self):
        return self.net_.get_weights()[1::2]

    @property
    def n_layers_(self):
        return len(self.net_.sizes)

    @property
    def n_outputs_(self):
        return self.net_.n_outputs

    # ---- training --------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Train for up to ``max_iter`` epochs (from the current weights when ``warm_start``); returns self.

        ``sample_weight`` weighs each row's loss (Σ wᵢ Cᵢ / Σ wᵢ per batch), as repeating rows would.
        """
        return self._fit(X, y, incremental=False, sample_weight=sample_weight)

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else list(sizes)
        if not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes):
            raise ConfigError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _check_params(self):
        lookup("activation", self.activation, ACTIVATIONS)
        if self.solver == "lbfgs":
            raise ConfigError("solver='lbfgs' is not available in xpnet; use 'adam', 'sgd' or 'rmsprop'")
        lookup("solver", self.solver, dict.fromkeys(SOLVERS))
        lookup("learning_rate", self.learning_rate, dict.fromkeys(LEARNING_RATES))
        if not (isinstance(self.power_t, numbers.Real) and np.isfinite(self.power_t)):
            raise ConfigError(f"power_t must be a finite number, got {self.power_t!r}")
        for name, low in (("max_iter", 1), ("n_iter_no_change", 1)):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if not (isinstance(self.alpha, numbers.Real) and self.alpha >= 0):
            raise ConfigError(f"alpha must be a number ≥ 0, got {self.alpha!r}")
        if not (isinstance(self.validation_fraction, numbers.Real) and 0 < self.validation_fraction < 1):
            raise ConfigError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if self.batch_size != "auto" and not (isinstance(self.batch_size, numbers.Integral) and self.batch_size > 0):
            raise ConfigError(f"batch_size must be 'auto' or a positive integer, got {self.batch_size!r}")

    def _batch_size(self, n):
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n} samples; using {n}", stacklevel=3)
        return min(int(self.batch_size), n)

    def _make_optimizer(self, batch_size):
        decay = float(self.alpha) / batch_size
        if self.solver == "adam":
            return optim.Adam(lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon,
                              weight_decay=decay)
        if self.solver == "rmsprop":
            return optim.RMSProp(lr=self.learning_rate_init, eps=self.epsilon, weight_decay=decay)
        return optim.SGD(lr=self.learning_rate_init, momentum=self.momentum,
                         nesterov=bool(self.nesterovs_momentum and self.momentum), weight_decay=decay)

    def _fit(self, X, y, incremental, classes=None, sample_weight=None):
        self._check_params()
        fresh = not hasattr(self, "net_") or (not incremental and not self.warm_start)
        X, y = validate_data(self, X, y, reset=fresh, dtype=(np.float64, np.float32),
                             multi_output=self._multi_output, y_numeric=not self._classifier)
        targets = self._targets(y, fresh, incremental, classes)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
            if not sample_weight.sum() > 0:
                raise ConfigError("sample_weight must have a positive sum, got all zeros")
        if fresh:
            rng = check_random_state(self.random_state)
            # scikit-learn's initialisation, so that the same settings learn as much per iteration
            init = GlorotBias(2.0 if ACTIVATIONS[self.activation] == "sigmoid" else 6.0)
            self.net_ = MLP([X.shape[1], *self._hidden_sizes(), self._n_outputs], activation=ACTIVATIONS[self.activation],
                            init=init, dtype=self.dtype, seed=int(rng.randint(SEED_RANGE)), backend=self.backend)
            self._rng = np.random.default_rng(rng.randint(SEED_RANGE))
            self.loss_curve_, self.n_iter_, self.t_ = [], 0, 0
            self._no_improvement_count = 0
            self.best_loss_ = None if self.early_stopping else np.inf
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = -np.inf if self.early_stopping else None
        early_stopping = self.early_stopping and not incremental
        if self.early_stopping and incremental:
            raise ConfigError("partial_fit does not support early_stopping=True")
        X_val = T_val = None
        if early_stopping:
            stratify = targets if self._classifier else None
            seed = int(self._rng.integers(SEED_RANGE))
            if sample_weight is None:
                X, X_val, targets, T_val = train_test_split(X, targets, test_size=self.validation_fraction,
                                                            stratify=stratify, random_state=seed)
            else:
                X, X_val, targets, T_val, sample_weight, _ = train_test_split(
                    X, targets, sample_weight, test_size=self.validation_fraction, stratify=stratify,
                    random_state=seed)
            if len(X_val) < 2:
                raise ConfigError("the validation set is too small: raise validation_fraction or give more samples")
        batch_size = self._batch_size(len(X))
        if not incremental or not hasattr(self, "_optimizer"):
            # alpha is scaled by the batch's weight (its size, unweighted), as scikit-learn scales its L2 term
            weight = 1.0 if sample_weight is None else float(np.mean(sample_weight))
            self._optimizer = self._make_optimizer(batch_size * weight)
        loss, train_targets = self._loss, targets
        if sample_weight is not None:  # the weights ride along as one more target column
            loss = losses.Weighted(self._loss)
            train_targets = np.column_stack([loss.base.prepare(targets, self._n_outputs), sample_weight])
        for _ in range(1 if incremental else self.max_iter):
            history = self.net_.fit(X, train_targets, loss=loss, optimizer=self._optimizer, epochs=1,
                                    batch_size=batch_size, shuffle=self.shuffle, progress=False,
                                    seed=int(self._rng.integers(SEED_RANGE)))
            self.n_iter_ += 1
            self.t_ += len(X)
            self.loss_ = history.history["loss"][-1]
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            self._update_no_improvement_count(early_stopping, X_val, T_val)
            if self.solver == "sgd" and self.learning_rate == "invscaling":  # by samples seen, as scikit-learn
                self._optimizer.lr = float(self.learning_rate_init) / (self.t_ + 1) ** float(self.power_t)
            if incremental:
                break
            if self._no_improvement_count > self.n_iter_no_change:
                watched = "validation score" if early_stopping else "training loss"
                message = (f"{watched} did not improve more than tol={self.tol} for "
                           f"{self.n_iter_no_change} consecutive epochs.")
                if self._adapt_learning_rate(message):
                    self._no_improvement_count = 0
                    continue
                if self.verbose:
                    print(message + " Stopping.")
                break
        else:
            if not incremental:
                warnings.warn(f"Stochastic optimizer: maximum iterations ({self.max_iter}) reached and the "
                              "optimization hasn't converged yet.", ConvergenceWarning, stacklevel=3)
        if early_stopping:
            self.net_.set_weights(self._best_weights)
        return self

    def _adapt_learning_rate(self, message):
        """learning_rate="adaptive" (SGD): divide the rate by 5 instead of stopping, until it is ≤ 1e-6."""
        if self.solver != "sgd" or self.learning_rate != "adaptive" or self._optimizer.lr <= 1e-6:
            return False
        self._optimizer.lr = self._optimizer.lr / 5.0
        if self.verbose:
            print(message + f" Setting learning rate to {self._optimizer.lr:f}")
        return True

    def _update_no_improvement_count(self, early_stopping, X_val, T_val):
        """scikit-learn's stopping rule: count epochs that improved by less than ``tol``."""
        if early_stopping:
            score = self._validation_score(X_val, T_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            self._no_improvement_count = self._no_improvement_count + 1 \
                if score < self.best_validation_score_ + self.tol else 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights = self.net_.get_weights()
        else:
            self._no_improvement_count = self._no_improvement_count + 1 \
                if self.loss_curve_[-1] > self.best_loss_ - self.tol else 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    def _outputs(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32))
        return self.net_.predict(X)

    # ---- pickling: the network lives on a backend, so save its config and weights instead --------------

    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ gives __dict__ itself: copy before popping
        net, optimizer = state.pop("net_", None), state.pop("_optimizer", None)
        if net is not None:
            state["_net_state"] = {"config": net.config(), "weights": net.get_weights()}
            if optimizer is not None:
                state["_optimizer_state"] = optimizer.state_dict(net.backend)
        return state

    def __setstate__(self, state):
        state = dict(state)
        net_state, optimizer_state = state.pop("_net_state", None), state.pop("_optimizer_state", None)
        super().__setstate__(state)
        if net_state is not None:
            self.net_ = build(net_state["config"], self.backend)
            self.net_.set_weights(net_state["weights"])
            if optimizer_state is not None:
                self._optimizer = optim.get(optimizer_state["config"])
                self._optimizer.load_state_dict(self.net_.backend, optimizer_state, self.net_.parameters())


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """A multilayer perceptron classifier with a softmax output, trained by xpnet.

    Parameters as scikit-learn's ``MLPClassifier`` (see the module docstring
    for the differences), plus ``backend`` ("numpy", "numba", "cupy", ...;
    None: xpnet's current default) and ``dtype`` ("float64" or "float32").
    """

    _classifier, _multi_output, _loss = True, False, "softmax_ce"

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y); ``classes`` (every label there will ever be) is needed on the first call."""
        return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)

    def _targets(self, y, fresh, incremental, classes):
        check_classification_targets(y)
        if fresh:
            if incremental and classes is None:
                raise ConfigError("classes must be passed on the first call to partial_fit")
            self.classes_ = np.unique(classes if classes is not None else y)
            if len(self.classes_) < 2:
                raise ConfigError(f"{type(self).__name__} needs samples of at least 2 classes, got 1 class "
                                  f"({self.classes_[0]!r})")
        unseen = np.setdiff1d(y, self.classes_)
        if len(unseen):
            raise ConfigError(f"y has labels {unseen.tolist()} not among classes_ {self.classes_.tolist()} "
                              f"(warm_start and partial_fit keep the classes of the first fit)")
        self._n_outputs = len(self.classes_)
        return np.searchsorted(self.classes_, y)

    def _validation_score(self, X, labels):
        return float(np.mean(self.net_.predict(X).argmax(axis=1) == labels))

    def predict_proba(self, X):
        """Class probabilities, one column per entry of ``classes_``."""
        return losses.get(self._loss).probabilities(self._outputs(X))

    def predict_log_proba(self, X):
        """Log class probabilities (a log-softmax of the outputs: finite where probabilities round to 0)."""
        shifted = np.asarray(self._outputs(X), dtype=np.float64)
        shifted = shifted - shifted.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def predict(self, X):
        outputs = self._outputs(X)  # first: it raises NotFittedError before classes_ exists
        return self.classes_[np.argmax(outputs, axis=1)]

    @property
    def out_activation_(self):
        return "softmax"


class MLPRegressor(RegressorMixin, _BaseMLP):
    """A multilayer perceptron regressor (identity output, mean squared error), trained by xpnet.

    Parameters as scikit-learn's ``MLPRegressor``, plus ``backend`` and
    ``dtype``; y may have several columns (one output each).
    """

    _classifier, _multi_output, _loss = False, True, "mse"

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y)."""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _targets(self, y, fresh, incremental, classes):
        targets = np.asarray(y, dtype=np.float64)
        targets = targets.reshape(len(targets), -1)
        if not fresh and targets.shape[1] != self.net_.n_outputs:
            raise ConfigError(f"y has {targets.shape[1]} columns, the fitted network {self.net_.n_outputs} outputs")
        self._n_outputs = targets.shape[1]
        return targets

    def _validation_score(self, X, targets):
        return float(r2_score(targets, self.net_.predict(X)))

    def predict(self, X):
        outputs = self._outputs(X)
        return outputs[:, 0] if outputs.shape[1] == 1 else outputs

    @property
    def out_activation_(self):
        return "identity"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
