"""Harbor features through its REST API, against the FAKE Harbor (tests/fixtures/harbor_fake):
a missing project is created before the push; the vulnerability scan is requested after the
push and collected in the background (docs/harbor.md); a scan that cannot be had is recorded,
never fails the build; an app's scan policy fails the job or skips its deploy.

The image itself is pushed to the real registry (the fake cannot store images); the fake
answers for Harbor's API through DEPLOYQ_HARBOR_URL.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from deployq.models import DeploySettings, Job, JobStatus, ScanAction, ScanPolicy
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from deployq.worker.scans import ScanCollector
from worker_support import add_app, deploy, log_text, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _scanning(registry: Any, docker_host: str, harbor_url: str) -> dict[str, Any]:
    return registry_settings(
        registry,
        docker_host,
        harbor_api=True,
        harbor_scan=True,
        harbor_url=harbor_url,
        harbor_scan_poll=0.1,
    )


@asynccontextmanager
async def collecting(store: Store) -> AsyncIterator[None]:
    """The background scan collector, running as the worker process runs it."""
    stop = asyncio.Event()
    task = asyncio.create_task(ScanCollector(store).run(stop))
    try:
        yield
    finally:
        stop.set()
        await task


def _scan_state(job: Job) -> str | None:
    return (job.scan_summary or {}).get("state")


@pytest.fixture
def harbor(harbor_fake: Any, registry: Any) -> Any:
    """The fake Harbor, logging in with the test registry's account (as deployq does)."""
    fake, url = harbor_fake
    fake.username, fake.password = registry.username, registry.password
    return fake, url


async def test_without_a_scanner_the_job_succeeds_with_scan_unavailable_recorded(
    settings_factory: Any,
    database_url: str,
    registry: Any,
    docker_host: str,
    git_repo_factory: Any,
    base_image: str,
    harbor: Any,
) -> None:
    fake, harbor_url = harbor
    fake.scanner = False
    fake.default_counts = {}
    repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\n"})
    settings = settings_factory(**_scanning(registry, docker_host, harbor_url))
    store = await Store.open(settings, database_url, min_size=1)
    try:
        app = await add_app(store, repo.url)
        job_id = await deploy(store, app)
        async with running_pool(store), collecting(store):
            job = await wait_job(store, job_id, lambda j: j.status.is_final)
        events = await store.jobs.events(job_id)
        log = await log_text(store, job_id)
    finally:
        await store.close()

    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.attempt == 1  # not retried, not rebuilt
    assert job.image_digest is not None
    assert "deployq" in fake.projects  # created before the push
    assert job.scan_summary is not None
    assert job.scan_summary["state"] == "unavailable"
    assert "no available scanner for project" in job.scan_summary["reason"]
    scans = [e.message or "" for e in events if e.kind == "scan"]
    assert len(scans) == 1 and scans[0].startswith("scan unavailable: Harbor cannot scan")
    assert "scan unavailable" in log
    requests = [p for m, p in fake.requests if m == "POST" and p.endswith("/scan")]
    assert len(requests) == 1


async def test_the_scan_result_is_attached_after_the_job_finished(
    settings_factory: Any,
    database_url: str,
    registry: Any,
    docker_host: str,
    git_repo_factory: Any,
    base_image: str,
    harbor: Any,
) -> None:
    fake, harbor_url = harbor
    fake.default_counts = {"Critical": 1, "High": 2}
    fake.hold_scans = True  # Harbor keeps scanning until the job has finished
    repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\n"})
    settings = settings_factory(**_scanning(registry, docker_host, harbor_url))
    store = await Store.open(settings, database_url, min_size=1)
    try:
        app = await add_app(store, repo.url)
        job_id = await deploy(store, app)
        async with collecting(store):
            async with running_pool(store):
                finished = await wait_job(store, job_id, lambda j: j.status.is_final)
            # the job finished (its slot is free) while Harbor was still scanning
            assert finished.status is JobStatus.SUCCEEDED, finished.error
            assert _scan_state(finished) in ("requested", "running")
            fake.hold_scans = False
            job = await wait_job(store, job_id, lambda j: _scan_state(j) == "done")
        events = await store.jobs.events(job_id)
    finally:
        await store.close()

    assert job.status is JobStatus.SUCCEEDED
    assert job.scan_summary is not None
    assert (job.scan_summary["critical"], job.scan_summary["high"]) == (1, 2)
    assert job.scan_summary["status"] == "Success"
    collected = [e for e in events if e.kind == "scan" and e.actor == "scan collector"]
    assert [e.message for e in collected] == ["critical 1, high 2"]
    assert events.index(collected[0]) > [e.kind for e in events].index("succeeded")


@pytest.mark.parametrize(("max_critical", "status"), [(1, JobStatus.FAILED), (2, None)])
async def test_the_fail_policy_fails_a_job_with_too_many_criticals(
    settings_factory: Any,
    database_url: str,
    registry: Any,
    docker_host: str,
    git_repo_factory: Any,
    base_image: str,
    harbor: Any,
    max_critical: int,
    status: JobStatus | None,
) -> None:
    fake, harbor_url = harbor
    fake.default_counts = {"Critical": 2, "High": 5}
    repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\n"})
    settings = settings_factory(**_scanning(registry, docker_host, harbor_url))
    store = await Store.open(settings, database_url, min_size=1)
    policy = ScanPolicy(action=ScanAction.FAIL, max_critical=max_critical)
    try:
        app = await add_app(store, repo.url, scan_policy=policy)
        job_id = await deploy(store, app)
        async with running_pool(store):  # no collector: the job itself waits for the scan
            job = await wait_job(store, job_id, lambda j: j.status.is_final)
    finally:
        await store.close()

    assert job.scan_summary is not None and job.scan_summary["state"] == "done"
    assert job.image_digest is not None  # pushed all the same
    if status is None:
        assert job.status is JobStatus.SUCCEEDED, job.error
        assert job.scan_summary["policy"] == "scan policy passed: 2 critical (at most 2)"
        return
    assert job.status is status
    assert job.attempt == 1  # failed at once: another attempt finds the same image
    assert job.error is not None
    assert "the scan policy failed the job: 2 critical vulnerabilities, at most 1" in job.error
    assert "critical 2, high 5" in job.error


@pytest.mark.parametrize(("max_critical", "deployed"), [(0, False), (1, True)])
async def test_the_block_deploy_policy_pushes_but_does_not_deploy(
    settings_factory: Any,
    database_url: str,
    registry: Any,
    docker_host: str,
    git_repo_factory: Any,
    base_image: str,
    harbor: Any,
    aiohttp_server: Any,
    max_critical: int,
    deployed: bool,
) -> None:
    fake, harbor_url = harbor
    fake.default_counts = {"Critical": 1}
    calls: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        calls.append(await request.json())
        return web.json_response({"ok": True})

    app_ = web.Application()
    app_.router.add_post("/deploy", hook)
    server = await aiohttp_server(app_, host="127.0.0.1")
    repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\n"})
    settings = settings_factory(**_scanning(registry, docker_host, harbor_url))
    store = await Store.open(settings, database_url, min_size=1)
    policy = ScanPolicy(action=ScanAction.BLOCK_DEPLOY, max_critical=max_critical)
    try:
        app = await add_app(
            store,
            repo.url,
            scan_policy=policy,
            deploy=DeploySettings(webhook_url=f"http://127.0.0.1:{server.port}/deploy"),
        )
        job_id = await deploy(store, app)
        async with running_pool(store):
            job = await wait_job(store, job_id, lambda j: j.status.is_final)
        log = await log_text(store, job_id)
    finally:
        await store.close()

    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.image_digest is not None
    assert len(calls) == (1 if deployed else 0)
    if not deployed:
        message = "deploy skipped by the scan policy: 1 critical vulnerability, at most 0"
        assert message in log
        assert job.scan_summary is not None and message in job.scan_summary["policy"]
        assert "deploy" not in job.step_durations


async def test_an_app_with_its_own_registry_login_builds_pushes_and_scans_with_it(
    settings_factory: Any,
    database_url: str,
    registry: Any,
    docker_host: str,
    git_repo_factory: Any,
    base_image: str,
    harbor: Any,
) -> None:
    # deployq's own login is refused everywhere: only the app's robot (the registry's
    # account here) can push, tag, verify and ask Harbor for the scan
    fake, harbor_url = harbor
    fake.default_counts = {"Low": 1}
    repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\n"})
    settings = settings_factory(
        **_scanning(registry, docker_host, harbor_url),
    ).model_copy(update={"registry_username": "nobody", "registry_password": None})
    store = await Store.open(settings, database_url, min_size=1)
    try:
        app = await add_app(
            store,
            repo.url,
            registry_username=registry.username,
            registry_password=registry.password,
        )
        job_id = await deploy(store, app)
        async with running_pool(store):
            job = await wait_job(store, job_id, lambda j: j.status.is_final)
    finally:
        await store.close()

    assert job.status is JobStatus.SUCCEEDED, job.error
    assert _scan_state(job) == "requested"
    assert fake.users and set(fake.users) == {registry.username}
