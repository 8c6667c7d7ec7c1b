"""Checkpoints: a .npz or .safetensors of named NumPy arrays plus a JSON header, never pickles.

The suffix picks the format. In a .npz the header is the ``__xpnet_header__``
member; in a .safetensors it is the same JSON text under that key of the
file's ``__metadata__``, so any safetensors reader gets the weights.

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

from .errors import CheckpointError, ConfigError, XpnetError
from .optional import require

HEADER = "__xpnet_header__"
FORMAT = "xpnet-checkpoint"
# What a damaged file can make zipfile (bz2 members raise OSError), numpy's .npy header parser (tokenize,
# ast) and json raise.
UNREADABLE = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, OverflowError, MemoryError,
              RuntimeError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
              struct.error)
FORMATS = (".npz", ".safetensors")
# safetensors' dtype names for the dtypes a checkpoint holds
SAFETENSORS_DTYPES = {"float32": "F32", "float64": "F64", "float16": "F16", "int64": "I64", "int32": "I32",
                      "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def suffix(path):
    """The checkpoint format of ``path`` by its suffix, or None for a suffix that matches none."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    return ext if ext in FORMATS else None


def save(path, config, arrays, extra=None):
    """Write ``arrays`` (name → NumPy array) with a header holding ``config`` and ``extra`` (JSON-able)."""
    from . import __version__

    path = os.fspath(path)
    kind = suffix(path)
    if kind is None:
        raise ConfigError(f"cannot save {path}: its suffix matches no checkpoint format; xpnet writes "
                          f"{' and '.join(FORMATS)} files")
    arrays = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    header = {"format": FORMAT, "version": __version__, "config": config, "extra": extra or {},
              "arrays": {name: [list(a.shape), a.dtype.name] for name, a in arrays.items()}}
    if kind == ".safetensors":
        data = require("safetensors.numpy").save(arrays, metadata={HEADER: json.dumps(header)})
        write = lambda f: f.write(data)  # noqa: E731
    else:
        payload = {HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays}
        write = lambda f: np.savez(f, **payload)  # noqa: E731
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".xpnet-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
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
        kind = suffix(path)
        if kind is None:
            raise CheckpointError(f"cannot load {path}: its suffix matches no checkpoint format; xpnet reads "
                                  f"{' and '.join(FORMATS)} files")
        if size == 0:
            raise CheckpointError(f"{path} is empty; expected an xpnet {kind} checkpoint")
        try:
            if kind == ".safetensors":
                header, arrays = _load_safetensors(f, path, size, expected)
            else:
                with zipfile.ZipFile(f) as zf:
                    header = _read_header(zf, path, size)
                    _check_expected(header, expected, path)
                    arrays = {name: _read_array(zf, path, size, name, shape, dtype)
                              for name, (shape, dtype) in header["arrays"].items()}
        except XpnetError:  # ours, already readable (``expected`` may raise ConfigError too)
            raise
        except UNREADABLE as e:
            raise CheckpointError(f"{path} is not a readable xpnet checkpoint (corrupt or truncated?): "
                                  f"{type(e).__name__}: {e}") from e
    return header["config"], arrays, header["extra"]


def _check_expected(header, expected, path):
    """The arrays the caller needs (``expected(header)``: {name: (shape, dtype)}) are declared as it needs them."""
    declared = header["arrays"]
    for name, (shape, dtype) in (expected(header) if expected else {}).items():
        if name not in declared:
            raise CheckpointError(f"{path}: missing array {name}; expected {_describe(shape, dtype)}")
        if declared[name] != [list(shape), dtype]:
            raise CheckpointError(f"{path}: array {name} is {_describe(*declared[name])}, "
                                  f"expected {_describe(shape, dtype)}")


def _load_safetensors(f, path, size, expected):
    """(header, arrays) of a .safetensors checkpoint: its table and our header checked before any data is read."""
    start = f.read(8)
    if len(start) != 8:
        raise CheckpointError(f"{path}: {len(start)} bytes, too short for a safetensors file")
    n = struct.unpack("<Q", start)[0]
    if n > size - 8:
        raise CheckpointError(f"{path}: the safetensors header claims {n} bytes in a file of {size}; corrupt")
    table = json.loads(f.read(n).decode())
    if not isinstance(table, dict):
        raise CheckpointError(f"{path}: the safetensors header must be a JSON object, got {type(table).__name__}")
    metadata = table.pop("__metadata__", None)
    if not isinstance(metadata, dict) or not isinstance(metadata.get(HEADER), str):
        raise CheckpointError(f"{path} is a safetensors file but not an xpnet checkpoint (its __metadata__ has no "
                              f"{HEADER}); xn.from_torch builds a network from a torch module's weights")
    header = _check_header(json.loads(metadata[HEADER]), path)
    _check_expected(header, expected, path)
    declared, data_start, spans = header["arrays"], 8 + n, {}
    if set(table) != set(declared):
        raise CheckpointError(f"{path}: the file holds tensors {sorted(table)!r:.200}, the header declares "
                              f"{sorted(declared)!r:.200}")
    for name, (shape, dtype) in declared.items():
        entry = table[name]
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and not isinstance(o, bool)
                                                                        and o >= 0 for o in offsets)):
            raise CheckpointError(f"{path}: tensor {name} has no valid data_offsets, got {entry!r:.80}")
        if dtype not in SAFETENSORS_DTYPES or entry.get("dtype") != SAFETENSORS_DTYPES[dtype] or \
                entry.get("shape") != shape:
            raise CheckpointError(f"{path}: tensor {name} is stored as {entry.get('shape')} {entry.get('dtype')}, "
                                  f"the header declares {_describe(shape, dtype)}")
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if offsets[1] - offsets[0] != nbytes or data_start + offsets[1] > size:
            raise CheckpointError(f"{path}: tensor {name} {_describe(shape, dtype)} needs {nbytes} bytes, its "
                                  f"offsets {offsets} in a file of {size} do not hold them")
        spans[name] = offsets[0]
    arrays = {}
    for name, (shape, dtype) in declared.items():  # every check passed: now read the data
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        f.seek(data_start + spans[name])
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise CheckpointError(f"{path}: tensor {name} is truncated: {len(data)} of {nbytes} bytes")
        arrays[name] = np.frombuffer(bytearray(data), dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype).reshape(
            shape)
    return header, arrays


def _describe(shape, dtype):
    return f"{tuple(shape)} {dtype}"


def _read_header(zf, path, size):
    if f"{HEADER}.npy" not in zf.namelist():
        raise CheckpointError(f"{path} is a .npz but not an xpnet checkpoint (no {HEADER} entry)")
    raw = _read_array(zf, path, size, HEADER, None, "uint8")
    if raw.ndim != 1:
        raise CheckpointError(f"{path}: the header must be 1-D JSON text, got an array of shape {raw.shape}")
    return _check_header(json.loads(raw.tobytes().decode()), path)


def _check_header(header, path):
    """The parsed JSON header, checked: xpnet's format, config/extra/arrays objects, [shape, dtype] per array."""
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
