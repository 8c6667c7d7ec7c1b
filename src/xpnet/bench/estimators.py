"""xpnet's scikit-learn estimator against scikit-learn's own MLPClassifier, same settings, on digits.

Both in a StandardScaler pipeline, hidden_layer_sizes=(64,), max_iter=300,
random_state=0, fitted on the whole of digits (best of ``repeats`` fits);
the table gives fit seconds, iterations, training accuracy, and xpnet's fit
time divided by scikit-learn's.
"""
import time
import warnings

from ..errors import BackendUnavailableError
from .common import fmt, markdown_table, quiet, select_backends

SETTINGS = {"hidden_layer_sizes": (64,), "max_iter": 300, "random_state": 0}


def fit_once(make, X, y, repeats):
    """(best seconds, iterations, training accuracy) of a StandardScaler + ``make()`` pipeline."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    best = float("inf")
    for _ in range(repeats):
        model = make_pipeline(StandardScaler(), make())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning, should either stop at max_iter
            start = time.perf_counter()
            model.fit(X, y)
            best = min(best, time.perf_counter() - start)
    return best, int(model[-1].n_iter_), float(model.score(X, y))


def run(backends=None, repeats=3, log=quiet):
    """Fit both estimators on every CPU backend; returns a dict of rows."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.neural_network import MLPClassifier as Reference
    except ImportError:
        raise BackendUnavailableError("the estimator benchmark needs scikit-learn: pip install -e '.[sklearn]'")
    from ..sklearn import MLPClassifier

    X, y = load_digits(return_X_y=True)
    seconds, iterations, accuracy = fit_once(lambda: Reference(**SETTINGS), X, y, repeats)
    rows = [{"estimator": "scikit-learn MLPClassifier", "seconds": seconds, "iterations": iterations,
             "accuracy": accuracy, "ratio": 1.0}]
    log(f"estimators: scikit-learn {seconds:.3g} s, {iterations} iterations")
    for name in select_backends(backends, cpu_only=True):
        seconds, iterations, accuracy = fit_once(lambda name=name: MLPClassifier(backend=name, **SETTINGS), X, y, repeats)
        rows.append({"estimator": f"xpnet MLPClassifier ({name})", "seconds": seconds, "iterations": iterations,
                     "accuracy": accuracy, "ratio": seconds / rows[0]["seconds"]})
        log(f"estimators: xpnet {name} {seconds:.3g} s, {iterations} iterations")
    return {"task": "digits, StandardScaler pipeline, hidden (64,), max_iter=300, random_state=0", "rows": rows}


def table(result):
    headers = ["estimator", "fit (s)", "iterations", "training accuracy", "÷ scikit-learn's time"]
    rows = [[r["estimator"], fmt(r["seconds"]), fmt(r["iterations"]), fmt(r["accuracy"]), fmt(r["ratio"])]
            for r in result["rows"]]
    return "\n".join([f"### scikit-learn estimators: {result['task']}", "", markdown_table(headers, rows)])
