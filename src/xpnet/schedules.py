"""Learning-rate schedules: the rate of each optimiser step, as a function of how many steps came before.

Pass one wherever a learning rate goes: ``xn.optim.Adam(lr=xn.schedules.Cosine(total=1000, warmup=100))``.
``lr`` (the base rate) defaults to the optimiser's own default. Any callable
``f(step) -> rate`` works too. Every training step (plain, numba's fused one, a
CUDA graph) reads the rate at run time, so a schedule never recompiles or
recaptures anything. ``ReduceOnPlateau`` alone counts in epochs: fit tells it
each epoch's metrics.

Examples:
    >>> import xpnet as xn
    >>> s = xn.schedules.Step(step_size=10, gamma=0.5, lr=0.1)
    >>> [s(0), s(9), s(10), s(25)]
    [0.1, 0.1, 0.05, 0.025]
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Union

from .errors import ConfigError, lookup

METRICS = {"loss": "min", "val_loss": "min", "accuracy": "max", "val_accuracy": "max"}


def check_rate(name: str, value: Any, positive: bool = False) -> float:
    """``value`` as a float, or ConfigError unless it is a finite number ≥ 0 (> 0 when ``positive``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ConfigError(f"{name} must be a finite number {'>' if positive else '≥'} 0, got {value!r}")
    return float(value)


def check_monitor(owner: str, monitor: str, allowed: Mapping[str, str] = METRICS) -> str:
    """``monitor`` if fit records a metric by that name, else ConfigError listing the ones it records."""
    if monitor not in allowed:
        names = ", ".join(map(repr, allowed))
        raise ConfigError(f"{owner} monitor must be one of {names}, got {monitor!r}")
    return monitor


def _count(name: str, value: Any, low: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be a whole number ≥ {low}, got {value!r}")
    return value


class Schedule:
    """Base class: ``schedule(step)`` is the rate of the optimiser step that follows ``step`` earlier ones."""

    per_step = True  # False: the rate changes only between epochs (fit calls epoch_end)
    lr: float | None = None

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    @property
    def base(self) -> float:
        """The base rate ``lr``: given, or the optimiser's default once an optimiser holds the schedule."""
        if self.lr is None:
            raise ConfigError(f"{type(self).__name__} has no base rate yet: give it lr=..., or pass it to an "
                              f"optimiser, whose default rate it then takes")
        return self.lr

    def bind(self, default_lr: float) -> Schedule:
        """A copy whose base rate is ``default_lr`` when none was given; the optimiser keeps it."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        if copy.lr is None:
            copy.lr = default_lr
        return copy

    def epoch_end(self, logs: Mapping[str, float]) -> None:
        """Called by fit after each epoch; only epoch-based schedules change here."""

    def state_dict(self) -> dict[str, float]:
        """Whatever the rate depends on beyond the step count (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        for key, value in state.items():
            setattr(self, key, float(value))

    def config(self) -> dict[str, Any]:
        return {"name": NAMES[type(self)], **{k: v for k, v in vars(self).items() if k not in self.state_dict()}}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.config().items() if k != 'name')})"


class Constant(Schedule):
    """The same rate at every step."""

    def __init__(self, lr: float | None = None):
        self.lr = None if lr is None else check_rate("lr", lr, positive=True)

    def __call__(self, step: int) -> float:
        return self.base


class Step(Schedule):
    """``lr · gamma^(step // step_size)``: multiply the rate by ``gamma`` every ``step_size`` steps."""

    def __init__(self, step_size: int, gamma: float = 0.1, lr: float | None = None):
        self.step_size = _count("step_size", step_size, 1)
        self.gamma = check_rate("gamma", gamma)
        self.lr = None if lr is None else check_rate("lr", lr, positive=True)

    def __call__(self, step: int) -> float:
        return self.base * self.gamma ** (step // self.step_size)


class Exponential(Schedule):
    """``lr · gamma^step``."""

    def __init__(self, gamma: float, lr: float | None = None):
        self.gamma = check_rate("gamma", gamma)
        self.lr = None if lr is None else check_rate("lr", lr, positive=True)

    def __call__(self, step: int) -> float:
        return self.base * self.gamma**step


def _anneal(start: float, end: float, fraction: float) -> float:
    """Half a cosine from ``start`` (fraction 0) to ``end`` (fraction 1)."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0)))


class Cosine(Schedule):
    """A linear warm-up over ``warmup`` steps, then half a cosine from ``lr`` down to ``min_lr`` at step ``total``.

    Examples:
        >>> s = Cosine(total=100, warmup=10, lr=1.0)
        >>> [round(s(t), 3) for t in (0, 9, 10, 55, 100, 200)]
        [0.1, 1.0, 1.0, 0.5, 0.0, 0.0]
    """

    def __init__(self, total: int, warmup: int = 0, min_lr: float = 0.0, lr: float | None = None):
        self.total = _count("total", total, 1)
        self.warmup = _count("warmup", warmup, 0)
        if self.warmup > self.total:
            raise ConfigError(f"warmup must be at most total={self.total} steps, got {warmup!r}")
        self.min_lr = check_rate("min_lr", min_lr)
        self.lr = None if lr is None else check_rate("lr", lr, positive=True)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.base * (step + 1) / self.warmup
        return _anneal(self.base, self.min_lr, (step - self.warmup) / max(1, self.total - self.warmup))


class OneCycle(Schedule):
    """Smith's one-cycle policy, as PyTorch's OneCycleLR: half a cosine up from ``max_lr / div_factor`` to
    ``max_lr`` over the first ``pct_start`` of ``total`` steps, then down to that start over ``final_div_factor``."""

    def __init__(self, max_lr: float, total: int, pct_start: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4):
        self.max_lr = check_rate("max_lr", max_lr, positive=True)
        self.total = _count("total", total, 2)
        self.pct_start = check_rate("pct_start", pct_start)
        if not 0.0 < self.pct_start * self.total - 1 < self.total - 1:
            raise ConfigError(f"pct_start must leave at least one step on each side of the peak of {self.total} "
                              f"steps, got {pct_start!r}")
        self.div_factor = check_rate("div_factor", div_factor, positive=True)
        self.final_div_factor = check_rate("final_div_factor", final_div_factor, positive=True)

    def __call__(self, step: int) -> float:
        start = self.max_lr / self.div_factor
        peak = self.pct_start * self.total - 1  # the step at max_lr, as PyTorch counts
        if step <= peak:
            return _anneal(start, self.max_lr, step / peak)
        return _anneal(self.max_lr, start / self.final_div_factor, (step - peak) / (self.total - 1 - peak))

    def bind(self, default_lr: float) -> Schedule:
        return self  # its rates are all its own


class ReduceOnPlateau(Schedule):
    """Multiply the rate by ``factor`` once ``monitor`` has gone more than ``patience`` epochs without improving
    by ``min_delta`` (PyTorch's rule), never below ``min_lr``. Counted in epochs: fit calls ``epoch_end``."""

    per_step = False

    def __init__(self, factor: float = 0.1, patience: int = 10, min_lr: float = 0.0, monitor: str = "val_loss",
                 min_delta: float = 0.0, lr: float | None = None):
        self.factor = check_rate("factor", factor, positive=True)
        if self.factor >= 1.0:
            raise ConfigError(f"factor must be in (0, 1), got {factor!r}")
        self.patience = _count("patience", patience, 0)
        self.min_lr = check_rate("min_lr", min_lr)
        self.monitor = check_monitor("ReduceOnPlateau", monitor)
        self.min_delta = check_rate("min_delta", min_delta)
        self.lr = None if lr is None else check_rate("lr", lr, positive=True)
        self.current, self.best, self.waited = math.nan, math.nan, 0.0

    def bind(self, default_lr: float) -> Schedule:
        copy = super().bind(default_lr)
        copy.load_state_dict({"current": copy.base})
        return copy

    def __call__(self, step: int) -> float:
        return self.current

    def epoch_end(self, logs: Mapping[str, float]) -> None:
        value = logs[self.monitor] if METRICS[self.monitor] == "min" else -logs[self.monitor]
        if math.isnan(self.best) or value < self.best - self.min_delta:
            self.best, self.waited = value, 0.0
            return
        self.waited += 1
        if self.waited > self.patience:
            self.current, self.waited = max(self.current * self.factor, self.min_lr), 0.0

    def state_dict(self) -> dict[str, float]:
        return {"current": self.current, "best": self.best, "waited": self.waited}


class Lambda(Schedule):
    """Any callable ``fn(step) -> rate``; each rate is checked as it is computed."""

    def __init__(self, fn: Callable[[int], float]):
        self.fn = fn

    def __call__(self, step: int) -> float:
        value = self.fn(step)
        try:
            return check_rate("lr", value)
        except ConfigError:
            raise ConfigError(f"the lr schedule {_name(self.fn)} must return a finite number ≥ 0, "
                              f"got {value!r} at step {step}") from None

    def bind(self, default_lr: float) -> Schedule:
        return self

    def config(self) -> dict[str, Any]:
        return {"name": "callable", "fn": _name(self.fn)}


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


NAMES = {Constant: "constant", Step: "step", Exponential: "exponential", Cosine: "cosine", OneCycle: "one_cycle",
         ReduceOnPlateau: "reduce_on_plateau", Lambda: "callable"}
SCHEDULES = {name: cls for cls, name in NAMES.items() if cls is not Lambda}

LearningRate = Union[float, Schedule, Callable[[int], float], Mapping[str, Any]]


def get(lr: LearningRate, default_lr: float) -> tuple[float, Schedule | None]:
    """(rate now, schedule or None) from a number, a Schedule, a callable or a schedule's config dict."""
    if isinstance(lr, Mapping):
        config = dict(lr)
        name = config.pop("name", None)
        if name == "callable":
            raise ConfigError(f"a callable lr schedule ({config.get('fn')}) cannot be rebuilt from its config; "
                              f"pass the callable itself")
        lr = lookup("lr schedule", name, SCHEDULES)(**config)
    if isinstance(lr, Schedule):
        schedule = lr.bind(default_lr)
        return schedule(0), schedule
    if callable(lr):
        schedule = Lambda(lr)
        return schedule(0), schedule
    return check_rate("lr", lr, positive=True), None


__all__ = ["Constant", "Cosine", "Exponential", "Lambda", "OneCycle", "ReduceOnPlateau", "Schedule", "Step", "get"]
