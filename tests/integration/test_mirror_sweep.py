"""The mirrors of apps that are gone or moved are deleted from the host; those of the apps as
they are now, and one a checkout is using, are kept (deployq.worker.mirror_sweep)."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
from pathlib import Path

from deployq.models import AppSpec
from deployq.store import Store
from deployq.worker.mirror import MIRRORS_DIR, mirror_path
from deployq.worker.mirror_sweep import mirror_sweeper, sweep_mirrors
from fixtures.git import git


def make_mirror(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    git(path.parent, "init", "-q", "--bare", path.name)
    path.with_name(path.name + ".lock").touch()
    return path


async def test_mirrors_of_removed_and_moved_apps_go_and_one_in_use_waits(store: Store) -> None:
    data = store.settings.data_dir
    for name in ("web", "api", "old", "busy"):
        await store.apps.add(AppSpec(name=name, repo_url=f"https://git.example.com/t/{name}.git"))
    web = make_mirror(mirror_path(data, "web", "https://git.example.com/t/web.git"))
    moved = make_mirror(mirror_path(data, "api", "https://git.example.com/t/api.git"))
    await store.apps.update(
        AppSpec(name="api", repo_url="https://git.example.com/elsewhere/api.git")
    )
    api = make_mirror(mirror_path(data, "api", "https://git.example.com/elsewhere/api.git"))
    old = make_mirror(mirror_path(data, "old", "https://git.example.com/t/old.git"))
    (old.with_name(old.name + ".new") / "objects").mkdir(parents=True)  # a replacement half-made
    busy = make_mirror(mirror_path(data, "busy", "https://git.example.com/t/busy.git"))
    stranger = data / MIRRORS_DIR / "notes.txt"  # not a mirror: never touched
    stranger.write_text("mine\n")
    await store.apps.remove("old")
    await store.apps.remove("busy")

    fd = os.open(busy.with_name(busy.name + ".lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a checkout of a job of "busy" still running
        first = await sweep_mirrors(store)
    finally:
        os.close(fd)
    second = await sweep_mirrors(store)

    assert sorted(first) == sorted([moved.name, old.name])
    assert second == [busy.name]
    assert sorted(os.listdir(data / MIRRORS_DIR)) == sorted(
        [web.name, web.name + ".lock", api.name, api.name + ".lock", "notes.txt"]
    )
    assert git(web, "rev-parse", "--is-bare-repository") == "true"


async def test_the_worker_sweeps_on_its_own(store: Store) -> None:
    gone = make_mirror(mirror_path(store.settings.data_dir, "gone", "https://h/gone.git"))
    swept = asyncio.Event()

    class Said(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "deleted the mirrors" in record.getMessage():
                swept.set()

    said, logger = Said(), logging.getLogger("deployq.worker.mirror_sweep")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(said)
    stop = asyncio.Event()
    sweeper = asyncio.create_task(mirror_sweeper(store, interval_s=0.05, first_delay_s=0)(stop))
    try:
        async with asyncio.timeout(30):
            await swept.wait()
    finally:
        logger.removeHandler(said)
        logger.setLevel(level)
        stop.set()
        async with asyncio.timeout(5):
            await sweeper
    assert not gone.exists() and not gone.with_name(gone.name + ".lock").exists()
