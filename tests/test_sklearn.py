"""scikit-learn estimators: scikit-learn's own estimator checks, Pipeline, GridSearchCV, stopping rules, pickling."""
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the estimators need scikit-learn (pip install 'xpnet[sklearn]')")
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import xpnet as xn  # noqa: E402
from xpnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402



# check_estimator's checks, one pytest test each (parametrize_with_checks is its pytest form), at the defaults
# but max_iter=50, which scikit-learn's own MLPs pass: the same settings must learn as much per iteration.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks([MLPClassifier(max_iter=50), MLPRegressor(max_iter=50)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def moons(n=300, seed=0):
    return xn.datasets.moons(n=n, noise=0.15, seed=seed)


def test_classifier_learns_and_exposes_scikit_learns_fitted_attributes():
    X, y = moons()
    clf = MLPClassifier(hidden_layer_sizes=(16, 8), activation="tanh", learning_rate_init=0.01, max_iter=300,
                        random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.95
    assert clf.classes_.tolist() == [0, 1] and clf.n_features_in_ == 2
    assert [W.shape for W in clf.coefs_] == [(2, 16), (16, 8), (8, 2)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (8,), (2,)]
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 2 and clf.out_activation_ == "softmax"
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.t_ == clf.n_iter_ * len(X)
    proba = clf.predict_proba(X[:5])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X[:5]))
    np.testing.assert_allclose(clf.net_.predict(X[:5]), np.log(proba) - np.log(proba).mean(axis=1, keepdims=True)
                               + clf.net_.predict(X[:5]).mean(axis=1, keepdims=True), rtol=1e-6, atol=1e-9)


def test_tol_stops_early_and_max_iter_warns():
    X, y = moons()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), learning_rate_init=0.05, tol=1e-2, n_iter_no_change=3,
                            max_iter=500, random_state=0).fit(X, y)
    assert clf.n_iter_ < 500
    curve = np.array(clf.loss_curve_)
    best_before = np.minimum.accumulate(curve)[:-1]  # best_before[k - 1]: the best loss before epoch k
    stalled = curve[1:] > best_before - 1e-2  # epoch k did not improve on the best so far by tol
    assert stalled[-4:].all()  # the last n_iter_no_change + 1 epochs stalled: that is why it stopped
    assert not stalled[-5:].all() or len(curve) == 5  # and not one epoch later than that
    with pytest.warns(ConvergenceWarning, match=r"maximum iterations \(3\)"):
        MLPClassifier(max_iter=3, random_state=0).fit(X, y)


def test_early_stopping_keeps_the_best_validation_weights():
    X, y = moons(400)
    clf = MLPClassifier(hidden_layer_sizes=(32, 32), learning_rate_init=0.02, early_stopping=True,
                        validation_fraction=0.2, n_iter_no_change=5, max_iter=300, random_state=0).fit(X, y)
    assert clf.best_loss_ is None and len(clf.validation_scores_) == clf.n_iter_ < 300
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert clf.score(X, y) > 0.9


def test_partial_fit_and_warm_start_continue_training():
    X, y = moons()
    clf = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:150], y[:150], classes=[0, 1])
    before = clf.coefs_[0].copy()
    clf.partial_fit(X[150:], y[150:])
    assert clf.n_iter_ == 2 and not np.array_equal(before, clf.coefs_[0])
    with pytest.raises(ValueError, match=r"labels \[2\] not among classes_"):
        clf.partial_fit(X[:3], [0, 1, 2])

    warm = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, warm_start=True, random_state=0)
    with pytest.warns(ConvergenceWarning):
        warm.fit(X, y)
    weights = warm.coefs_[0].copy()
    with pytest.warns(ConvergenceWarning):
        warm.fit(X, y)
    assert warm.n_iter_ == 10 and len(warm.loss_curve_) == 10
    assert warm.loss_curve_[5] < warm.loss_curve_[0] and not np.array_equal(weights, warm.coefs_[0])


def test_pickled_estimator_predicts_and_trains_on_identically():
    X, y = moons()
    clf = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", momentum=0.9, random_state=0)
    clf.partial_fit(X, y, classes=[0, 1])
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)  # same momentum state and shuffling stream after unpickling
    for a, b in zip(clf.coefs_, copy.coefs_):
        np.testing.assert_array_equal(a, b)


def test_string_labels_and_multiclass():
    X, y = xn.datasets.spirals(n=300, classes=3, seed=0)
    names = np.array(["red", "green", "blue"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(32, 32), activation="tanh", learning_rate_init=0.01, max_iter=200,
                        random_state=0).fit(X, names)
    assert clf.classes_.tolist() == ["blue", "green", "red"]
    assert set(clf.predict(X)) <= set(names) and clf.score(X, names) > 0.9


def test_regressor_fits_a_curve_and_several_outputs():
    x = np.linspace(-3, 3, 200).reshape(-1, 1)
    y = np.column_stack([np.sin(x[:, 0]), np.cos(x[:, 0])])
    reg = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", learning_rate_init=0.01, max_iter=500,
                       tol=1e-6, random_state=0).fit(x, y)
    assert reg.predict(x).shape == (200, 2) and reg.score(x, y) > 0.95
    one = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", learning_rate_init=0.01, max_iter=500,
                       tol=1e-6, random_state=0).fit(x, y[:, 0])
    assert one.predict(x).shape == (200,) and one.score(x, y[:, 0]) > 0.95 and one.out_activation_ == "identity"


@pytest.mark.parametrize("solver", ["sgd", "rmsprop", "adam"])
def test_every_solver_trains(solver):
    X, y = moons()
    clf = MLPClassifier(hidden_layer_sizes=(16,), solver=solver, learning_rate_init=0.05 if solver == "sgd" else 0.01,
                        max_iter=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assert clf.fit(X, y).score(X, y) > 0.85


def test_bad_parameters_fail_at_fit_with_readable_messages():
    X, y = moons(50)
    with pytest.raises(ValueError, match="'lbfgs' is not available in xpnet"):
        MLPClassifier(solver="lbfgs").fit(X, y)
    with pytest.raises(ValueError, match="Did you mean 'logistic'"):
        MLPClassifier(activation="logistc").fit(X, y)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be positive integers"):
        MLPClassifier(hidden_layer_sizes=(4, 0)).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        MLPClassifier().fit(X, np.zeros(50))


def test_backend_parameter_gives_the_same_model(backend):
    X, y = moons(100)
    params = dict(hidden_layer_sizes=(8,), learning_rate_init=0.01, max_iter=20, random_state=0, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        here = MLPClassifier(backend=backend.name if backend.name != "array_api_strict" else backend, **params)
        here.fit(X, y)
        reference = MLPClassifier(backend="numpy", **params).fit(X, y)
    assert here.net_.backend.name == backend.name
    np.testing.assert_allclose(here.predict_proba(X), reference.predict_proba(X), rtol=1e-9, atol=1e-12)


def test_pipeline_and_grid_search():
    X, y = moons(200)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(batch_size=32, learning_rate_init=0.02, max_iter=40,
                                                          random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(2,), (16,)],
                               "mlpclassifier__activation": ["relu", "tanh"]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
    assert len(grid.cv_results_["params"]) == 4
    assert grid.best_params_["mlpclassifier__hidden_layer_sizes"] == (16,)  # 2 units cannot bend around the moons
    assert grid.best_score_ > 0.9 and grid.score(X, y) > 0.9


def test_verbose_prints_each_iteration(capsys):
    X, y = moons(60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, verbose=True, random_state=0).fit(X, y.astype(float))
    out = capsys.readouterr().out
    assert [line.split(",")[0] for line in out.splitlines()] == ["Iteration 1", "Iteration 2", "Iteration 3"]


@pytest.mark.parametrize("make, predict", [
    (lambda: MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0), "predict_proba"),
    (lambda: MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", max_iter=30, random_state=0), "predict"),
], ids=["classifier", "regressor"])
def test_sample_weight_trains_as_repeated_rows_would(make, predict):
    X, y = moons(40)
    weights = np.random.default_rng(0).integers(0, 4, size=len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = make().fit(X, y, sample_weight=weights)  # 40 rows ≤ 200: one full batch, as the repeated ones
        repeated = make().fit(np.repeat(X, weights, axis=0), np.repeat(y, weights))
        unweighted = make().fit(X, y)
    assert weighted.n_iter_ == repeated.n_iter_
    np.testing.assert_allclose(getattr(weighted, predict)(X), getattr(repeated, predict)(X), rtol=1e-7, atol=1e-9)
    assert not np.allclose(getattr(weighted, predict)(X), getattr(unweighted, predict)(X))
    with pytest.raises(ValueError, match="non-zero"):
        make().fit(X, y, sample_weight=np.zeros(len(X)))


def test_predict_log_proba_is_the_log_of_predict_proba_and_stays_finite():
    X, y = moons(100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, y)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(clf.predict_proba(X)), rtol=1e-10)
    far = X * 1e6  # probabilities round to 0 and 1 there
    assert np.all(np.isfinite(clf.predict_log_proba(far)))


def test_invscaling_and_adaptive_learning_rates_follow_scikit_learn():
    X, y = moons(100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        inv = MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate="invscaling", power_t=0.5,
                            learning_rate_init=0.1, max_iter=7, random_state=0).fit(X, y)
        assert inv._optimizer.lr == pytest.approx(0.1 / (inv.t_ + 1) ** 0.5) and inv.t_ == 700
        # tol so large that no epoch counts as an improvement: 'constant' stops, 'adaptive' divides the rate by 5
        options = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate_init=0.1, tol=10.0, n_iter_no_change=2,
                       max_iter=12, random_state=0)
        constant = MLPClassifier(learning_rate="constant", **options).fit(X, y)
        adaptive = MLPClassifier(learning_rate="adaptive", **options).fit(X, y)
    assert constant.n_iter_ == 4 and constant._optimizer.lr == 0.1
    assert adaptive.n_iter_ == 12 and adaptive._optimizer.lr == pytest.approx(0.1 / 5**3)
    with pytest.raises(ValueError, match="Did you mean 'adaptive'"):
        MLPClassifier(learning_rate="adaptiv").fit(X, y)


def test_a_backend_object_survives_clone_pickle_and_grid_search():
    from sklearn.base import clone

    backend = xn.get_backend("numpy")
    X, y = moons(60)
    clf = MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0, backend=backend)
    assert clone(clf).backend is backend and pickle.loads(pickle.dumps(clf)).backend is backend
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid = GridSearchCV(clf, {"hidden_layer_sizes": [(2,), (4,)]}, cv=2).fit(X, y)
        fitted = pickle.loads(pickle.dumps(grid.best_estimator_))
    assert fitted.net_.backend is backend
    np.testing.assert_array_equal(fitted.predict(X), grid.best_estimator_.predict(X))
