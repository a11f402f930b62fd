"""keyrite.heap: with the mmap threshold fixed, freed megabyte buffers leave the process; left
to glibc, they stay resident once a larger block has been freed before them."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

#: 32 blocks of 1 MiB, each with a small live block above it, freed after a 4 MiB block was:
#: prints how many MB of them left the process (RSS before the free minus after)
PROGRAM = """
import sys
from keyrite.heap import return_large_buffers
if sys.argv[1] == "fixed":
    assert return_large_buffers()
def rss():
    return int([x.split()[1] for x in open("/proc/self/status") if x.startswith("VmRSS")][0])
big = bytearray(4 << 20)
del big
blocks, pins = [], []
for _ in range(32):
    blocks.append(bytearray(1 << 20))
    pins.append(bytearray(2048))
before = rss()
del blocks
print((before - rss()) // 1024)
"""


def freed_mb(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).parents[1]).stdout
    return int(out)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's threshold is glibc's")
def test_freed_large_buffers_leave_the_process_only_with_the_fixed_threshold() -> None:
    assert freed_mb("fixed") >= 30
    assert freed_mb("glibc") <= 2  # what the shim and a rehearsal kept before keyrite.heap
