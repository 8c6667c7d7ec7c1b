"""xpnet.allocator: large arrays reused from malloc's heap instead of fresh pages every time."""
import platform
import subprocess
import sys

import pytest

from xpnet import allocator
from xpnet.cli import main

GLIBC = platform.libc_ver()[0] == "glibc"

FAULTS = """
import resource, sys
import numpy as np
from xpnet import allocator

def faults(rounds=20, n=2_000_000):  # page faults of 20 arrays of 8 MB, made, written and freed in turn
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        a = np.empty(n, dtype=np.float32)
        a.fill(1.0)
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

print(allocator.reuse_freed_memory(), allocator.describe())
faults(2)  # the heap grows once
print(faults())
"""


@pytest.mark.skipif(not GLIBC, reason="mallopt's mmap threshold is glibc's")
def test_freed_large_arrays_are_reused_without_page_faults():
    out = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "True glibc, blocks up to 1 GiB from the heap (xpnet.allocator)"
    assert int(out[1]) < 50  # 8 MB is 2,048 pages; fresh mmaps would fault on each of them


@pytest.mark.parametrize("setting, calls", [(None, 1), ("heap", 1), ("default", 0)])
def test_the_command_line_reuses_freed_memory_unless_told_not_to(monkeypatch, capsys, setting, calls):
    done = []
    monkeypatch.setattr(allocator, "reuse_freed_memory", lambda: done.append(1) or True)
    if setting is None:
        monkeypatch.delenv("XPNET_MALLOC", raising=False)
    else:
        monkeypatch.setenv("XPNET_MALLOC", setting)
    assert main(["info"]) == 0
    assert len(done) == calls


def test_describe_says_what_this_process_does(monkeypatch):
    monkeypatch.setattr(allocator, "threshold", None)
    assert allocator.describe() == "C library default"
    monkeypatch.setattr(allocator, "threshold", 1 << 29)
    assert allocator.describe() == "glibc, blocks up to 0.5 GiB from the heap (xpnet.allocator)"
