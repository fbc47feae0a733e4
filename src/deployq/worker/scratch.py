"""Each worker's own scratch directory, so what a killed worker left behind is found and removed.

``<data_dir>/scratch/<worker id>/`` holds the worker's workspaces and, as the process's temp
directory, the build directories and the docker config directories that carry registry
logins. The worker holds an ``flock`` on its ``.lock`` while it lives; a worker starting on the
same host removes every scratch directory whose lock nobody holds (its owner is dead, even if
it was killed with SIGKILL), so no workspace, build dir or credential file outlives its job.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
#: a scratch directory without its lock yet is left alone this long (its worker is starting)
UNLOCKED_GRACE_S = 60.0


def _safe(worker_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", worker_id)


class Scratch:
    """``open()`` at start (sweeps the dead's), ``close()`` at the end (removes its own)."""

    def __init__(self, root: Path, worker_id: str) -> None:
        self.root = root
        self.path = root / _safe(worker_id)
        self._lock_fd: int | None = None
        self._previous_tempdir: str | None = None

    @property
    def workspaces(self) -> Path:
        return self.path / "workspaces"

    @property
    def tmp(self) -> Path:
        return self.path / "tmp"

    def open(self) -> list[Path]:
        """Sweep the scratch of dead workers, then claim ours; returns what was removed."""
        self.root.mkdir(parents=True, exist_ok=True)
        removed = self.sweep()
        self.path.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd
        self.workspaces.mkdir(exist_ok=True)
        self.tmp.mkdir(mode=0o700, exist_ok=True)
        # build dirs and docker config dirs (tempfile.mkdtemp) land in our scratch
        self._previous_tempdir = tempfile.tempdir
        tempfile.tempdir = str(self.tmp)
        return removed

    def close(self) -> None:
        if self._lock_fd is None:
            return
        tempfile.tempdir = self._previous_tempdir
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(self._lock_fd)
        self._lock_fd = None

    def sweep(self) -> list[Path]:
        """Remove every scratch directory under root whose owner is gone."""
        removed = []
        for entry in sorted(self.root.iterdir()):
            if entry == self.path or not entry.is_dir():
                continue
            if _owner_alive(entry):
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
            log.warning("removed %s, left by a worker that is gone", entry)
        return removed


def _owner_alive(directory: Path) -> bool:
    """Whether a live process holds the directory's lock."""
    try:
        fd = os.open(directory / LOCK_NAME, os.O_RDWR)
    except FileNotFoundError:  # being created right now, or half-created by a dead worker
        with contextlib.suppress(OSError):
            return time.time() - directory.stat().st_mtime < UNLOCKED_GRACE_S
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing also releases the lock we may just have taken
    return False
