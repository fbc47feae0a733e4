"""The scan collector (deployq.worker.scans) against a real database and the FAKE Harbor API
(tests/fixtures/harbor_fake.py): it attaches results to finished jobs, gives up with the reason
after the deadline or when Harbor lost the artifact, shares the work between processes (each
result once), and outlives a database outage under the supervisor."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from pg_proxy import PgProxy

from deployq.models import AppSpec, Job, JobStatus, Trigger, TriggerKind
from deployq.store import Outcome, Store
from deployq.supervisor import run_supervised
from deployq.testing.jobs import wait_job
from deployq.worker.scans import ScanCollector
from fixtures.harbor_fake import FakeHarbor

DIGEST = "sha256:" + "cd" * 32


def _harbor_settings(url: str, fake: FakeHarbor, **extra: Any) -> dict[str, Any]:
    return {
        "registry_url": url,
        "registry_username": fake.username,
        "registry_password": fake.password,
        "harbor_api": True,
        "harbor_scan": True,
        "harbor_scan_poll": 0.05,
        **extra,
    }


async def finished_job_with_scan(
    store: Store, *, repository: str = "web", deadline_s: float = 3600
) -> Job:
    """A job that asked Harbor for a scan of DIGEST and succeeded, as the pipeline leaves it."""
    if not await store.servers.all():
        await store.servers.add("local", "unix:///var/run/docker.sock", capacity=16)
    if "web" not in {a.name for a in await store.apps.all()}:
        await store.apps.add(AppSpec(name="web", repo_url="https://github.com/acme/web.git"))
    await store.queue.enqueue(Trigger(kind=TriggerKind.MANUAL, app="web", ref="refs/heads/main"))
    [lease] = await store.leases.claim("w", limit=1)
    await store.scans.record(
        lease,
        project="deployq",
        repository=repository,
        digest=DIGEST,
        summary={"state": "requested"},
        first_poll_s=0,
        deadline_s=deadline_s,
    )
    return await store.leases.finish(lease, Outcome(JobStatus.SUCCEEDED))


@asynccontextmanager
async def collectors(store: Store, count: int = 1) -> AsyncIterator[None]:
    """``count`` collectors (as ``count`` worker processes), supervised as in the service."""
    stop = asyncio.Event()
    parts = [ScanCollector(store).run for _ in range(count)]
    task = asyncio.create_task(run_supervised(parts, stop, health=store.health))
    try:
        yield
    finally:
        stop.set()
        await task


def _state(job: Job) -> str | None:
    return (job.scan_summary or {}).get("state")


@pytest.fixture
async def harbor_store(
    settings_factory: Any, database_url: str, harbor_fake: tuple[FakeHarbor, str]
) -> AsyncIterator[tuple[Store, FakeHarbor]]:
    fake, url = harbor_fake
    store = await Store.open(settings_factory(**_harbor_settings(url, fake)), database_url)
    yield store, fake
    await store.close()


async def test_a_result_is_attached_to_the_finished_job_with_a_timeline_line(
    harbor_store: tuple[Store, FakeHarbor],
) -> None:
    store, fake = harbor_store
    fake.add_artifact("deployq", "web", DIGEST, {"High": 3, "Low": 1})
    job = await finished_job_with_scan(store)
    fake.artifacts[("deployq", "web", DIGEST)]["requested"] = True  # the pipeline's request

    async with collectors(store):
        done = await wait_job(store, job.id, lambda j: _state(j) == "done")

    assert done.status is JobStatus.SUCCEEDED
    assert (done.scan_summary or {})["high"] == 3
    events = [e for e in await store.jobs.events(job.id) if e.kind == "scan"]
    assert [(e.actor, e.message) for e in events] == [
        (None, "scan pending"),
        ("scan collector", "high 3, low 1"),
    ]
    shown = await _deployq(store, "job", "show", str(job.id))
    assert "  scan       high 3, low 1\n" in shown.stdout, shown.stderr
    as_json = json.loads((await _deployq(store, "job", "show", str(job.id), "--json")).stdout)
    assert as_json["job"]["scan_summary"]["state"] == "done"


async def _deployq(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env |= {"DEPLOYQ_DATABASE_URL": store.dsn, "DEPLOYQ_DATA_DIR": str(store.settings.data_dir)}
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "deployq", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


async def test_no_result_by_the_deadline_or_a_lost_artifact_is_unavailable_with_the_reason(
    harbor_store: tuple[Store, FakeHarbor],
) -> None:
    store, fake = harbor_store
    fake.add_artifact("deployq", "web", DIGEST, {"High": 1})
    fake.artifacts[("deployq", "web", DIGEST)]["requested"] = True
    fake.hold_scans = True  # Harbor never finishes
    late = await finished_job_with_scan(store, deadline_s=0.3)
    lost = await finished_job_with_scan(store, repository="gone")

    async with collectors(store):
        late = await wait_job(store, late.id, lambda j: _state(j) == "unavailable")
        lost = await wait_job(store, lost.id, lambda j: _state(j) == "unavailable")

    assert (late.scan_summary or {})["reason"] == "no result within 300ms"
    assert (lost.scan_summary or {})["reason"] == (
        f"Harbor has no artifact deployq/gone@{DIGEST[:19]} (HTTP 404)"
    )
    assert late.status is lost.status is JobStatus.SUCCEEDED


async def test_collectors_share_the_scans_and_attach_each_result_once(
    harbor_store: tuple[Store, FakeHarbor],
) -> None:
    store, fake = harbor_store
    fake.add_artifact("deployq", "web", DIGEST, {"Critical": 1})
    fake.artifacts[("deployq", "web", DIGEST)]["requested"] = True
    jobs = [await finished_job_with_scan(store) for _ in range(12)]

    async with collectors(store, count=3):
        for job in jobs:
            await wait_job(store, job.id, lambda j: _state(j) == "done")

    for job in jobs:
        results = [e for e in await store.jobs.events(job.id) if e.actor == "scan collector"]
        assert len(results) == 1


async def test_the_collector_outlives_a_database_outage(
    settings_factory: Any, database_url: str, harbor_fake: tuple[FakeHarbor, str]
) -> None:
    fake, url = harbor_fake
    fake.add_artifact("deployq", "web", DIGEST, {"Medium": 2})
    fake.artifacts[("deployq", "web", DIGEST)]["requested"] = True
    fake.hold_scans = True
    proxy = PgProxy(database_url)
    await proxy.start()
    settings = settings_factory(**_harbor_settings(url, fake), db_connect_timeout=5)
    direct = await Store.open(settings, database_url, min_size=1)
    proxied = await Store.open(settings, proxy.dsn, min_size=1)
    try:
        job = await finished_job_with_scan(direct)
        async with collectors(proxied):
            await wait_job(direct, job.id, lambda j: _state(j) == "running")  # it looked
            await proxy.stop()
            async with asyncio.timeout(10):
                await proxied.health.wait_down()
            fake.hold_scans = False  # Harbor finishes while the database is away
            await proxy.start()
            done = await wait_job(direct, job.id, lambda j: _state(j) == "done")
        assert proxied.health.outages >= 1
    finally:
        await proxied.close()
        await direct.close()
        if proxy._server is not None:
            await proxy.stop()

    assert (done.scan_summary or {})["medium"] == 2
