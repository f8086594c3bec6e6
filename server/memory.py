"""A long-running server's memory kept flat: fewer glibc malloc arenas for its threads, and
freed heap handed back to the system every few seconds (both no-ops off glibc)."""
from __future__ import annotations

import threading
import time


def fewer_malloc_arenas(arenas: int = 2) -> None:
    """As MALLOC_ARENA_MAX=2, set before the server's threads exist. glibc gives threads their
    own malloc arenas (up to 8 per core) and memory freed in one is not reused by another, so
    the server's RSS creeps under `python load.py --clients 16 --seconds 60 --rounds 3`; this
    limits the arenas (`trim_memory_every` is what holds RSS flat). No-op off glibc."""
    import ctypes
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)          # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        pass



def trim_memory_every(seconds: float = 5.0) -> None:
    """A daemon thread that hands freed heap memory back to the system every `seconds`
    (glibc's malloc_trim; no-op elsewhere). Freed blocks otherwise stay resident: compare the
    server's RSS after each round of `python load.py --clients 16 --seconds 60 --rounds 3`."""
    import ctypes
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return

    def loop():
        while True:
            time.sleep(seconds)
            trim(0)
    threading.Thread(target=loop, name="malloc-trim", daemon=True).start()
