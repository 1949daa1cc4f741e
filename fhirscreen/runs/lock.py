"""One run at a time per output directory: an advisory lock (flock) on ``DIR/.lock``.

The kernel releases a flock when its process dies, even on ``kill -9``, so a lock can never be held
by a dead process. The file itself stays (removing it would let two runs lock two different files);
it holds the pid and start time of the run holding it, and is emptied on a clean exit. A run that
finds the file non-empty but unlocked is taking over after a run that died: it says so.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("fhirscreen")

LOCK_NAME = ".lock"


class LockedError(Exception):
    """Another run holds the output directory's lock."""


class OutputLock:
    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock at once or raise LockedError (never waits: cron would pile runs up)."""
        import fcntl  # POSIX only; imported here so that the other commands still load elsewhere

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise LockedError(
                f"{self.path.parent}: another fhirscreen run is writing here ({holder or 'holder unknown'}); "
                "this run stops without touching it"
            ) from None
        except OSError:
            os.close(fd)
            raise
        previous = _read(fd)
        if previous:
            log.warning(
                "%s: taking over a stale lock left by a run that did not finish (%s)", self.path, previous
            )
        started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} started {started}\n".encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)  # an empty file: the last run finished cleanly
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None


def _read(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
