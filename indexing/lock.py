"""One writer at a time per index folder, across processes: an ``flock`` on ``FOLDER/.lock``.

Every writer of an index folder (build, ``add``, ``remove``, the server's AddItems and
RemoveItems) commits a new generation while holding this lock, so two writers can never both
derive "generation N+1" from generation N and lose one of the two changes. The kernel drops
an ``flock`` when its process dies, so a killed writer never leaves the folder locked.
Readers take no lock: they only follow ``manifest.json``, which is replaced atomically.

The lock file holds the holder's pid and command line, for the "waiting for ..." message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
DEFAULT_TIMEOUT_S = 600.0


class IndexLockTimeout(TimeoutError):
    """The folder's write lock stayed taken for longer than the caller would wait."""


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def folder_lock(
    folder: str | Path, timeout_s: float | None = DEFAULT_TIMEOUT_S, on_wait: Callable[[str], None] | None = None
) -> Iterator[Path]:
    """Hold the exclusive write lock of ``folder`` (created if missing) for the ``with`` block.

    Waits up to ``timeout_s`` seconds (None: for ever) when another process holds it, saying
    so once through ``on_wait`` (default: ``log.warning``); then raises :class:`IndexLockTimeout`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = f"waiting for the write lock on {folder} (held by {_holder(fd)})"
            (on_wait or log.warning)(message)
            start, pause = time.monotonic(), 0.01
            while True:
                time.sleep(pause)
                pause = min(pause * 2, 0.05)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if timeout_s is not None and time.monotonic() - start > timeout_s:
                        raise IndexLockTimeout(
                            f"{folder}: the write lock is still held by {_holder(fd)} after {timeout_s:g} s; "
                            "another build, add or remove is running on this index"
                        ) from None
            log.info("got the write lock on %s after %.1f s", folder, time.monotonic() - start)
        since = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        note = f"pid {os.getpid()} ({' '.join(sys.argv)[:200]}) since {since}\n".encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock
