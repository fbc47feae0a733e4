"""The worker pool against real PostgreSQL, dockerd, registry and git: cancel, timeout,
registry refusal, a dead engine, shared capacity, graceful shutdown, low disk."""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import pytest

from deployq.models import Job, JobStatus
from deployq.testing.jobs import running_pool, wait_job
from worker_support import add_app, deploy, log_text, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def make_store(store_factory: Any) -> Any:
    """``await make_store(**settings)``: a Store on this test's database."""
    return store_factory


@pytest.fixture
def slow_repo(git_repo_factory: Any, base_image: str) -> Any:
    """A repository whose build sleeps for a minute (unique, so never cached)."""
    return git_repo_factory(
        {"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex} && sleep 60\n"}
    )


@pytest.fixture
def quick_repo(git_repo_factory: Any, base_image: str) -> Any:
    return git_repo_factory(
        {"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex} > /built\n"}
    )


def building(job: Job) -> bool:
    return job.step == "build" or job.status.is_final


async def test_cancel_during_the_build_stops_it_within_five_seconds(
    make_store: Any, registry: Any, docker_host: str, slow_repo: Any
) -> None:
    store = await make_store(**registry_settings(registry, docker_host))
    job_id = await deploy(store, await add_app(store, slow_repo.url))
    async with running_pool(store):
        job = await wait_job(store, job_id, building)
        assert job.status is JobStatus.RUNNING
        asked = time.monotonic()
        await store.jobs.cancel(job_id, actor="alice")
        job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=10)
        took = time.monotonic() - asked
    assert job.status is JobStatus.CANCELLED
    assert took < 5, f"cancel took {took:.1f}s"
    assert job.error == "cancelled during build"
    assert "==> cancelled during build" in await log_text(store, job_id)


async def test_a_build_longer_than_its_timeout_ends_timed_out(
    make_store: Any, registry: Any, docker_host: str, slow_repo: Any
) -> None:
    store = await make_store(**registry_settings(registry, docker_host))
    job_id = await deploy(store, await add_app(store, slow_repo.url, timeout_s=4))
    async with running_pool(store):
        job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=60)
    assert job.status is JobStatus.TIMED_OUT
    assert job.error is not None and job.error.startswith("timed out after 4s during build")
    assert f"ERROR: {job.error}" in await log_text(store, job_id)


async def test_a_refused_registry_login_fails_clearly_and_is_retried(
    make_store: Any, registry: Any, docker_host: str, quick_repo: Any
) -> None:
    store = await make_store(
        **registry_settings(registry, docker_host, registry_password="wrong-password-123")
    )
    job_id = await deploy(store, await add_app(store, quick_repo.url, max_attempts=2))
    async with running_pool(store):
        job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=90)
    events = [e.kind for e in await store.jobs.events(job_id)]
    logs = await log_text(store, job_id)
    assert job.status is JobStatus.FAILED
    assert job.attempt == 2
    assert "retry_scheduled" in events  # the first failure was retried
    assert job.error is not None
    assert f"login to registry {registry.url} as 'deployq' failed" in job.error
    assert "wrong-password-123" not in job.error + logs
    assert f"ERROR: {job.error}" in logs


async def test_a_server_whose_engine_does_not_answer_is_unhealthy_and_gets_no_job(
    make_store: Any, registry: Any, docker_host: str, quick_repo: Any
) -> None:
    store = await make_store(**registry_settings(registry, docker_host))
    await store.servers.add("dead", "unix:///nonexistent.sock", capacity=4)
    await store.servers.add("alive", docker_host, capacity=1)
    job_id = await deploy(store, await add_app(store, quick_repo.url))
    async with running_pool(store):
        job = await wait_job(store, job_id, lambda j: j.status.is_final)
    dead = await store.servers.get("dead")
    assert not dead.healthy
    assert dead.last_error is not None and "nonexistent.sock" in dead.last_error
    assert (await store.servers.get("alive")).healthy
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.server_name == "alive"


async def test_two_pools_sharing_a_server_of_capacity_one_never_build_at_once(
    make_store: Any, registry: Any, docker_host: str, git_repo_factory: Any, base_image: str
) -> None:
    store_a = await make_store(**registry_settings(registry, docker_host))
    store_b = await make_store(**registry_settings(registry, docker_host))
    await store_a.servers.add("only", docker_host, capacity=1)
    job_ids = []
    for _ in range(3):
        repo = git_repo_factory(
            {"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex} && sleep 1\n"}
        )
        job_ids.append(await deploy(store_a, await add_app(store_a, repo.url)))
    async with running_pool(store_a, concurrency=3), running_pool(store_b, concurrency=3):
        jobs = [await wait_job(store_a, job_id, lambda j: j.status.is_final) for job_id in job_ids]
    assert all(j.status is JobStatus.SUCCEEDED for j in jobs), [j.error for j in jobs]
    spans = sorted((j.started_at, j.finished_at) for j in jobs)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end is not None and start is not None and end <= start, spans


async def test_stop_during_a_build_puts_the_job_back_in_the_queue(
    make_store: Any, registry: Any, docker_host: str, slow_repo: Any
) -> None:
    store = await make_store(**registry_settings(registry, docker_host, shutdown_grace=0.5))
    job_id = await deploy(store, await add_app(store, slow_repo.url))
    async with running_pool(store) as pool:
        await wait_job(store, job_id, building)
        assert pool.jobs
    job = await store.jobs.get(job_id)
    events = await store.jobs.events(job_id)
    assert job.status is JobStatus.QUEUED
    assert job.worker_id is None
    assert events[-1].kind == "released"
    assert "worker stopping" in await log_text(store, job_id)


async def test_low_disk_keeps_jobs_waiting_with_the_reason_instead_of_failing(
    make_store: Any, registry: Any, docker_host: str, quick_repo: Any
) -> None:
    store = await make_store(**registry_settings(registry, docker_host, min_free_disk_mb=1024**3))
    job_id = await deploy(store, await add_app(store, quick_repo.url))
    async with running_pool(store):
        job = await wait_job(store, job_id, lambda j: j.wait_reason is not None, timeout_s=30)
    assert job.status is JobStatus.QUEUED
    assert job.wait_reason is not None and job.wait_reason.startswith("low disk:")
    (server,) = await store.servers.all()
    assert server.name == "local" and server.healthy
    assert server.last_error == job.wait_reason


async def test_the_local_engine_is_registered_when_no_server_exists(
    make_store: Any, registry: Any, docker_host: str
) -> None:
    store = await make_store(**registry_settings(registry, docker_host))
    async with running_pool(store, concurrency=3):
        pass
    (server,) = await store.servers.all()
    assert (server.name, server.docker_host, server.capacity) == ("local", docker_host, 3)
    assert server.arch == "amd64"
    assert server.engine_version


@pytest.mark.parametrize("force", [False, True], ids=["finishes-the-push", "forced"])
async def test_cancel_during_the_push_finishes_it_unless_forced(
    make_store: Any,
    registry: Any,
    docker_host: str,
    git_repo_factory: Any,
    base_image: str,
    force: bool,
) -> None:
    # a fresh 150 MB layer: its push takes long enough to cancel in the middle of it
    repo = git_repo_factory(
        {
            "Dockerfile": f"FROM {base_image}\n"
            f"RUN echo {uuid.uuid4().hex} && head -c 150m /dev/urandom > /blob\n"
        }
    )
    store = await make_store(**registry_settings(registry, docker_host))
    job_id = await deploy(store, await add_app(store, repo.url))
    async with running_pool(store):
        job = await wait_job(store, job_id, lambda j: j.step == "push" or j.status.is_final)
        assert job.status is JobStatus.RUNNING
        await store.jobs.cancel(job_id, actor="alice", force=force)
        job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=60)
    logs = await log_text(store, job_id)
    assert job.status is JobStatus.CANCELLED
    if force:
        assert job.error == "cancelled during push"
        assert "==> pushed" not in logs
    else:
        assert "the push has begun and finishes first" in logs
        assert job.image_digest is not None and job.image_digest.startswith("sha256:")
        assert "==> cancelled after the push finished, as requested" in logs
