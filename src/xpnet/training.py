"""The fit loop: seeded mini-batches, validation, callbacks, History, progress."""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import callbacks as callbacks_module
from . import losses, optim
from .callbacks import EarlyStopping
from .errors import ConfigError, DivergenceError
from .training_state import TrainingState
from .validation import check_int, check_seed, check_Xy, prepare_targets


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


def fit(net: Any, X: Any, y: Any, loss: str | losses.Loss = "mse", optimizer: str | optim.Optimizer = "sgd",
        epochs: int = 1, batch_size: int | str | None = "auto", *,
        validation_data: tuple[Any, Any] | None = None, validation_split: float = 0.0, shuffle: bool = True,
        early_stopping: bool | int | EarlyStopping | None = None, callbacks: Sequence[Any] | None = None,
        max_norm: float | None = None, clip_norm: float | None = None, gradient: str = "backprop",
        progress: bool = True, seed: int = 0, checkpoint: str | os.PathLike[str] | None = None, every: int = 1,
        resume: str | os.PathLike[str] | None = None, distributed: Any = False) -> History:
    """Train ``net`` on (X, y) and return a History.

    Args:
        loss: "mse", "bce", "bce_logits", "softmax_ce" or an xn.losses.Loss.
        optimizer: "sgd", "rmsprop", "adam" or an xn.optim optimiser (its lr a number or an xn.schedules one).
        epochs: passes over the data (when resuming: the total, counting the epochs already done).
        batch_size: rows per step; "auto" is 32 (or all the data when there is less); None trains full-batch;
            a larger batch than the data is clipped with a warning.
        validation_data: (X_val, y_val) to evaluate after every epoch (val_loss, val_accuracy).
        validation_split: the fraction of (X, y) held out as validation data instead, drawn from ``seed``.
        shuffle: visit the rows in a new order, drawn from ``seed``, every epoch.
        early_stopping: True, a patience or an xn.callbacks.EarlyStopping (same as passing it in callbacks).
        callbacks: objects with any of on_train_begin, on_epoch_begin, on_epoch_end, on_train_end (xn.callbacks).
        max_norm: cap each unit's incoming weight norm after every update.
        clip_norm: clip the global gradient norm before every update.
        gradient: "backprop" or "finite_difference".
        progress: show a progress bar (tqdm) with the last epoch's metrics.
        seed: seeds the validation split, the shuffles and dropout.
        checkpoint: a folder: write ``epoch-NNNNNN.npz`` there every ``every`` epochs and when fit ends.
        every: epochs between checkpoints.
        resume: a checkpoint written by fit(checkpoint=...) (or its folder, for the latest) to continue from.
        distributed: True or an xn.distributed.DataParallel: split every batch over the MPI ranks.

    Every epoch's metrics go to History and to the callbacks: loss, accuracy (for
    classifiers), val_loss and val_accuracy (with validation data), lr (the
    learning rate of the epoch's last step) and samples_per_sec.

    A loss that becomes NaN/inf raises DivergenceError naming the epoch and
    batch; Ctrl-C returns the History so far; a callback that raises stops fit
    with its own exception. Each way the net and the optimiser are left as they
    were after the last completed epoch (with early stopping, Ctrl-C leaves the
    best weights). A resumed run gives the results an uninterrupted run would
    give, schedules included. With ``distributed`` every rank calls fit with the
    same data and seed; rank 0 alone shows progress and writes checkpoints.

    Examples:
        >>> import xpnet as xn
        >>> X, y = xn.datasets.spirals(n=200, seed=0)
        >>> net = xn.MLP([2, 16, 16, 2], activation="tanh", seed=0)
        >>> hist = net.fit(X, y, loss="softmax_ce", optimizer=xn.optim.Adam(0.01), epochs=5, progress=False)
        >>> len(hist.history["loss"])
        5
    """
    loss, optimizer = losses.get(loss), optim.get(optimizer)
    epochs, every = check_int("epochs", epochs, 0), check_int("every", every, 1)
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise ConfigError(f"checkpoint must be a folder path or None, got {checkpoint!r}")
    X, y = check_Xy(X, y, net.input_shape)
    rng = np.random.default_rng(check_seed(seed))
    X, y, X_val, y_val = _validation(net, X, y, validation_data, validation_split, rng)
    n = len(X)
    batch_size = _batch_size(batch_size, n)
    stopper, callbacks = _callbacks(early_stopping, callbacks)
    _check_monitors(optimizer, callbacks, _metric_names(loss, X_val is not None))

    backend = net.backend
    dtype = backend.dtype(net.dtype)
    Xd, Td = backend.asarray(X, dtype=dtype), backend.asarray(prepare_targets(net, loss, y), dtype=dtype)
    val = None
    if X_val is not None:
        val = backend.asarray(X_val, dtype=dtype), backend.asarray(prepare_targets(net, loss, y_val), dtype=dtype)
    # Everything that decides the numbers a run produces; resuming needs the same.
    run = {"n_samples": n, "n_val": None if X_val is None else len(X_val), "seed": seed, "shuffle": bool(shuffle),
           "batch_size": batch_size, "validation_split": validation_split, "loss": loss.config(),
           "gradient": gradient, "max_norm": max_norm, "clip_norm": clip_norm,
           "early_stopping": None if stopper is None else stopper.config()}
    run = json.loads(json.dumps(run, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    history = History()
    if resume is not None:  # before compile, so a compiled step sees the restored arrays
        state = TrainingState.load(resume, net, optimizer, run)
        optimizer.state = None  # whatever it held before, it now takes the saved state
        state.restore(net, optimizer, rng, history)
        if stopper is not None:
            stopper.best, stopper.waited, stopper.best_weights = state.best, state.waited, state.best_params
            stopper.best_epoch = history.best_epoch
            history.stopped_early = stopper.stopped
    step = net.compile(loss, optimizer, gradient=gradient, max_norm=max_norm, clip_norm=clip_norm)
    if distributed:  # every batch split over the MPI ranks; rank 0 alone shows progress and writes checkpoints
        from .distributed import data_parallel

        step = data_parallel(net, distributed).wrap(step)
        progress = progress and step.dp.rank == 0
        checkpoint = checkpoint if step.dp.rank == 0 else None
        if step.dp.rank != 0:  # the other ranks see the same metrics, so they stop alike, but write nothing
            callbacks = [c for c in callbacks if not getattr(c, "writes_files", False)]

    def capture():
        best = (stopper.best, stopper.waited, stopper.best_weights) if stopper is not None else (math.inf, 0, None)
        return TrainingState.capture(net, optimizer, rng, history.epochs, history, *best)

    def roll_back():
        completed.restore(net, optimizer, rng, history)
        if stopper is not None:
            stopper.best, stopper.waited, stopper.best_weights = completed.best, completed.waited, \
                completed.best_params

    for callback in callbacks:
        _call(callback, "on_train_begin", net, history)
    completed = capture()  # the state fit returns to on Ctrl-C, divergence or a failing callback
    bar = _progress(epochs, progress, initial=history.epochs)
    try:
        for epoch in range(history.epochs + 1, epochs + 1):
            if history.stopped_early:
                break
            for callback in callbacks:
                _call(callback, "on_epoch_begin", epoch)
            metrics = _epoch(net, step, loss, optimizer, rng, Xd, Td, val, shuffle, batch_size, completed, epoch)
            history.append(**metrics)
            if optimizer.schedule is not None:
                optimizer.schedule.epoch_end(metrics)
            _report(bar, epoch, metrics)
            stop = False
            for callback in callbacks:
                stop = bool(_call(callback, "on_epoch_end", epoch, dict(metrics))) | stop
                stop = stop or bool(getattr(callback, "stop_training", False))
            history.stopped_early = stop
            if stopper is not None:
                history.best_epoch = stopper.best_epoch
            completed = capture()
            if checkpoint is not None and (epoch % every == 0 or epoch == epochs or history.stopped_early):
                completed.save(checkpoint, net, optimizer, run)
    except KeyboardInterrupt:
        roll_back()
        history.interrupted = True
        if checkpoint is not None and completed.epoch > 0:
            completed.save(checkpoint, net, optimizer, run)
    except BaseException:
        roll_back()
        raise
    finally:
        if bar is not None:
            bar.close()
    if stopper is not None and stopper.restore_best and stopper.best_weights is not None:
        _restore(net, stopper.best_weights)
    for callback in callbacks:
        _call(callback, "on_train_end", history)
    return history


def _validation(net, X, y, validation_data, validation_split, rng):
    """(X, y, X_val, y_val): the validation data given, or a split of (X, y), or none (X_val = y_val = None)."""
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            got = f"{len(validation_data)} items" if isinstance(validation_data, (tuple, list)) else \
                type(validation_data).__name__
            raise ConfigError(f"validation_data must be a pair (X_val, y_val), got {got}")
        return (X, y, *check_Xy(*validation_data, net.input_shape))
    if validation_split:
        return split_validation(X, y, validation_split, rng)
    return X, y, None, None


def _batch_size(batch_size, n):
    if batch_size is None or batch_size == "auto":
        batch_size = n if batch_size is None else min(32, n)
    batch_size = check_int("batch_size", batch_size, 1)
    if batch_size > n:
        warnings.warn(f"batch_size={batch_size} is larger than the {n} training samples; using {n}", stacklevel=4)
        batch_size = n
    return batch_size


def _callbacks(early_stopping, callbacks):
    """(the one EarlyStopping or None, every callback with it first), each checked and reset for a new run."""
    callbacks = callbacks_module.check(callbacks)
    stoppers = [c for c in callbacks if isinstance(c, EarlyStopping)]
    stopper = EarlyStopping.get(early_stopping)
    if stopper is not None:
        stoppers.insert(0, stopper)
        callbacks.insert(0, stopper)
    if len(stoppers) > 1:
        raise ConfigError(f"give one EarlyStopping (through early_stopping= or callbacks=), got {len(stoppers)}")
    stopper = stoppers[0] if stoppers else None
    if stopper is not None:
        stopper.reset()
    return stopper, callbacks


def _metric_names(loss, validating):
    names = ["loss", "accuracy"] if loss.classifier else ["loss"]
    return names + [f"val_{name}" for name in names if validating] + ["lr", "samples_per_sec"]


def _check_monitors(optimizer, callbacks, names):
    """ConfigError before training when a callback or the schedule watches a metric this fit will not record."""
    watchers = [("ReduceOnPlateau", optimizer.schedule)] + [(type(c).__name__, c) for c in callbacks]
    for owner, watcher in watchers:
        monitor = getattr(watcher, "monitor", None)
        if isinstance(monitor, str):
            callbacks_module.resolve_monitor("early stopping" if owner == "EarlyStopping" else owner, monitor, names)


def _call(callback, hook, *args):
    method = getattr(callback, hook, None)
    return method(*args) if callable(method) else None


def _epoch(net, step, loss, optimizer, rng, Xd, Td, val, shuffle, batch_size, completed, epoch):
    """Train one epoch and return its metrics; DivergenceError (the net rolled back) if it diverged."""
    backend, n = net.backend, Xd.shape[0]
    order = backend.asarray(rng.permutation(n)) if shuffle else None
    net.reseed(int(rng.integers(2**63)))  # dropout seeds drawn from the same stream: one state to save
    start = time.perf_counter()
    batch_losses, weights_finite = _epoch_losses(net, step.run_epoch(Xd, Td, order, batch_size))
    seconds = time.perf_counter() - start
    _check_diverged(net, optimizer, completed, batch_losses, weights_finite, epoch)
    sizes = np.diff(np.minimum(np.arange(0, n + batch_size, batch_size), n))
    metrics = {"loss": float(np.dot(batch_losses, sizes) / n)}
    if loss.classifier:
        metrics["accuracy"] = evaluate(net, loss, Xd, Td)[1]
    if val is not None:
        metrics["val_loss"], val_accuracy = evaluate(net, loss, *val)
        if val_accuracy is not None:
            metrics["val_accuracy"] = val_accuracy
    metrics["lr"] = _last_rate(optimizer)
    metrics["samples_per_sec"] = n / seconds if seconds > 0 else math.inf
    # A device memory pool's bookkeeping (host counters, no device sync): memory_used_bytes, memory_total_bytes.
    metrics.update({f"memory_{key}": value for key, value in backend.memory_info().items()})
    return metrics


def _last_rate(optimizer):
    """The learning rate the optimiser's last step used."""
    schedule = optimizer.schedule
    if schedule is None or not schedule.per_step:
        return float(optimizer.lr)
    return float(schedule(max(optimizer.steps - 1, 0)))


def _epoch_losses(net, losses):
    """(batch losses, whether every weight is finite after the epoch's last update) in one read from the device."""
    xp = net.backend.xp
    finite = xp.all(xp.stack([xp.all(xp.isfinite(p)) for p in net.parameters()]))
    host = net.backend.to_numpy(xp.concat([losses, xp.reshape(xp.astype(finite, losses.dtype), (1,))]))
    return host[:-1], bool(host[-1])


def _check_diverged(net, optimizer, completed, batch_losses, weights_finite, epoch):
    """DivergenceError, with net and optimiser rolled back, if a loss or (after the last update) a weight is not finite."""
    bad_loss = not np.all(np.isfinite(batch_losses))
    if not bad_loss and weights_finite:
        return
    completed.restore(net, optimizer)
    total = len(batch_losses)
    if bad_loss:
        batch = int(np.argmin(np.isfinite(batch_losses))) + 1
        what = f"the training loss became {batch_losses[batch - 1]} in epoch {epoch}, batch {batch} of {total}"
    else:
        what = f"the weights became NaN or infinite in the last update of epoch {epoch} (batch {total} of {total})"
    raise DivergenceError(f"{what}; the net and optimiser keep the state they had after epoch {epoch - 1}. "
                          f"Try a smaller learning rate or fit(clip_norm=...).")


def _restore(net, arrays):
    for param, saved in zip(net.parameters(), arrays):
        param[...] = saved


def _progress(epochs, enabled, initial=0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, initial=initial, unit="epoch", dynamic_ncols=True)


def _report(bar, epoch, metrics):
    if bar is None:
        return
    bar.update(1)
    bar.set_postfix({k.replace("samples_per_sec", "samples/s"): f"{v:.4g}" for k, v in metrics.items()
                     if not k.startswith("memory_")}, refresh=False)
