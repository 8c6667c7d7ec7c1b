"""The same-machine C baselines of the XOR experiment, compiled with the system compiler on first use.

Two programs, shipped as package data in ``c/``: ``xor_mlp`` on a small
generic MLP library in the style of nn.h (``mlp.h``: sizes at run time,
arrays allocated once, general loops), and ``xor_221``, hand-written for
the fixed 2-2-1 network. Both read the initial weights on stdin (xpnet's
order), so they start from exactly xpnet's network, and print the final MSE
and the seconds their training loop took, measured inside the program.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import XpnetError

SOURCE_DIR = Path(__file__).parent / "c"
PROGRAMS = {"generic": ("xor_mlp.c", "C generic library (mlp.h)"),
            "fixed": ("xor_221.c", "C hand-written 2-2-1")}
CFLAGS = ("-O3",)
# clock_gettime needs POSIX; -lm for exp.
BUILD_FLAGS = ("-std=c99", "-D_POSIX_C_SOURCE=199309L")


class BaselineError(XpnetError, RuntimeError):
    """A C baseline that cannot be built or run; the message says why."""


def compiler():
    """Path of the C compiler ($CC, else ``cc``), or None when there is none."""
    return shutil.which(os.environ.get("CC", "cc"))


def compiler_version(cc):
    result = subprocess.run([cc, "--version"], capture_output=True, text=True)
    return (result.stdout or result.stderr).splitlines()[0] if result.returncode == 0 else "unknown"


def cache_dir():
    """Where compiled programs live: $XDG_CACHE_HOME/xpnet/bench (~/.cache), or the temp folder."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "xpnet" / "bench"
    try:
        root.mkdir(parents=True, exist_ok=True)
        return root
    except OSError:
        root = Path(tempfile.gettempdir()) / "xpnet-bench"
        root.mkdir(parents=True, exist_ok=True)
        return root


def flags(cflags=CFLAGS):
    """The compiler flags, as a reader would type them."""
    return " ".join([*cflags, *BUILD_FLAGS, "-lm"])


def build_command(cc, program, output, cflags=CFLAGS):
    return [cc, *cflags, *BUILD_FLAGS, "-o", str(output), str(SOURCE_DIR / PROGRAMS[program][0]), "-lm"]


def build(program, cflags=CFLAGS):
    """Path of the compiled ``program`` ("generic" or "fixed"), compiling it into the cache when needed."""
    cc = compiler()
    if cc is None:
        raise BaselineError(f"no C compiler found (looked for {os.environ.get('CC', 'cc')!r}; set $CC or install one, "
                           "e.g. apt-get install gcc)")
    key = hashlib.sha256()
    for part in (cc, compiler_version(cc), *cflags, *BUILD_FLAGS):
        key.update(part.encode() + b"\0")
    for source in sorted(SOURCE_DIR.iterdir()):
        key.update(source.read_bytes())
    output = cache_dir() / f"{Path(PROGRAMS[program][0]).stem}-{key.hexdigest()[:16]}"
    if output.exists():
        return output
    partial = output.with_name(f"{output.name}.{os.getpid()}.tmp")  # renamed when complete: no half-built file
    result = subprocess.run(build_command(cc, program, partial, cflags), capture_output=True, text=True)
    if result.returncode != 0:
        raise BaselineError(f"compiling {PROGRAMS[program][0]} failed:\n{result.stderr.strip()}")
    os.replace(partial, output)
    return output


def run(executable, method, iterations, weights, sizes, eps=0.1):
    """(seconds, final MSE) of one run: ``method`` "bp", "fd" or "fd-central"; ``weights`` [W1, b1, ...] arrays."""
    args = [str(executable), method, str(int(iterations)), repr(float(eps))]
    if Path(executable).name.startswith("xor_mlp"):
        args += [str(s) for s in sizes]
    elif list(sizes) != [2, 2, 1]:
        raise ValueError(f"the hand-written program only knows the 2-2-1 network, got sizes {sizes}")
    stdin = " ".join(repr(float(v)) for w in weights for v in w.ravel())
    result = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if result.returncode != 0:
        raise BaselineError(f"{' '.join(args)} failed (exit {result.returncode}): {result.stderr.strip()}")
    fields = dict(line.split() for line in result.stdout.splitlines())
    return float(fields["seconds"]), float(fields["mse"])
