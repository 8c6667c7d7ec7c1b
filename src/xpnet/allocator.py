"""Large arrays from malloc's heap, not a fresh ``mmap`` each time (glibc only).

glibc's malloc hands out blocks above its mmap threshold as fresh pages from
the system and gives them back when they are freed. A training step that
makes large temporaries (im2col's columns, a conv layer's output, its δ) then
pays a page fault for every 4 KiB it writes, every step. On a 2-core AMD EPYC
VM, LeNet-5's numba step ran in 13–15 ms with the threshold raised and in
22–25 ms without (README, "Convnets against PyTorch"). Raising it keeps freed
blocks in the heap for the next step, at the price of a resident size that
stays near the peak.

The ``xpnet`` command does this at start (``XPNET_MALLOC=default`` leaves malloc
as it is); a program that imports xpnet can call ``reuse_freed_memory()``, or
start Python with
``GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1073741824:glibc.malloc.trim_threshold=1073741824``.
"""
import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers, from glibc's malloc.h
DEFAULT_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap; larger ones are still mapped
threshold = None  # what reuse_freed_memory() set in this process, if it did


def reuse_freed_memory(limit: int = DEFAULT_THRESHOLD) -> bool:
    """Serve blocks up to ``limit`` bytes from malloc's heap, so freed arrays are reused without page faults.

    Returns whether it applied: False where the C library is not glibc (macOS, Windows, musl).
    """
    global threshold
    if platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt  # the heap neither maps blocks up to limit nor gives their pages back
    if not (mallopt(M_MMAP_THRESHOLD, int(limit)) and mallopt(M_TRIM_THRESHOLD, int(limit))):
        return False
    threshold = int(limit)
    return True


def describe() -> str:
    """One line for benchmark reports: how large blocks are allocated in this process."""
    if threshold is None:
        return "C library default"
    return f"glibc, blocks up to {threshold / 2**30:g} GiB from the heap (xpnet.allocator)"
