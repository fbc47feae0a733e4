"""Pipeline outcomes a user sees: zero-config builds, and failures that say what and where."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from deployq.models import JobStatus, Trigger, TriggerKind
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from worker_support import add_app, log_text, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
async def open_store(
    settings_factory: Any, database_url: str, registry: Any, docker_host: str, base_image: str
) -> AsyncIterator[Any]:
    stores: list[Store] = []

    async def make(**overrides: Any) -> Store:
        values = registry_settings(registry, docker_host, base_image_static=base_image)
        values.update(overrides)
        store = await Store.open(settings_factory(**values), database_url, min_size=1)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


async def run_one(store: Store, app: str, **trigger: Any) -> Any:
    result = await store.queue.enqueue(
        Trigger(kind=TriggerKind.MANUAL, app=app, ref=trigger.pop("ref", "refs/heads/main"),
                **trigger)
    )  # fmt: skip
    job_id = result.jobs[0].id
    async with running_pool(store):
        return await wait_job(store, job_id, lambda j: j.status.is_final)


async def test_a_static_site_without_dockerfile_is_detected_and_built(
    open_store: Any, git_repo_factory: Any
) -> None:
    store = await open_store()
    repo = git_repo_factory({"index.html": "<h1>hello</h1>\n"})
    job = await run_one(store, await add_app(store, repo.url))
    logs = await log_text(store, job.id)
    assert job.status is JobStatus.SUCCEEDED, f"{job.error}\n{logs}"
    assert "==> no Dockerfile: zero-config build plan" in logs
    assert "    provider  static" in logs
    assert "    because   provider static (index.html found)" in logs
    assert '    CMD ["/bin/sh", "-c", "exec busybox httpd -f -v -p $PORT -h /www"]' in logs
    assert job.image_digest is not None


async def test_no_dockerfile_and_no_runtime_fails_at_once_and_keeps_the_workspace(
    open_store: Any, git_repo_factory: Any
) -> None:
    store = await open_store(keep_failed_workspaces=True)
    repo = git_repo_factory({"README.md": "nothing to build\n"})
    job = await run_one(store, await add_app(store, repo.url, max_attempts=3))
    assert job.status is JobStatus.FAILED
    assert job.attempt == 1  # not retried: another attempt cannot help
    assert job.error is not None
    assert job.error.startswith(
        "detect failed on local: no Dockerfile and no known runtime detected"
    )
    assert job.error.endswith("(not retried: another attempt would fail the same way)")
    assert f"ERROR: {job.error}" in await log_text(store, job.id)
    workspace = Path(store.settings.workspaces_dir, f"job-{job.id}-1")
    assert await asyncio.to_thread((workspace / "README.md").is_file)


async def test_a_commit_that_does_not_exist_fails_without_retry(
    open_store: Any, git_repo_factory: Any
) -> None:
    store = await open_store()
    repo = git_repo_factory({"Dockerfile": "FROM scratch\n"})
    missing = "0" * 40
    job = await run_one(store, await add_app(store, repo.url), commit_sha=missing)
    assert job.status is JobStatus.FAILED
    assert job.attempt == 1
    assert job.error is not None and "commit 0000000 does not exist in" in job.error
    assert not await asyncio.to_thread(
        Path(store.settings.workspaces_dir, f"job-{job.id}-1").exists
    )


async def test_a_repository_that_cannot_be_cloned_says_where(
    open_store: Any, tmp_path: Path
) -> None:
    store = await open_store()
    url = (tmp_path / "no-such-repo").as_uri()
    job = await run_one(store, await add_app(store, url, max_attempts=1))
    assert job.status is JobStatus.FAILED
    assert job.error is not None
    assert job.error.startswith("checkout failed on local: ")
    assert "no-such-repo" in job.error


async def test_an_image_on_another_registry_fails_before_checkout_and_is_not_retried(
    open_store: Any, git_repo_factory: Any
) -> None:
    store = await open_store()
    repo = git_repo_factory({"Dockerfile": "FROM scratch\n"})
    app = await add_app(store, repo.url, image="ghcr.io/team/web", max_attempts=3)
    job = await run_one(store, app)
    assert job.status is JobStatus.FAILED and job.attempt == 1
    assert job.error is not None
    assert job.error.startswith("configuration check failed on local: image 'ghcr.io/team/web'")
    assert job.error.endswith("(not retried: a configuration problem; fix it, then deploy again)")
    assert "==> checkout" not in await log_text(store, job.id)


async def test_an_image_named_with_the_registry_host_is_pushed_there_once(
    open_store: Any, git_repo_factory: Any, registry: Any
) -> None:
    store = await open_store()
    repo = git_repo_factory({"Dockerfile": "FROM scratch\nCOPY Dockerfile /\n"})
    app = await add_app(store, repo.url, image=f"{registry.url}/team/demo")
    job = await run_one(store, app)
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.image_ref == f"{registry.url}/team/demo:{job.commit_sha[:7]}"
    assert job.image_digest is not None and job.image_digest.startswith("sha256:")
