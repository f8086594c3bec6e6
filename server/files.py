"""The files the app writes, and the bounds it keeps them in.

Gradio's upload and cache folder is one of the app's own (`GRADIO_FOLDER`, removed at exit);
import this module before gradio, which reads GRADIO_TEMP_DIR as it loads. Each download is
written to a fresh scratch folder (`scratch`), removed once SCRATCH_AGE old; the scratch
folders and Gradio's folder together are capped by size (`cap_folders`), the oldest files
first. The copies Gradio makes of the page's own files as it is built (the examples' files)
stay while the process runs (`pin_examples`).
"""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path


def _own_gradio_folder() -> Path | None:
    """Gradio's upload and cache folder: one of the app's own (removed at exit) unless
    GRADIO_TEMP_DIR names another. Only the app's own is pruned by size (`cap_folders`):
    the shared default /tmp/gradio holds other apps' files too."""
    if os.environ.get("GRADIO_TEMP_DIR"):
        return None
    own = Path(tempfile.mkdtemp(prefix="shiyu-gradio-"))
    atexit.register(shutil.rmtree, own, ignore_errors=True)
    os.environ["GRADIO_TEMP_DIR"] = str(own)
    return own


GRADIO_FOLDER = _own_gradio_folder()


SCRATCH_AGE = 600      # seconds a download stays: Gradio copies it to its cache on return, and
                       # Blocks(delete_cache=...) removes those copies on the same schedule
TEMP_CAP_MB = 500      # and the two folders together keep at most this much: the oldest files
FRESH = 60             # go first, never one younger than FRESH seconds (it may still be written,
                       # fetched or, an upload, about to be run). A tune call leaves ~4 MB.
_CAPPING = threading.Lock()
PINNED: set[str] = set()    # Gradio's copies of the page's own files (`pin_examples`)


def pin_examples(demo) -> None:
    """Keep the files every block of the built page holds (Gradio's cache copies of the
    examples' files, made as the page is built) for as long as the process runs: an example
    points at its copy for good, while Gradio's sweep (Blocks(delete_cache=...)) removes every
    file older than its age from its first pass on, and `cap_folders` the oldest files first.
    They are the page's few small files, so they are left out of both."""
    for block in demo.blocks.values():
        held = getattr(block, "temp_files", None)
        keep = getattr(block, "keep_in_cache", None)
        if held and keep is not None:
            keep.update(held)             # Gradio's own list of files its sweep leaves
            PINNED.update(os.path.realpath(f) for f in held)


@lru_cache(maxsize=None)
def _scratch_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="shiyu-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def scratch(name: str) -> Path:
    """A fresh path `<one folder per process>/<n>/<name>` for a file to download; folders
    older than SCRATCH_AGE are removed first, so the app's own files stay bounded."""
    root = _scratch_root()
    now = time.time()
    for d in root.iterdir():
        try:                      # aged by its newest file: a batch still writing stays
            newest = max([f.stat().st_mtime for f in d.iterdir()] + [d.stat().st_mtime])
        except OSError:           # removed by another request meanwhile
            continue
        if now - newest > SCRATCH_AGE:
            shutil.rmtree(d, ignore_errors=True)
    cap_folders([root] + ([GRADIO_FOLDER] if GRADIO_FOLDER else []), TEMP_CAP_MB * 1_000_000,
                FRESH, keep=PINNED)
    d = Path(tempfile.mkdtemp(dir=root))
    return d / name


def cap_folders(roots: list[Path], cap: int, fresh: float, keep=frozenset()) -> None:
    """Remove the oldest files under `roots` until they hold at most `cap` bytes, never one
    modified or read in the last `fresh` seconds (its times are read again just before) nor
    one in `keep` (real paths); the folders left empty go too. One request at a time does it."""
    with _CAPPING:
        files = []
        for root in roots:
            for f in root.rglob("*") if root.is_dir() else ():
                with contextlib.suppress(OSError):    # removed by another request meanwhile
                    st = f.stat()
                    if f.is_file() and os.path.realpath(f) not in keep:
                        files.append((max(st.st_mtime, st.st_atime), st.st_size, f))
        total = sum(size for _, size, _ in files)
        for _, size, f in sorted(files):
            if total <= cap:
                break
            with contextlib.suppress(OSError):
                st = f.stat()
                if time.time() - max(st.st_mtime, st.st_atime) < fresh:
                    continue                          # touched since the listing: it stays
                f.unlink()
                total -= size
                for parent in f.parents:
                    if parent in roots or any(parent.iterdir()):
                        break
                    parent.rmdir()
