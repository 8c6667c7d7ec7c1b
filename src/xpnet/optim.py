"""Optimisers: SGD (momentum, Nesterov), RMSProp, Adam, with L2 weight decay.

An optimiser keeps its state (velocities, moments) per parameter, in the
order of ``net.parameters()``, and updates parameters in place through the
backend's update kernels. ``state_dict()`` / ``load_state_dict()`` carry the
state as host NumPy arrays, so training resumes exactly.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import schedules
from .errors import ConfigError, lookup


def _check(name, value, low=0.0, high=math.inf, low_open=False, high_open=True):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(f"{name} must be a number in {lo}{low}, {high}{hi}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: ``step(backend, params, grads)`` updates ``params`` in place.

    ``lr`` is a number or a schedule (``xn.schedules``, or any ``f(step) -> rate``);
    ``opt.lr`` reads the rate of the next step, and setting it replaces the schedule.
    """

    state_names: tuple[str, ...] = ()
    default_lr = 0.01  # the base rate of a schedule given without one

    def __init__(self, lr, weight_decay=0.0):
        self.lr = lr
        self.weight_decay = _check("weight_decay", weight_decay)
        self.state = None  # {name: [array per parameter]}, made on the first step
        self.steps = 0

    @property
    def lr(self):
        """The learning rate of the next step."""
        return self._lr if self.schedule is None else self.schedule(self.steps)

    @lr.setter
    def lr(self, value):
        self._lr, self.schedule = schedules.get(value, self.default_lr)

    def init_state(self, backend, params):
        self.state = {name: [backend.zeros_like(p) for p in params] for name in self.state_names}

    def step(self, backend, params, grads, lr=None):
        """One update of every parameter; ``lr`` (a number or a 0-d device array) overrides ``self.lr``."""
        if self.state is None:
            self.init_state(backend, params)
        lr = self.lr if lr is None else lr
        self.steps += 1
        for i, (param, grad) in enumerate(zip(params, grads)):
            self.update(backend, param, grad, lr, *(self.state[name][i] for name in self.state_names))

    def schedule_state(self):
        """What the schedule's rate depends on beyond the step count (a plateau's current rate), as numbers."""
        return {} if self.schedule is None else self.schedule.state_dict()

    def state_dict(self, backend):
        """Hyperparameters, step count, schedule position and state as host NumPy arrays."""
        state = {name: [np.array(backend.to_numpy(a)) for a in arrays] for name, arrays in (self.state or {}).items()}
        return {"config": self.config(), "steps": self.steps, "schedule": self.schedule_state(), "state": state}

    def load_state_dict(self, backend, state_dict, params):
        self.steps = int(state_dict["steps"])
        if self.schedule is not None:
            self.schedule.load_state_dict(state_dict.get("schedule", {}))
        self.state = None
        if state_dict["state"]:
            self.state = {name: [backend.asarray(np.array(a), dtype=p.dtype) for a, p in zip(arrays, params)]
                          for name, arrays in state_dict["state"].items()}

    def to(self, backend):
        """Move the state to another backend."""
        if self.state is not None:
            self.state = {name: [backend.asarray(a) for a in arrays] for name, arrays in self.state.items()}

    def config(self):
        raise NotImplementedError

    def lr_config(self):
        """The learning rate as it goes into config(): a number, or the schedule's config."""
        return self._lr if self.schedule is None else self.schedule.config()

    def __repr__(self):
        config = dict(self.config(), lr=self.schedule or self._lr)
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in config.items() if k != 'name')})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (Nesterov) momentum.

    >>> opt = SGD(lr=0.1, momentum=0.9, nesterov=True)
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum = _check("momentum", momentum, high=1.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and not self.momentum:
            raise ConfigError("nesterov=True needs momentum > 0")
        self.state_names = ("velocity",) if self.momentum else ()

    def update(self, backend, param, grad, lr, velocity=None):
        backend.sgd_update(param, grad, velocity, lr, self.momentum, self.nesterov, self.weight_decay)

    def config(self):
        return {"name": "sgd", "lr": self.lr_config(), "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}


class RMSProp(Optimizer):
    """RMSProp (Hinton, 2012): divide the step by a running RMS of the gradients."""

    state_names = ("square_avg",)
    default_lr = 0.001

    def __init__(self, lr=0.001, rho=0.99, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.rho = _check("rho", rho, high=1.0)
        self.eps = _check("eps", eps, low_open=True)

    def update(self, backend, param, grad, lr, square_avg):
        backend.rmsprop_update(param, grad, square_avg, lr, self.rho, self.eps, self.weight_decay)

    def config(self):
        return {"name": "rmsprop", "lr": self.lr_config(), "rho": self.rho, "eps": self.eps, "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) with bias correction; ``weight_decay`` is L2, as in PyTorch's Adam."""

    state_names = ("m", "v")
    default_lr = 0.001

    def __init__(self, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.beta1 = _check("beta1", beta1, high=1.0)
        self.beta2 = _check("beta2", beta2, high=1.0)
        self.eps = _check("eps", eps, low_open=True)

    def update(self, backend, param, grad, lr, m, v):
        backend.adam_update(param, grad, m, v, lr, self.beta1, self.beta2, self.eps, self.weight_decay,
                            self.steps)

    def config(self):
        return {"name": "adam", "lr": self.lr_config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                "weight_decay": self.weight_decay}


OPTIMIZERS = {"sgd": SGD, "rmsprop": RMSProp, "adam": Adam}


def get(optimizer: str | dict[str, Any] | Optimizer, lr: schedules.LearningRate | None = None) -> Optimizer:
    """An Optimizer from a name (``"sgd" "rmsprop" "adam"``, with ``lr`` or its default), a config dict or
    an instance."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, dict):
        config = dict(optimizer)
        return lookup("optimizer", config.pop("name", None), OPTIMIZERS)(**config)
    cls = lookup("optimizer", optimizer, OPTIMIZERS)
    return cls() if lr is None else cls(lr=lr)
