"""The state of a training run at the end of an epoch, in memory and on disk.

``fit`` keeps one in memory so Ctrl-C and divergence roll the net *and* the
optimiser back to the last completed epoch, and writes one to disk for
``fit(checkpoint=...)``; ``fit(resume=...)`` reads it back and continues
exactly as if never stopped: parameters, optimiser state and step count, the
generator that draws the shuffles (and the dropout seeds), History, and the
early-stopping bookkeeping.
"""
import json
import os
import re

import numpy as np

from . import checkpoint
from .errors import CheckpointError, ConfigError

KIND = "xpnet-training"
FILE = "epoch-{:06d}.npz"


class TrainingState:
    """Copies of everything a run needs to go on from the end of epoch ``epoch``."""

    def __init__(self, epoch, params, steps, opt_state, rng, history, best_epoch, best, waited, best_params,
                 schedule=None):
        self.epoch, self.params, self.steps, self.opt_state, self.rng = epoch, params, steps, opt_state, rng
        self.history, self.best_epoch, self.best, self.waited, self.best_params = \
            history, best_epoch, best, waited, best_params
        self.schedule = schedule or {}  # the schedule's position beyond the step count (a plateau's rate)

    @classmethod
    def capture(cls, net, optimizer, rng, epoch, history, best, waited, best_params):
        """Copy the live state (``best_params`` are fit's own copies, kept as they are)."""
        copy = lambda arrays: [net.backend.xp.asarray(a, copy=True) for a in arrays]  # noqa: E731
        opt_state = None if optimizer.state is None else {k: copy(v) for k, v in optimizer.state.items()}
        return cls(epoch, copy(net.parameters() + net.buffers()), optimizer.steps, opt_state, rng.bit_generator.state,
                   {k: list(v) for k, v in history.history.items()}, history.best_epoch, best, waited, best_params,
                   optimizer.schedule_state())

    def restore(self, net, optimizer, rng=None, history=None):
        """Write this state back in place: the live arrays stay the same objects, so a compiled step keeps working."""
        _copy_into(net.parameters() + net.buffers(), self.params)  # buffers too: BatchNorm's running statistics
        optimizer.steps = self.steps
        if optimizer.schedule is not None:
            optimizer.schedule.load_state_dict(self.schedule)
        if optimizer.state is not None:
            for name, arrays in optimizer.state.items():
                _copy_into(arrays, self.opt_state[name] if self.opt_state else
                           [net.backend.zeros_like(a) for a in arrays])  # zeros: the state before the first step
        elif self.opt_state is not None:
            optimizer.state = {k: [net.backend.xp.asarray(a, copy=True) for a in v] for k, v in self.opt_state.items()}
        if rng is not None:
            rng.bit_generator.state = self.rng
        if history is not None:
            history.history = {k: list(v) for k, v in self.history.items()}
            history.epochs, history.best_epoch = self.epoch, self.best_epoch

    # ---- on disk -----------------------------------------------------------------------

    def save(self, folder, net, optimizer, run):
        """Write ``folder/epoch-NNNNNN.npz`` (atomically) and return its path."""
        os.makedirs(folder, exist_ok=True)
        backend, names = net.backend, net.param_names()
        arrays = dict(zip(names + net.buffer_names(), (backend.to_numpy(p) for p in self.params)))
        for state_name, state in (self.opt_state or {}).items():
            arrays.update({f"optimizer.{state_name}.{n}": backend.to_numpy(a) for n, a in zip(names, state)})
        if self.best_params is not None:
            arrays.update({f"best.{n}": backend.to_numpy(a) for n, a in zip(names, self.best_params)})
        extra = {"kind": KIND, "epoch": self.epoch, "rng": self.rng, "history": self.history,
                 "best_epoch": self.best_epoch, "best": self.best, "waited": self.waited,
                 "optimizer": {"config": optimizer.config(), "steps": self.steps, "schedule": self.schedule,
                               "state": sorted(self.opt_state or {})},
                 "has_best": self.best_params is not None, "run": run}
        path = os.path.join(folder, FILE.format(self.epoch))
        checkpoint.save(path, net.config(), arrays, extra)
        return path

    @classmethod
    def load(cls, path, net, optimizer, run):
        """The state in ``path`` (a checkpoint, or a folder: its latest), checked against this net and fit call."""
        path = latest(path) if os.path.isdir(path) else os.fspath(path)
        names, backend = net.param_names(), net.backend
        specs = {n: (tuple(p.shape), net.dtype) for n, p in zip(names + net.buffer_names(),
                                                                net.parameters() + net.buffers())}

        def expected(header):
            extra = header["extra"]
            if extra.get("kind") != KIND:
                raise CheckpointError(f"{path} holds a network but no training state; fit(resume=...) needs a "
                                      f"checkpoint written by fit(checkpoint=...) (xn.load reads this one)")
            if _without_seed(header["config"]) != _without_seed(net.config()):
                raise CheckpointError(f"{path} was written for another network: {_summary(header['config'])}; "
                                      f"this one is {_summary(net.config())}")
            _same(path, "this fit call", extra["run"], run)
            _same(path, "the optimiser", extra["optimizer"]["config"], optimizer.config())
            wanted = dict(specs)
            if extra["optimizer"]["state"] and sorted(extra["optimizer"]["state"]) != sorted(optimizer.state_names):
                raise CheckpointError(f"{path}: optimiser state {extra['optimizer']['state']!r:.80} does not fit "
                                      f"{type(optimizer).__name__}, which keeps {list(optimizer.state_names)}")
            for state_name in extra["optimizer"]["state"]:
                wanted.update({f"optimizer.{state_name}.{n}": specs[n] for n in names})
            if extra["has_best"]:
                wanted.update({f"best.{n}": specs[n] for n in names})
            return wanted

        config, arrays, extra = checkpoint.load(path, expected=expected)
        try:
            put = lambda prefix: [backend.asarray(arrays[prefix + n], dtype=backend.dtype(net.dtype))  # noqa: E731
                                  for n in names]
            opt_state = {s: put(f"optimizer.{s}.") for s in extra["optimizer"]["state"]} or None
            history = {str(k): [float(x) for x in v] for k, v in extra["history"].items()}
            epoch, steps, waited = int(extra["epoch"]), int(extra["optimizer"]["steps"]), int(extra["waited"])
            schedule = {str(k): float(v) for k, v in extra["optimizer"].get("schedule", {}).items()}
            state = cls(epoch, [backend.asarray(arrays[n], dtype=backend.dtype(net.dtype))
                               for n in names + net.buffer_names()], steps, opt_state, dict(extra["rng"]), history,
                        extra["best_epoch"], float(extra["best"]), waited, put("best.") if extra["has_best"] else None,
                        schedule)
            if epoch < 0 or steps < 0 or any(len(v) != epoch for v in history.values()):
                raise ValueError(f"epoch {epoch}, {steps} steps, {[len(v) for v in history.values()]} history entries")
            np.random.default_rng().bit_generator.state = state.rng  # raises here, not mid-fit, if it is damaged
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise CheckpointError(f"{path}: the training state in its header is damaged ({type(e).__name__}: {e})") \
                from None
        for array in state.params:  # a checkpoint never holds a diverged net
            if not bool(backend.xp.all(backend.xp.isfinite(array))):
                raise CheckpointError(f"{path}: the weights are not all finite")
        return state


def latest(folder):
    """The checkpoint of the highest epoch in ``folder``."""
    found = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := re.fullmatch(r"epoch-(\d+)\.npz", name))]
    if not found:
        raise CheckpointError(f"no checkpoint in {folder}: expected files named like {FILE.format(10)}")
    return os.path.join(folder, max(found)[1])


def _copy_into(targets, sources):
    for target, source in zip(targets, sources):
        target[...] = source


def _summary(config):
    """e.g. 'MLP[Dense(2→16, relu), Dropout(0.2), Dense(16→2, identity)] float32'."""
    try:
        layers = [f"{d['type']}({', '.join(str(v) for k, v in d.items() if k not in ('type', 'init'))})"
                  for d in config["layers"]]
        return f"{config['class']}[{', '.join(layers)}] {config['dtype']}"
    except (KeyError, TypeError, AttributeError):
        return repr(config)[:200]


def _without_seed(config):
    return {k: v for k, v in config.items() if k != "seed"}


def _same(path, what, saved, current):
    """ConfigError naming every setting in which ``current`` differs from what ``path`` was written with."""
    current = json.loads(json.dumps(current))  # the form it takes on disk: tuples → lists
    if saved == current:
        return
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: the header's record of {what} is damaged: {saved!r:.80}")
    keys = sorted(set(saved) | set(current))
    diffs = [f"{k}={saved.get(k)!r} there, {current.get(k)!r} here" for k in keys if saved.get(k) != current.get(k)]
    raise ConfigError(f"resume: {path} was written with other settings for {what}: {'; '.join(diffs) or saved}. "
                      f"Resuming continues a run exactly, so it needs the same data and settings.")

