"""Native allocator settings that keep a long conversion's peak memory flat.

A conversion's own data does not grow with bag length (frames stream, rows and statistics spill
to disk), but two native allocators keep high-water marks that creep with the number of frames:

- pyarrow's default pool (mimalloc) keeps the buffers of freed row groups and statistics blocks.
  ``ARROW_DEFAULT_MEMORY_POOL=system`` makes it use malloc. Arrow reads the variable when it is
  imported; switching later with ``pyarrow.set_memory_pool`` measured no better than not at all.
- glibc gives threads that allocate concurrently arenas of their own (up to 8 per core), each with
  its own high-water mark; the camera workers and decode threads are such threads. Two arenas are
  enough: a frame costs a handful of mallocs against a millisecond of codec work.

On the data benchmark (3 JPEG cameras at 320x240, 15 Hz, 2 cores) peak RSS went from 148 MB
(1 minute) / 162 MB (10 minutes) to 137 / 141.5 MB with both. Call :func:`use_lean_allocators`
first thing in a process that converts bags (``dreamzero data convert`` does).
"""

from __future__ import annotations

import ctypes
import os
import sys

M_ARENA_MAX = -8  # glibc <malloc.h>
ARENAS = 2


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)  # the C library this process is linked against
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None
    except (OSError, TypeError):  # TypeError: no default C library to load (Windows)
        return None


def use_lean_allocators(arenas: int = ARENAS) -> list[str]:
    """Apply the settings above where possible; returns what was applied (for logs and tests).

    A user's own ``ARROW_DEFAULT_MEMORY_POOL`` is kept. Nothing changes for pyarrow once it is
    imported, and nothing for malloc on a C library other than glibc (macOS, musl).
    """
    applied: list[str] = []
    if "pyarrow" not in sys.modules and "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        os.environ["ARROW_DEFAULT_MEMORY_POOL"] = "system"
        applied.append("pyarrow uses the system allocator")
    libc = _glibc()
    if libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1:
        applied.append(f"glibc malloc uses at most {arenas} arenas")
    return applied
