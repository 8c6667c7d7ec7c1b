"""The fit loop: seeded mini-batches, validation, early stopping, History, progress."""
import json
import math
import os
import time
import warnings

import numpy as np

from . import losses, optim
from .errors import ConfigError, DivergenceError
from .training_state import TrainingState
from .validation import check_int, check_seed, check_Xy, prepare_targets


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


def fit(net, X, y, loss="mse", optimizer="sgd", epochs=1, batch_size="auto", validation_data=None,
        validation_split=0.0, shuffle=True, early_stopping=None, max_norm=None, clip_norm=None, gradient="backprop",
        progress=True, seed=0, checkpoint=None, every=1, resume=None, distributed=False):
    """Train ``net`` on (X, y) and return a History.

    batch_size="auto" is 32 (or all the data when there is less); None trains
    full-batch; a larger batch than the data is clipped with a warning. Each
    epoch visits the data in an order drawn from ``seed``, which also seeds the
    validation split and dropout. ``clip_norm`` clips the global gradient norm
    before each update; ``max_norm`` caps each unit's weight norm after it.

    A loss that becomes NaN/inf raises DivergenceError naming the epoch and
    batch; Ctrl-C returns the History so far. Either way the net and the
    optimiser are left as they were after the last completed epoch (with early
    stopping, Ctrl-C leaves the best weights). ``checkpoint="dir"`` writes
    ``dir/epoch-NNNNNN.npz`` every ``every`` epochs and when fit ends;
    ``resume="dir/epoch-NNNNNN.npz"`` (or the folder, for its latest) continues
    that run to ``epochs`` with the results an uninterrupted run would give.

    ``distributed=True`` (or an ``xn.distributed.DataParallel``) splits every
    batch over the MPI ranks (see xpnet.distributed): every rank calls fit with
    the same data and seed; rank 0 alone shows progress and writes checkpoints.

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
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            got = f"{len(validation_data)} items" if isinstance(validation_data, (tuple, list)) else \
                type(validation_data).__name__
            raise ConfigError(f"validation_data must be a pair (X_val, y_val), got {got}")
        X_val, y_val = check_Xy(*validation_data, net.input_shape)
    elif validation_split:
        X, y, X_val, y_val = split_validation(X, y, validation_split, rng)
    else:
        X_val = y_val = None
    n = len(X)
    if batch_size is None or batch_size == "auto":
        batch_size = n if batch_size is None else min(32, n)
    batch_size = check_int("batch_size", batch_size, 1)
    if batch_size > n:
        warnings.warn(f"batch_size={batch_size} is larger than the {n} training samples; using {n}", stacklevel=3)
        batch_size = n
    stopper = EarlyStopping.get(early_stopping)
    monitor = None if stopper is None else ("val_loss" if X_val is not None else "loss") \
        if stopper.monitor == "auto" else stopper.monitor
    if monitor == "val_loss" and X_val is None:
        raise ConfigError("early stopping on val_loss needs validation_data or validation_split")

    backend = net.backend
    dtype = backend.dtype(net.dtype)
    Xd, Td = backend.asarray(X, dtype=dtype), backend.asarray(prepare_targets(net, loss, y), dtype=dtype)
    if X_val is not None:
        Xv, Tv = backend.asarray(X_val, dtype=dtype), backend.asarray(prepare_targets(net, loss, y_val), dtype=dtype)
    # Everything that decides the numbers a run produces; resuming needs the same.
    run = {"n_samples": n, "n_val": None if X_val is None else len(X_val), "seed": seed, "shuffle": bool(shuffle),
           "batch_size": batch_size, "validation_split": validation_split, "loss": loss.config(),
           "gradient": gradient, "max_norm": max_norm, "clip_norm": clip_norm,
           "early_stopping": None if stopper is None else vars(stopper)}
    run = json.loads(json.dumps(run, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    history = History()
    best, best_weights, waited = math.inf, None, 0
    if resume is not None:  # before compile, so a compiled step sees the restored arrays
        state = TrainingState.load(resume, net, optimizer, run)
        optimizer.state = None  # whatever it held before, it now takes the saved state
        state.restore(net, optimizer, rng, history)
        best, waited, best_weights = state.best, state.waited, state.best_params
        history.stopped_early = stopper is not None and waited >= stopper.patience
    step = net.compile(loss, optimizer, gradient=gradient, max_norm=max_norm, clip_norm=clip_norm)
    step.notices = progress  # a step that compiles on first use says so, unless progress=False
    if distributed:  # every batch split over the MPI ranks; rank 0 alone shows progress and writes checkpoints
        from .distributed import data_parallel

        step = data_parallel(net, distributed).wrap(step)
        progress = progress and step.dp.rank == 0
        checkpoint = checkpoint if step.dp.rank == 0 else None

    def capture():
        return TrainingState.capture(net, optimizer, rng, history.epochs, history, best, waited, best_weights)

    completed = capture()  # the state fit returns to on Ctrl-C or divergence
    bar = _progress(epochs, progress, initial=history.epochs)
    try:
        for epoch in range(history.epochs + 1, epochs + 1):
            if history.stopped_early:
                break
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
                    history.stopped_early = waited >= stopper.patience
            completed = capture()
            if checkpoint is not None and (epoch % every == 0 or epoch == epochs or history.stopped_early):
                completed.save(checkpoint, net, optimizer, run)
    except KeyboardInterrupt:
        completed.restore(net, optimizer, rng, history)
        history.interrupted = True
        if checkpoint is not None and completed.epoch > 0:
            completed.save(checkpoint, net, optimizer, run)
    finally:
        if bar is not None:
            bar.close()
    if completed.best_params is not None:
        _restore(net, completed.best_params)
    return history


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
