"""Mirrors of apps that are gone, or whose repository moved, are deleted from this host.

A mirror (deployq.worker.mirror) is named after its app and the hash of the repository URL,
so ``app remove`` or a new ``--repo`` leaves the old one behind, possibly gigabytes. Each
worker process sweeps its host's mirrors directory with the pruner's rhythm (first a minute
after start, then hourly). A mirror whose lock a checkout holds is in use: it is left for
the next sweep, never deleted under a running git.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import shutil
from pathlib import Path

from deployq.errors import DeployqError
from deployq.store import Store
from deployq.supervisor import Component
from deployq.worker.mirror import MIRRORS_DIR, mirror_path

log = logging.getLogger(__name__)

SWEEP_INTERVAL_S = 3600.0
SWEEP_FIRST_DELAY_S = 60.0
#: what a mirror leaves in the directory: itself, its replacement being made, its lock
_PARTS = (".git.new", ".git.lock", ".git")


def sweep(mirrors: Path, keep: set[str]) -> list[str]:
    """Delete every mirror in ``mirrors`` whose name (``<app>-<hash>.git``) is not in
    ``keep``, with its lock and any half-made replacement; returns the names deleted.
    A mirror in use is skipped."""
    try:
        entries = os.listdir(mirrors)
    except FileNotFoundError:
        return []
    names = {entry[: -len(part)] + ".git" for entry in entries for part in _PARTS
             if entry.endswith(part)}  # fmt: skip
    return [name for name in sorted(names - keep) if _delete(mirrors / name)]


def _delete(mirror: Path) -> bool:
    lock = mirror.with_name(mirror.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a checkout is using it (a job of the app still running)
        shutil.rmtree(mirror, ignore_errors=True)
        shutil.rmtree(mirror.with_name(mirror.name + ".new"), ignore_errors=True)
        lock.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


async def sweep_mirrors(store: Store) -> list[str]:
    """One sweep of this host's mirrors against the apps as they are now."""
    data_dir = store.settings.data_dir
    keep = {mirror_path(data_dir, app.name, app.repo_url).name for app in await store.apps.all()}
    return await asyncio.to_thread(sweep, data_dir / MIRRORS_DIR, keep)


def mirror_sweeper(
    store: Store,
    *,
    interval_s: float = SWEEP_INTERVAL_S,
    first_delay_s: float = SWEEP_FIRST_DELAY_S,
) -> Component:
    """A loop that sweeps this host's mirrors every ``interval_s`` until stopped."""

    async def run(stop: asyncio.Event) -> None:
        delay = first_delay_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()
                    return
            try:
                if deleted := await sweep_mirrors(store):
                    log.info("deleted the mirrors of apps gone or moved: %s", ", ".join(deleted))
            except DeployqError as exc:
                if store.health.up:  # an outage is logged once, by deployq.db.health
                    log.warning("mirror sweep failed (will try again): %s", exc)
            delay = interval_s * random.uniform(0.9, 1.1)

    return run
