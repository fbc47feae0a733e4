"""Pipeline outcomes a user sees: zero-config builds, and failures that say what and where."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from deployq.models import JobStatus, Trigger, TriggerKind
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from deployq.testing.services import docker_cmd
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


async def test_an_apps_next_build_checks_out_into_the_workspace_of_its_last_success(
    open_store: Any, git_repo_factory: Any, base_image: str, docker_host: str
) -> None:
    """The second build reuses the first one's workspace, where it is: the changed file is new,
    the removed one gone from the context, and BuildKit, which keeps the last context of each
    path, is sent only what changed; after a failed build the next one starts from scratch."""
    store = await open_store()
    dockerfile = f"FROM {base_image}\nCOPY . /ctx/\n"
    big = os.urandom(200_000).hex()  # 400 kB that the second build must not send again
    repo = git_repo_factory(
        {"Dockerfile": dockerfile, "kept.txt": "1\n", "gone.txt": "x\n", "big.txt": big}
    )
    app = await add_app(store, repo.url)
    reused = "==> checking out into the workspace of this app's previous build"

    async def build() -> tuple[Any, str]:
        job_id = (
            (
                await store.queue.enqueue(
                    Trigger(kind=TriggerKind.MANUAL, app=app, ref="refs/heads/main")
                )
            )
            .jobs[0]
            .id
        )
        job = await wait_job(store, job_id, lambda j: j.status.is_final)
        return job, await log_text(store, job_id)

    def files(image: str) -> list[str]:
        return docker_cmd(docker_host, "run", "--rm", image, "ls", "-a", "/ctx").stdout.split()

    async with running_pool(store) as pool:
        first, logs = await build()
        assert first.status is JobStatus.SUCCEEDED, f"{first.error}\n{logs}"
        assert reused not in logs
        assert _context_sent(logs) > 400_000, logs
        (repo.path / "gone.txt").unlink()
        repo.commit({"kept.txt": "2\n", "new.txt": "n\n"})
        second, logs = await build()
        assert second.status is JobStatus.SUCCEEDED, f"{second.error}\n{logs}"
        assert reused in logs
        assert _context_sent(logs) < 50_000, logs  # the changed files, not big.txt again
        assert await asyncio.to_thread(files, second.image_ref) == [
            ".", "..", ".git", "Dockerfile", "big.txt", "kept.txt", "new.txt"
        ]  # fmt: skip
        kept = docker_cmd(docker_host, "run", "--rm", second.image_ref, "cat", "/ctx/kept.txt")
        assert kept.stdout == "2\n"
        warm = pool.runner.workspaces / f"job-{first.id}-1"  # the first build's, not renamed
        assert await asyncio.to_thread((warm / "new.txt").is_file)

        repo.commit({"Dockerfile": dockerfile + "RUN false\n"})
        failed, logs = await build()
        assert failed.status is JobStatus.FAILED and reused in logs
        assert not await asyncio.to_thread(warm.exists)
        repo.commit({"Dockerfile": dockerfile})
        fixed, logs = await build()
        assert fixed.status is JobStatus.SUCCEEDED, f"{fixed.error}\n{logs}"
        assert reused not in logs
        assert await asyncio.to_thread(files, fixed.image_ref) == [
            ".", "..", ".git", "Dockerfile", "big.txt", "kept.txt", "new.txt"
        ]  # fmt: skip


_SENT = re.compile(r"transferring context: ([0-9.]+)([kMG]?)B")


def _context_sent(logs: str) -> float:
    """Bytes of build context the docker CLI sent BuildKit, from the build's log."""
    scale = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}
    return max(float(n) * scale[unit] for n, unit in _SENT.findall(logs))
