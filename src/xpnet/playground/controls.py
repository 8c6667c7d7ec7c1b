"""Every control of the playground page, its default and its allowed values; nothing reaches xpnet unchecked.

``check(control, value)`` returns the value to use or raises ``ControlError``
with a sentence for the page to show beside the control.

>>> check("lr", 0.1)
0.1
>>> check("hidden", [16, 300])
Traceback (most recent call last):
...
xpnet.playground.controls.ControlError: hidden layers have 1 to 256 units each, got 300
"""
import math

from .. import backends, errors, kernels, optim

DATASETS = ("xor", "spirals", "circles", "moons")
SCHEDULES = ("constant", "step", "cosine", "plateau")
ACTIVATIONS, OPTIMIZERS = tuple(kernels.ACTIVATIONS), tuple(optim.OPTIMIZERS)
CHOICES = {"dataset": DATASETS, "schedule": SCHEDULES, "activation": ACTIVATIONS, "optimizer": OPTIMIZERS}
MAX_LAYERS, MAX_UNITS, MAX_POINTS = 8, 256, 5000
EXTENT = 1.6  # the plane shown is [-EXTENT, EXTENT]², in the data's own units
GRID = 60  # the decision boundary is sampled on GRID × GRID points


class ControlError(errors.ConfigError):
    """A value the page sent that the control does not allow; the message is for the user."""


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number(low, high):
    def check(name, value):
        if not _number(value) or not low <= value <= high:
            raise ControlError(f"{name} must be a number from {low:g} to {high:g}, got {value!r}")
        return float(value)
    return check


def integer(low, high):
    def check(name, value):
        if not _number(value) or value != int(value) or not low <= value <= high:
            raise ControlError(f"{name} must be a whole number from {low} to {high}, got {value!r}")
        return int(value)
    return check


def choice(options):
    def check(name, value):
        if value not in options:
            raise ControlError(f"{name} must be one of {', '.join(options)}, got {value!r}")
        return value
    return check


def widths(name, value):
    """The hidden layers' widths: a list of at most MAX_LAYERS whole numbers from 1 to MAX_UNITS."""
    if not isinstance(value, list) or len(value) > MAX_LAYERS:
        raise ControlError(f"{name} must be a list of at most {MAX_LAYERS} layer widths, got {value!r}")
    for width in value:
        if not _number(width) or width != int(width) or not 1 <= width <= MAX_UNITS:
            raise ControlError(f"hidden layers have 1 to {MAX_UNITS} units each, got {width!r}")
    return [int(w) for w in value]


def backend(name, value):
    """A backend that runs here; a missing one is refused with the reason `xpnet info` gives."""
    if not isinstance(value, str) or value not in backends.REGISTRY:
        raise ControlError(f"{name} must be one of {', '.join(backends.REGISTRY)}, got {value!r}")
    reason = backends.unavailable_reason(value)
    if reason is not None:
        raise ControlError(f"{value} is not usable here: {reason} (to fix: {backends.REGISTRY[value][3]})")
    return value


# control → (default, checker); the page builds its widgets from the defaults and the limits below
CONTROLS = {
    "dataset": ("spirals", choice(DATASETS)),
    "noise": (0.2, number(0.0, 1.0)),
    "size": (500, integer(10, 2000)),
    "hidden": ([16, 16], widths),
    "activation": ("tanh", choice(ACTIVATIONS)),
    "optimizer": ("adam", choice(OPTIMIZERS)),
    "lr": (0.01, number(1e-5, 10.0)),
    "schedule": ("constant", choice(SCHEDULES)),
    "batch_size": (32, integer(1, MAX_POINTS)),
    "weight_decay": (0.0, number(0.0, 0.1)),
    "dropout": (0.0, number(0.0, 0.9)),
    "backend": ("numpy", backend),
}


def check(control, value):
    """``value`` as the control ``control`` uses it, or ControlError saying what it allows."""
    return CONTROLS[control][1](control, value)


def defaults(backend_name="numpy"):
    settings = {name: default for name, (default, _) in CONTROLS.items()}
    settings["backend"] = check("backend", backend_name)
    return settings


def point(x, y, label):
    """A clicked point, (x, y, label), inside the plane and of class 0 or 1."""
    for name, v in (("x", x), ("y", y)):
        if not _number(v) or abs(v) > EXTENT:
            raise ControlError(f"a point's {name} must be a number from {-EXTENT:g} to {EXTENT:g}, got {v!r}")
    if label not in (0, 1) or isinstance(label, bool):
        raise ControlError(f"a point's class must be 0 or 1, got {label!r}")
    return float(x), float(y), int(label)


def backend_rows():
    """Every registered backend: name, usable, and why not with the fix (as `xpnet info` says it)."""
    rows = []
    for name, entry in backends.REGISTRY.items():
        reason = backends.unavailable_reason(name)
        rows.append({"name": name, "usable": reason is None, "reason": reason or "", "install": entry[3]})
    return rows
