"""The C heap of keyrite's long-running processes (the signer shim, a rehearsal).

glibc gives a block of at least M_MMAP_THRESHOLD bytes its own mapping, unmapped when freed;
but each time such a block is freed it raises the threshold to that block's size (up to 32 MiB).
After the first megabyte buffer (a backup's archive, an output's 1 MiB chunks and their base64)
the next ones come from the heap, where freed space stays resident between live objects: the
shim and the rehearsal each kept 8 to 10 MB more after a backup had been written and read.
A fixed threshold keeps large buffers in their own mappings, given back when freed.
"""

from __future__ import annotations

import ctypes

#: glibc's mallopt parameter number for the mmap threshold (malloc.h)
M_MMAP_THRESHOLD = -3
#: glibc's default starting threshold; fixed here, it no longer rises
LARGE = 128 << 10


def return_large_buffers(threshold: int = LARGE) -> bool:
    """Fix the mmap threshold at `threshold` bytes for this process. False where the C library
    has no mallopt (not glibc): nothing changes there."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, threshold) == 1
