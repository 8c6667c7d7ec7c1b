"""The fit loop: seeded mini-batches, validation, early stopping, History, progress."""
import math
import time
import warnings

import numpy as np

from . import losses, optim
from .errors import ConfigError, DivergenceError
from .validation import check_Xy


class EarlyStopping:
    """Stop when the monitored loss has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor="auto"`` watches val_loss when there is validation data, loss
    otherwise. With ``restore_best=True`` the net ends with the best weights seen.
    """

    def __init__(self, patience=10, min_delta=0.0, monitor="auto", restore_best=True):
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ConfigError(f"early stopping patience must be a positive integer, got {patience!r}")
        if monitor not in ("auto", "loss", "val_loss"):
            raise ConfigError(f"early stopping monitor must be 'auto', 'loss' or 'val_loss', got {monitor!r}")
        self.patience, self.min_delta, self.monitor, self.restore_best = patience, float(min_delta), monitor, restore_best

    @classmethod
    def get(cls, spec):
        """None/False → None; True → defaults; an int → that patience; an EarlyStopping as is."""
        if spec is None or spec is False:
            return None
        if spec is True:
            return cls()
        return spec if isinstance(spec, cls) else cls(patience=spec)


class History:
    """Per-epoch metrics in ``history``: loss, accuracy, val_loss, val_accuracy, samples_per_sec.

    On a backend with a device memory pool (CuPy) also memory_used_bytes and memory_total_bytes.
    """

    def __init__(self):
        self.history = {}
        self.epochs = 0
        self.best_epoch = None
        self.stopped_early = False
        self.interrupted = False

    def append(self, **metrics):
        for key, value in metrics.items():
            self.history.setdefault(key, []).append(value)
        self.epochs += 1

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        last = ", ".join(f"{k}={v[-1]:.4g}" for k, v in self.history.items())
        return f"<History {self.epochs} epochs: {last}>"


def evaluate(net, loss, X, T, batch_size=4096):
    """(mean loss, accuracy or None) of ``net`` on prepared backend arrays, dropout off, in batches."""
    backend = net.backend
    n = X.shape[0]
    total, correct = 0.0, 0
    for start in range(0, n, batch_size):
        Xb, Tb = X[start:min(start + batch_size, n), ...], T[start:min(start + batch_size, n), ...]
        out = net.forward_prepared(Xb, training=False)
        total = total + loss.value(backend, out, Tb) * Xb.shape[0]
        if loss.classifier:
            correct = correct + loss.correct(backend, out, Tb)
    accuracy = backend.scalar(correct) / n if loss.classifier else None
    return backend.scalar(total) / n, accuracy


def split_validation(X, y, fraction, rng):
    """A seeded random split of (X, y) into training and validation parts."""
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation_split must be in [0, 1), got {fraction!r}")
    n_val = int(round(fraction * len(X)))
    if fraction and not 0 < n_val < len(X):
        raise ConfigError(f"validation_split={fraction} leaves no samples on one side of {len(X)}")
    order = rng.permutation(len(X))
    val, train = order[:n_val], order[n_val:]
    return X[train], y[train], X[val], y[val]


def _check_int(name, value, low):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}")
    return int(value)


def fit(net, X, y, loss="mse", optimizer="sgd", epochs=1, batch_size="auto", validation_data=None,
        validation_split=0.0, shuffle=True, early_stopping=None, max_norm=None, gradient="backprop",
        progress=True, seed=0, distributed=False):
    """Train ``net`` on (X, y) and return a History.

    batch_size="auto" is 32 (or all the data when there is less); None trains
    full-batch; a larger batch than the data is clipped with a warning. Each epoch visits the data in an order drawn from
    ``seed``, which also seeds the validation split and dropout. Ctrl-C stops
    training cleanly: the History so far comes back and the net keeps its last
    completed (or, with early stopping, best) weights. ``distributed=True``
    (or an ``xn.distributed.DataParallel``) splits every batch over the MPI
    ranks (see xpnet.distributed): every rank calls fit with the same data and seed.

    >>> import xpnet as xn
    >>> X, y = xn.datasets.spirals(n=200, seed=0)
    >>> net = xn.MLP([2, 16, 16, 2], activation="tanh", seed=0)
    >>> hist = net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.Adam(0.01), epochs=5, progress=False)
    >>> len(hist.history["loss"])
    5
    """
    loss, optimizer = losses.get(loss), optim.get(optimizer)
    epochs = _check_int("epochs", epochs, 0)
    X, y = check_Xy(X, y, net.n_inputs)
    rng = np.random.default_rng(seed)
    if validation_data is not None:
        X_val, y_val = check_Xy(*validation_data, net.n_inputs)
    elif validation_split:
        X, y, X_val, y_val = split_validation(X, y, validation_split, rng)
    else:
        X_val = y_val = None
    n = len(X)
    if batch_size is None or batch_size == "auto":
        batch_size = n if batch_size is None else min(32, n)
    batch_size = _check_int("batch_size", batch_size, 1)
    if batch_size > n:
        warnings.warn(f"batch_size={batch_size} is larger than the {n} training samples; using {n}", stacklevel=3)
        batch_size = n
    stopper = EarlyStopping.get(early_stopping)

    backend = net.backend
    dtype = backend.dtype(net.dtype)
    Xd, Td = backend.asarray(X, dtype=dtype), backend.asarray(loss.prepare(y, net.n_outputs), dtype=dtype)
    if X_val is not None:
        Xv, Tv = backend.asarray(X_val, dtype=dtype), backend.asarray(loss.prepare(y_val, net.n_outputs), dtype=dtype)
    step = net.compile(loss, optimizer, gradient=gradient, max_norm=max_norm)
    if distributed:  # every batch split over the MPI ranks; rank 0 alone shows progress
        from .distributed import data_parallel

        step = data_parallel(net, distributed).wrap(step)
        progress = progress and step.dp.rank == 0
    net.reseed(seed)

    history = History()
    monitor = None if stopper is None else ("val_loss" if X_val is not None else "loss") \
        if stopper.monitor == "auto" else stopper.monitor
    if monitor == "val_loss" and X_val is None:
        raise ConfigError("early stopping on val_loss needs validation_data or validation_split")
    best, best_weights, waited = math.inf, None, 0
    last_good = [backend.xp.asarray(p, copy=True) for p in net.parameters()]
    bar = _progress(epochs, progress)
    try:
        for epoch in range(1, epochs + 1):
            order = backend.asarray(rng.permutation(n)) if shuffle else None
            start = time.perf_counter()
            batch_losses = backend.to_numpy(step.run_epoch(Xd, Td, order, batch_size))  # waits for the device
            seconds = time.perf_counter() - start
            if not np.all(np.isfinite(batch_losses)):
                _restore(net, last_good)
                batch = int(np.argmin(np.isfinite(batch_losses))) + 1
                raise DivergenceError(f"the training loss became {batch_losses[batch - 1]} in epoch {epoch}, batch "
                                      f"{batch} of {len(batch_losses)}; the net keeps the weights it had after epoch "
                                      f"{epoch - 1}. Try a smaller learning rate.")
            sizes = np.diff(np.minimum(np.arange(0, n + batch_size, batch_size), n))
            train_loss = float(np.dot(batch_losses, sizes) / n)
            last_good = [backend.xp.asarray(p, copy=True) for p in net.parameters()]
            metrics = {"loss": train_loss}
            if loss.classifier:
                metrics["accuracy"] = evaluate(net, loss, Xd, Td)[1]
            if X_val is not None:
                metrics["val_loss"], val_accuracy = evaluate(net, loss, Xv, Tv)
                if val_accuracy is not None:
                    metrics["val_accuracy"] = val_accuracy
            metrics["samples_per_sec"] = n / seconds if seconds > 0 else math.inf
            # A device memory pool's bookkeeping (host counters, no device sync): memory_used_bytes, memory_total_bytes.
            metrics.update({f"memory_{key}": value for key, value in backend.memory_info().items()})
            history.append(**metrics)
            _report(bar, epoch, metrics)
            if stopper is not None:
                if metrics[monitor] < best - stopper.min_delta:
                    best, waited, history.best_epoch = metrics[monitor], 0, epoch
                    if stopper.restore_best:
                        best_weights = [backend.xp.asarray(p, copy=True) for p in net.parameters()]
                else:
                    waited += 1
                    if waited >= stopper.patience:
                        history.stopped_early = True
                        break
    except KeyboardInterrupt:
        history.interrupted = True
        _restore(net, last_good)
    finally:
        if bar is not None:
            bar.close()
    if best_weights is not None:
        _restore(net, best_weights)
    return history


def _restore(net, arrays):
    for param, saved in zip(net.parameters(), arrays):
        param[...] = saved


def _progress(epochs, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, unit="epoch", dynamic_ncols=True)


def _report(bar, epoch, metrics):
    if bar is None:
        return
    bar.update(1)
    bar.set_postfix({k.replace("samples_per_sec", "samples/s"): f"{v:.4g}" for k, v in metrics.items()
                     if not k.startswith("memory_")}, refresh=False)
