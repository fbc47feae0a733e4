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
fresh directory meanwhile) and only after a build that succeeded: a failed, cancelled, lost or
interrupted one is removed, and the next job starts from an empty directory. A fresh
directory is named ``job-<id>-<attempt>``; once its build succeeds it becomes the app's warm
workspace (renamed on the same file system). Every workspace is in the worker's scratch
directory (deployq.worker.scratch), so none outlives its worker.
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

    def done(self, workspace: Workspace, *, reusable: bool) -> Settle:
        """The job in ``workspace`` is over; with ``reusable`` (it succeeded) the directory
        becomes the app's warm one. What to do on disk: :func:`settle`, in a thread."""
        path, key = workspace.path, workspace.key
        if key is None:  # a fresh directory beside the app's warm one, or never reused
            return Settle(path, None, [path])
        self._busy.discard(key)
        if not reusable:
            if self._warm.get(key) == path:
                del self._warm[key]
            return Settle(path, None, [path])
        target = self._warm.setdefault(key, self.root / f"warm-{key}")
        idle = [k for k in self._warm if k not in self._busy and k != key]
        evicted = [self._warm.pop(k) for k in idle[: max(0, len(self._warm) - self.warm_max)]]
        return Settle(path, target, evicted)


@dataclass(frozen=True)
class Workspace:
    """A job's workspace: ``path``; ``key``: the app whose warm workspace this job holds
    (None: it holds none); ``reused``: ``path`` holds the app's previous build."""

    path: Path
    key: str | None
    reused: bool


@dataclass(frozen=True)
class Settle:
    """What becomes of a finished job's ``workspace``: renamed to ``warm`` (None: it is in
    ``remove``), and the directories to remove."""

    workspace: Path
    warm: Path | None
    remove: list[Path]


def settle(plan: Settle) -> None:
    """Carry out ``plan`` (in a thread: it renames and removes directories)."""
    if plan.warm is not None and plan.warm != plan.workspace:
        shutil.rmtree(plan.warm, ignore_errors=True)
        try:
            plan.workspace.rename(plan.warm)
        except OSError:  # the next job of the app checks out into an empty directory
            shutil.rmtree(plan.workspace, ignore_errors=True)
    for path in plan.remove:
        shutil.rmtree(path, ignore_errors=True)
