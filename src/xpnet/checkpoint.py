"""Checkpoints: a .npz of named NumPy arrays plus a JSON header, never pickles.

Files are written to a temporary file in the same folder, flushed to disk and
renamed into place, so a crash or a kill mid-save leaves the previous file
whole. Loading checks the header, then every array's shape and dtype (against
the header and, when the caller knows them, against what it expects) before
any array data is read.
"""
import json
import lzma
import math
import os
import struct
import tempfile
import tokenize
import zipfile
import zlib

import numpy as np
from numpy.lib import format as npy

from .errors import CheckpointError, XpnetError

HEADER = "__xpnet_header__"
FORMAT = "xpnet-checkpoint"
# What a damaged file can make zipfile (bz2 members raise OSError), numpy's .npy header parser (tokenize,
# ast) and json raise.
UNREADABLE = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, OverflowError, MemoryError,
              RuntimeError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
              struct.error)


def save(path, config, arrays, extra=None):
    """Write ``arrays`` (name → NumPy array) with a header holding ``config`` and ``extra`` (JSON-able)."""
    from . import __version__

    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    header = {"format": FORMAT, "version": __version__, "config": config, "extra": extra or {},
              "arrays": {name: [list(a.shape), a.dtype.name] for name, a in arrays.items()}}
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
    _sync_folder(folder)


def _sync_folder(folder):
    """Flush the rename itself to disk (POSIX); without it a power cut may undo it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; its rename is durable enough
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path, expected=None):
    """(config, {name: array}, extra) from a checkpoint; nothing is unpickled.

    ``expected(header)`` may return {name: (shape, dtype name)} for arrays the
    caller needs; they are checked against the file before any data is read.
    Anything wrong with the file raises CheckpointError.
    """
    path = os.fspath(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise CheckpointError(f"{path} is empty; expected an xpnet .npz checkpoint")
        try:
            with zipfile.ZipFile(f) as zf:
                header = _read_header(zf, path, size)
                declared = header["arrays"]
                for name, (shape, dtype) in (expected(header) if expected else {}).items():
                    if name not in declared:
                        raise CheckpointError(f"{path}: missing array {name}; expected {_describe(shape, dtype)}")
                    if declared[name] != [list(shape), dtype]:
                        raise CheckpointError(f"{path}: array {name} is {_describe(*declared[name])}, "
                                              f"expected {_describe(shape, dtype)}")
                arrays = {name: _read_array(zf, path, size, name, shape, dtype)
                          for name, (shape, dtype) in declared.items()}
        except XpnetError:  # ours, already readable (``expected`` may raise ConfigError too)
            raise
        except UNREADABLE as e:
            raise CheckpointError(f"{path} is not a readable xpnet checkpoint (corrupt or truncated?): "
                                  f"{type(e).__name__}: {e}") from e
    return header["config"], arrays, header["extra"]


def _describe(shape, dtype):
    return f"{tuple(shape)} {dtype}"


def _read_header(zf, path, size):
    if f"{HEADER}.npy" not in zf.namelist():
        raise CheckpointError(f"{path} is a .npz but not an xpnet checkpoint (no {HEADER} entry)")
    raw = _read_array(zf, path, size, HEADER, None, "uint8")
    if raw.ndim != 1:
        raise CheckpointError(f"{path}: the header must be 1-D JSON text, got an array of shape {raw.shape}")
    header = json.loads(raw.tobytes().decode())
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"{path}: header format is {found!r}, expected {FORMAT!r}")
    for key in ("config", "extra", "arrays"):
        if not isinstance(header.get(key), dict):
            raise CheckpointError(f"{path}: header entry {key!r} must be a JSON object, got {header.get(key)!r:.80}")
    for name, spec in header["arrays"].items():
        ok = isinstance(spec, list) and len(spec) == 2 and isinstance(spec[0], list) and isinstance(spec[1], str)
        ok = ok and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in spec[0])
        if not ok or name == HEADER:
            raise CheckpointError(f"{path}: header entry for array {name!r} must be [shape, dtype], got {spec!r:.80}")
    return header


def _read_array(zf, path, size, name, shape, dtype):
    """One array, its .npy header checked against (shape, dtype) before its data is read (shape None: any)."""
    info = zf.getinfo(f"{name}.npy")
    if info.compress_size > size or (info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size):
        raise CheckpointError(f"{path}: the zip directory gives array {name} {info.file_size} bytes "
                              f"in a file of {size}; the file is corrupt")
    with zf.open(info) as member:
        version = npy.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise CheckpointError(f"{path}: array {name} has .npy format version {version}, expected 1.0 or 2.0")
        read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        found_shape, fortran_order, found_dtype = read_header(member)
        if found_dtype.hasobject:
            raise CheckpointError(f"{path}: array {name} holds Python objects, which only a pickle can load; "
                                  f"xpnet checkpoints hold numbers and are never unpickled")
        if found_dtype.kind not in "biuf" or found_dtype.name != dtype or \
                (shape is not None and list(found_shape) != list(shape)):
            want = dtype if shape is None else _describe(shape, dtype)
            raise CheckpointError(f"{path}: array {name} is stored as {_describe(found_shape, found_dtype)}, "
                                  f"expected {want}")
        nbytes = math.prod(found_shape) * found_dtype.itemsize
        if nbytes > info.file_size:  # checked before reading, so a forged shape cannot make us allocate it
            raise CheckpointError(f"{path}: array {name} {_describe(found_shape, found_dtype)} needs {nbytes} "
                                  f"bytes, its zip entry holds {info.file_size}")
        data = member.read(nbytes)
        if len(data) != nbytes:
            raise CheckpointError(f"{path}: array {name} is truncated: {len(data)} of {nbytes} bytes")
    array = np.frombuffer(bytearray(data), dtype=found_dtype)
    return array.reshape(found_shape, order="F" if fortran_order else "C")
