"""Errors a user can read: each says what was expected and what came.

Every class also subclasses the built-in exception a Python user would try to
catch (``ValueError``, ``TypeError``, ``ImportError``, ...).
"""
import difflib


class XpnetError(Exception):
    """Base class of every error xpnet raises on purpose."""


class BackendUnavailableError(XpnetError, ImportError):
    """The backend asked for cannot run here; the message says how to fix it."""


class ConfigError(XpnetError, ValueError):
    """A bad argument: an unknown name or a value out of range."""


class ShapeError(XpnetError, ValueError):
    """Arrays whose shapes do not fit the network or each other."""


class DataError(XpnetError, ValueError):
    """Data that cannot be trained on: NaN/inf, bad labels, empty arrays."""


class DataTypeError(DataError, TypeError):
    """Data of a type that is not numbers: strings, objects, complex values."""


class DeviceError(XpnetError, TypeError):
    """An array that lives on another backend or device than the network."""


class DivergenceError(XpnetError, FloatingPointError):
    """The loss became NaN or infinite during training."""


class CheckpointError(XpnetError, ValueError):
    """A checkpoint file that is missing, corrupt, truncated or not xpnet's."""


class CompileWarning(UserWarning):
    """A notice, once per process, that numba is compiling a training step (seconds; cached on disk after)."""


def lookup(kind, name, table):
    """Return ``table[name]``; for an unknown name, raise ConfigError suggesting the closest."""
    try:
        return table[name]
    except (KeyError, TypeError):
        pass
    known = sorted(k for k in table if isinstance(k, str))
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"unknown {kind} {name!r}; expected one of {', '.join(map(repr, known))}.{hint}")
