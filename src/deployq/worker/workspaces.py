"""Where a job's checkout goes: a fresh directory, or the app's warm one of the build before.

A job's files are checked out through the app's mirror (deployq.worker.mirror) with one
``git read-tree --reset -u``. Into an empty directory that writes every file of the commit;
into the directory of the app's previous build, whose ``.git/index`` still describes what it
holds, git writes only the files that changed and removes those that went. And BuildKit keeps
the last context it saw of each context *path*: built again from the same path, the CLI sends
it only what changed, as a plain ``docker build`` of a working tree does. So a worker keeps the
workspace of each app's last successful build (its "warm" workspace, up to ``WARM_MAX`` apps,
the least recently used go first) and checks the app's next commit out into it.

Only where nothing but git writes into the workspace: the BuildKit backend (the Engine backend
puts a generated Dockerfile into the context) without submodules (they are cloned, not read
from the mirror). A workspace is reused by one job at a time (another job of the app gets a
fresh directory meanwhile, removed after its build) and only after a build that succeeded: a
failed, cancelled, lost or interrupted one is removed, and the next job starts from an empty
directory. A fresh directory is named ``job-<id>-<attempt>``; once its build succeeds it is the
app's warm workspace where it is, under that name: renamed, it would be a path BuildKit has
never seen, and the next build would send the whole context again (``docker build`` of a
copied or moved directory does). Every workspace is in the worker's scratch directory
(deployq.worker.scratch), so none outlives its worker.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

#: warm workspaces kept per worker (one per app; the least recently used go first)
WARM_MAX = 8


class Workspaces:
    """The workspaces of one worker's jobs under ``root``. Called from the event loop only;
    the file operations it returns are for a thread."""

    def __init__(self, root: Path, *, warm_max: int = WARM_MAX) -> None:
        self.root = root
        self.warm_max = warm_max
        #: app key -> its warm workspace, least recently used first
        self._warm: dict[str, Path] = {}
        self._busy: set[str] = set()

    def take(self, key: str | None, name: str) -> Workspace:
        """The workspace of a job: the app's warm one when ``key`` (the app's repository;
        None: never reused) has one that no other job uses, else ``root/name``."""
        if key is None or key in self._busy:
            return Workspace(self.root / name, None, reused=False)
        self._busy.add(key)
        warm = self._warm.pop(key, None)
        if warm is None:
            return Workspace(self.root / name, key, reused=False)
        self._warm[key] = warm  # the most recently used now
        return Workspace(warm, key, reused=True)

    def done(self, workspace: Workspace, *, reusable: bool) -> list[Path]:
        """The job in ``workspace`` is over; with ``reusable`` (it succeeded) the directory
        stays where it is as the app's warm one. The directories to remove
        (:func:`remove`, in a thread)."""
        path, key = workspace.path, workspace.key
        if key is None:  # a fresh directory beside the app's warm one, or never reused
            return [path]
        self._busy.discard(key)
        if not reusable:
            if self._warm.get(key) == path:
                del self._warm[key]
            return [path]
        previous = self._warm.pop(key, None)
        self._warm[key] = path  # the most recently used
        idle = [k for k in self._warm if k not in self._busy and k != key]
        evicted = [self._warm.pop(k) for k in idle[: max(0, len(self._warm) - self.warm_max)]]
        return evicted if previous in (None, path) else [previous, *evicted]


@dataclass(frozen=True)
class Workspace:
    """A job's workspace: ``path``; ``key``: the app whose warm workspace this job holds
    (None: it holds none); ``reused``: ``path`` holds the app's previous build."""

    path: Path
    key: str | None
    reused: bool


def remove(paths: list[Path]) -> None:
    """Remove the directories ``paths`` (in a thread)."""
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)
