"""Commit statuses through the notifications outbox, against the fake forge
(deployq.testing.fake_forge): the real queue path (enqueue -> claim -> finish) writes them,
the Notifier sends them, in order, exactly once, across a forge outage."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp.test_utils import TestServer
from test_notifier import FAST_RETRY, running_notifier

from deployq.models import AppSpec, JobStatus
from deployq.store import Outcome
from deployq.testing.fake_forge import FakeForge
from deployq.testing.services import free_port
from fixtures.smtp import StoreFactory, add_notifying_app, run_job

TOKEN = "forge-token-1"
SUCCESS = Outcome(JobStatus.SUCCEEDED, image_ref="127.0.0.1:5000/acme/myapp:main")
FAILURE = Outcome(JobStatus.FAILED, error="docker build exited with 1")
#: how long the forge is down in the outage test (longer than the notifier's timeouts)
OUTAGE_S = 30.0


async def _serve(forge: FakeForge, port: int = 0) -> TestServer:
    server = TestServer(forge.web_app(), host="127.0.0.1", port=port)
    await server.start_server()
    return server


async def test_a_github_job_leaves_pending_then_success_on_its_commit(
    notify_store: StoreFactory,
) -> None:
    forge = FakeForge(tokens={TOKEN}, projects={"acme/myapp"})
    server = await _serve(forge)
    base = str(server.make_url("")).rstrip("/")
    store = await notify_store(github_api_url=base, **FAST_RETRY)
    await add_notifying_app(store, forge_token=TOKEN)
    try:
        async with running_notifier(store) as results:
            job = await run_job(store, SUCCESS)
            await results.wait(lambda: results.delivered == 3)
    finally:
        await server.close()

    assert [(s.state, s.context, s.sha) for s in forge.statuses] == [
        ("pending", "deployq/myapp", job.commit_sha),
        ("pending", "deployq/myapp", job.commit_sha),
        ("success", "deployq/myapp", job.commit_sha),
    ]
    assert forge.statuses[-1].target_url == f"{store.settings.base_url}/api/v1/jobs/{job.id}"
    assert forge.statuses[-1].description == f"job {job.id} succeeded"


async def test_a_gitlab_job_leaves_pending_running_failed(notify_store: StoreFactory) -> None:
    forge = FakeForge(tokens={TOKEN}, projects={"group/sub/myapp"})
    server = await _serve(forge)
    base = str(server.make_url("")).rstrip("/")
    store = await notify_store(gitlab_url=base, **FAST_RETRY)
    await store.servers.add("local", "unix:///var/run/docker.sock", capacity=4)
    await store.apps.add(
        AppSpec(
            name="myapp",
            repo_url="https://gitlab.example.com/group/sub/myapp.git",
            forge_token=TOKEN,
            max_attempts=1,  # the failure is the end (a retry would be pending again)
        )
    )
    try:
        async with running_notifier(store) as results:
            job = await run_job(store, FAILURE)
            await results.wait(lambda: results.delivered == 3)
    finally:
        await server.close()

    assert [(s.project, s.state) for s in forge.statuses] == [
        ("group/sub/myapp", "pending"),
        ("group/sub/myapp", "running"),
        ("group/sub/myapp", "failed"),
    ]
    assert forge.statuses[-1].description == f"job {job.id} failed: docker build exited with 1"


async def test_a_refused_token_is_given_up_and_recorded(notify_store: StoreFactory) -> None:
    forge = FakeForge(tokens={"another-token"}, projects={"acme/myapp"})
    server = await _serve(forge)
    store = await notify_store(github_api_url=str(server.make_url("")).rstrip("/"), **FAST_RETRY)
    await add_notifying_app(store, forge_token=TOKEN)
    try:
        async with running_notifier(store) as results:
            job = await run_job(store, SUCCESS)
            await results.wait(lambda: len(results.errors) == 3)
    finally:
        await server.close()

    rows = await store.notifications.recent(job_id=job.id)
    assert {(n.status, n.attempts) for n in rows} == {("failed", 1)}
    assert all("401" in (n.last_error or "") and TOKEN not in (n.last_error or "") for n in rows)
    assert forge.statuses == []


@pytest.mark.slow
async def test_a_forge_down_for_30_s_gets_each_status_once_in_order_when_back(
    notify_store: StoreFactory,
) -> None:
    forge = FakeForge(tokens={TOKEN}, projects={"acme/myapp"})
    port = free_port()
    store = await notify_store(
        github_api_url=f"http://127.0.0.1:{port}", notify_webhook_timeout=1, **FAST_RETRY
    )
    await add_notifying_app(store, forge_token=TOKEN, max_attempts=1)
    async with running_notifier(store) as results:
        down_since = time.monotonic()
        first = await run_job(store, SUCCESS)
        second = await run_job(store, FAILURE)
        await results.wait(lambda: len(results.errors) >= 10, timeout_s=OUTAGE_S)
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))  # the outage
        server = await _serve(forge, port)
        try:
            await results.wait(lambda: results.delivered == 6, timeout_s=30)
        finally:
            await server.close()

    by_job = {
        job.id: [
            s.state
            for s in forge.statuses
            if s.sha == job.commit_sha
            and s.description
            and s.description.startswith(f"job {job.id} ")
        ]
        for job in (first, second)
    }
    assert by_job == {
        first.id: ["pending", "pending", "success"],
        second.id: ["pending", "pending", "failure"],
    }
    assert len(forge.statuses) == 6
    rows = [
        *await store.notifications.recent(job_id=first.id),
        *await store.notifications.recent(job_id=second.id),
    ]
    assert {n.status for n in rows} == {"sent"} and len(rows) == 6
