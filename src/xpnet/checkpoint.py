"""Checkpoints: a .npz of named NumPy arrays plus a JSON header, never pickles.

Files are written to a temporary file in the same folder and renamed into
place, so a crash mid-save leaves the previous file whole.
"""
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from .errors import CheckpointError

HEADER = "__xpnet_header__"
FORMAT = "xpnet-checkpoint"


def save(path, config, arrays, extra=None):
    """Write ``arrays`` (name → NumPy array) with a header holding ``config`` and ``extra``."""
    from . import __version__

    header = {"format": FORMAT, "version": __version__, "config": config, "extra": extra or {},
              "arrays": {name: [list(a.shape), str(a.dtype)] for name, a in arrays.items()}}
    payload = {HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays}
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".xpnet-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path):
    """(config, {name: array}, extra) from a checkpoint, header and arrays checked, nothing unpickled."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    if not data:
        raise CheckpointError(f"{path} is empty; expected an xpnet .npz checkpoint")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if HEADER not in npz.files:
                raise CheckpointError(f"{path} is a .npz but not an xpnet checkpoint (no {HEADER} entry)")
            header = json.loads(npz[HEADER].tobytes().decode())
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise CheckpointError(f"{path}: header format is {header.get('format')!r}, expected {FORMAT!r}")
            arrays = {}
            for name, (shape, dtype) in header["arrays"].items():
                a = npz[name]
                if list(a.shape) != list(shape) or str(a.dtype) != dtype:
                    raise CheckpointError(f"{path}: array {name} is {a.shape} {a.dtype}, "
                                          f"the header says {tuple(shape)} {dtype}")
                arrays[name] = a
    except CheckpointError:
        raise
    except (ValueError, OSError, KeyError, TypeError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not a readable xpnet checkpoint (corrupt or truncated?): "
                              f"{type(e).__name__}: {e}") from None
    return header["config"], arrays, header.get("extra", {})


def check_weights(path, names, shapes, arrays):
    """Raise CheckpointError unless ``arrays`` holds every name with the expected shape."""
    for name, shape in zip(names, shapes):
        if name not in arrays:
            raise CheckpointError(f"{path}: missing array {name}; the network needs {', '.join(names)}")
        if tuple(arrays[name].shape) != tuple(shape):
            raise CheckpointError(f"{path}: {name} has shape {arrays[name].shape}, the network needs {tuple(shape)}")
