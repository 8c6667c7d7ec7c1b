"""Callbacks: code fit runs at the start and end of training and of every epoch.

``fit(..., callbacks=[...])`` takes any object with one or more of these methods:

- ``on_train_begin(net, history)``: ``history.epochs`` is above 0 when fit resumes a run;
- ``on_epoch_begin(epoch)``;
- ``on_epoch_end(epoch, logs)``: ``logs`` holds the epoch's metrics (loss, val_loss, lr, ...);
  returning True stops training after this epoch, as does calling ``stop()`` on a Callback;
- ``on_train_end(history)``: after the last epoch, or after Ctrl-C.

A callback that raises stops fit with its own exception, and leaves the net and
optimiser as they were after the last epoch whose callbacks all returned. Nothing
runs per batch: the fused and graph steps keep their loops out of Python.

Examples:
    >>> import xpnet as xn
    >>> X, y = xn.datasets.xor()
    >>> seen = []
    >>> log = xn.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch))
    >>> _ = xn.MLP([2, 4, 1], seed=0).fit(X, y, epochs=3, callbacks=[log], progress=False)
    >>> seen
    [1, 2, 3]
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import ConfigError
from .schedules import METRICS, check_monitor

HOOKS = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end")


class Callback:
    """Base class with every hook doing nothing; ``stop()`` asks fit to stop after the current epoch."""

    stop_training = False

    def on_train_begin(self, net: Any, history: Any) -> None:
        """Before the first epoch (``history.epochs`` > 0 when resuming)."""

    def on_epoch_begin(self, epoch: int) -> None:
        """Before epoch ``epoch`` (counted from 1)."""

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> bool | None:
        """After epoch ``epoch`` with its metrics; True stops training."""
        return None

    def on_train_end(self, history: Any) -> None:
        """After the last epoch."""

    def stop(self) -> None:
        """Stop training once the current epoch ends."""
        self.stop_training = True


def check(callbacks: Sequence[Any] | None) -> list[Any]:
    """The callbacks as a list, or ConfigError naming one that has none of the hooks."""
    if callbacks is None:
        return []
    if not isinstance(callbacks, (list, tuple)):
        raise ConfigError(f"callbacks must be a list of callback objects, got {type(callbacks).__name__}")
    for i, callback in enumerate(callbacks):
        if not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
            raise ConfigError(f"callbacks[{i}] ({type(callback).__name__}) has none of the methods "
                              f"{', '.join(HOOKS)}")
    return list(callbacks)


def resolve_monitor(owner: str, monitor: str, logs_names: Sequence[str]) -> str:
    """'auto' → val_loss when fit validates, else loss; ConfigError when fit records no such metric."""
    if monitor == "auto":
        return "val_loss" if "val_loss" in logs_names else "loss"
    if monitor not in logs_names:
        why = "needs validation_data or validation_split" if monitor.startswith("val_") else \
            "this fit does not record (its loss does not classify)"
        raise ConfigError(f"{owner} on {monitor} {why}; this fit records {', '.join(logs_names)}")
    return monitor


def _better(monitor: str, value: float, best: float, min_delta: float = 0.0) -> bool:
    if math.isnan(best):
        return True
    return value < best - min_delta if METRICS[monitor] == "min" else value > best + min_delta


class EarlyStopping(Callback):
    """Stop when the monitored metric has not improved by ``min_delta`` for ``patience`` epochs.

    ``monitor="auto"`` watches val_loss when there is validation data, loss
    otherwise. With ``restore_best=True`` the net ends with the best weights seen.
    ``fit(early_stopping=...)`` builds one: True (defaults), a patience, or an EarlyStopping.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0, monitor: str = "auto", restore_best: bool = True):
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise ConfigError(f"early stopping patience must be a positive integer, got {patience!r}")
        if monitor != "auto":
            check_monitor("early stopping", monitor, {"auto": "", **METRICS})
        self.patience, self.min_delta, self.monitor, self.restore_best = patience, float(min_delta), monitor, \
            bool(restore_best)
        self.reset()

    def reset(self) -> None:
        """Forget what was seen: fit calls this before a new run."""
        self.best, self.waited = math.nan, 0
        self.best_epoch: int | None = None
        self.best_weights: list[Any] | None = None
        self.net: Any = None
        self.watching = self.monitor

    @classmethod
    def get(cls, spec: bool | int | EarlyStopping | None) -> EarlyStopping | None:
        """None/False → None; True → defaults; an int → that patience; an EarlyStopping as is."""
        if spec is None or spec is False:
            return None
        if spec is True:
            return cls()
        if isinstance(spec, EarlyStopping):
            return spec
        return cls(patience=spec)

    def config(self) -> dict[str, Any]:
        return {"patience": self.patience, "min_delta": self.min_delta, "monitor": self.monitor,
                "restore_best": self.restore_best}

    @property
    def stopped(self) -> bool:
        return self.waited >= self.patience

    def on_train_begin(self, net: Any, history: Any) -> None:
        self.net = net

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> bool:
        self.watching = resolve_monitor("early stopping", self.monitor, list(logs))
        value = logs[self.watching]
        if _better(self.watching, value, self.best, self.min_delta):
            self.best, self.waited, self.best_epoch = value, 0, epoch
            if self.restore_best:
                xp = self.net.backend.xp
                self.best_weights = [xp.asarray(p, copy=True) for p in self.net.parameters()]
        else:
            self.waited += 1
        return self.stopped


class ModelCheckpoint(Callback):
    """Save the net (``net.save``, written atomically) after every epoch, or only when ``monitor`` improves.

    ``path`` may hold ``{epoch}``, e.g. ``"runs/net-{epoch:03d}.npz"``.
    """

    writes_files = True  # in data-parallel training, rank 0 alone runs it

    def __init__(self, path: str | os.PathLike[str], monitor: str = "auto", save_best_only: bool = False):
        self.path = os.fspath(path)
        self.monitor = monitor if monitor == "auto" else check_monitor("ModelCheckpoint", monitor)
        self.save_best_only = bool(save_best_only)
        self.best = math.nan
        self.net: Any = None

    def on_train_begin(self, net: Any, history: Any) -> None:
        self.net = net
        if self.save_best_only and history.epochs:  # resumed: the file on disk holds the best of the history
            monitor = resolve_monitor("ModelCheckpoint", self.monitor, list(history.history))
            for value in history[monitor]:
                if _better(monitor, value, self.best):
                    self.best = value

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        monitor = resolve_monitor("ModelCheckpoint", self.monitor, list(logs))
        if self.save_best_only and not _better(monitor, logs[monitor], self.best):
            return
        self.best = logs[monitor]
        path = self.path.format(epoch=epoch, **logs)
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        self.net.save(path)


class _EpochLog(Callback):
    """A file with one record per epoch: rewritten on a fresh run, cut back to the resumed epoch and appended to
    on a resumed one. Each record is flushed as the epoch ends."""

    writes_files = True  # in data-parallel training, rank 0 alone runs it

    def __init__(self, path: str | os.PathLike[str]):
        self.path = os.fspath(path)

    def on_train_begin(self, net: Any, history: Any) -> None:
        kept = self._records_up_to(history.epochs) if history.epochs and os.path.exists(self.path) else ""
        _write_atomically(self.path, kept)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float]) -> None:
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            f.write(self.record(f.tell() == 0, {"epoch": epoch, **logs}))

    def _records_up_to(self, epoch: int) -> str:
        raise NotImplementedError

    def record(self, first: bool, row: Mapping[str, Any]) -> str:
        raise NotImplementedError


class CSVLogger(_EpochLog):
    """One CSV row per epoch (epoch, then the metrics); appends when fit resumes."""

    def _records_up_to(self, epoch: int) -> str:
        with open(self.path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= epoch]
        out = io.StringIO()
        csv.writer(out).writerows(kept)
        return out.getvalue()

    def record(self, first: bool, row: Mapping[str, Any]) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        if first:
            writer.writerow(list(row))
        writer.writerow(list(row.values()))
        return out.getvalue()


class JSONLinesLogger(_EpochLog):
    """One JSON object per line per epoch (``{"epoch": 1, "loss": ...}``); appends when fit resumes."""

    def _records_up_to(self, epoch: int) -> str:
        with open(self.path, encoding="utf-8") as f:
            return "".join(line for line in f if line.strip() and json.loads(line)["epoch"] <= epoch)

    def record(self, first: bool, row: Mapping[str, Any]) -> str:
        return json.dumps(dict(row)) + "\n"


class LambdaCallback(Callback):
    """A callback from functions: ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))``."""

    def __init__(self, on_train_begin: Callable[[Any, Any], None] | None = None,
                 on_epoch_begin: Callable[[int], None] | None = None,
                 on_epoch_end: Callable[[int, Mapping[str, float]], bool | None] | None = None,
                 on_train_end: Callable[[Any], None] | None = None):
        given = {"on_train_begin": on_train_begin, "on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end,
                 "on_train_end": on_train_end}
        for name, fn in given.items():
            if fn is not None and not callable(fn):
                raise ConfigError(f"LambdaCallback {name} must be a function or None, got {fn!r}")
            if fn is not None:
                setattr(self, name, fn)


def _write_atomically(path: str, text: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


__all__ = ["Callback", "CSVLogger", "EarlyStopping", "JSONLinesLogger", "LambdaCallback", "ModelCheckpoint"]
