"""A job whose end comes while PostgreSQL is away: the outcome waits for the database and
carries the log's last lines with it (the finish stores them: worker.runner), so nothing of
the end of the log is lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pg_proxy import PgProxy

from deployq.models import JobStatus
from deployq.store import Lease, Outcome, Store
from deployq.testing.jobs import running_pool, wait_job
from worker_support import add_app, deploy, log_text, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[PgProxy]:
    running = PgProxy(database_url)
    await running.start()
    yield running
    if running._server is not None:
        await running.stop()


async def test_the_last_lines_and_the_outcome_wait_for_the_database(
    settings_factory: Any,
    proxy: PgProxy,
    registry: Any,
    docker_host: str,
    base_image: str,
    git_repo_factory: Any,
) -> None:
    settings = settings_factory(
        **registry_settings(registry, docker_host), database_url=proxy.dsn, db_connect_timeout=5
    )
    store = await Store.open(settings, proxy.dsn, min_size=2)
    try:
        repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nCOPY . /ctx/\n"})
        app = await add_app(store, repo.url)
        cut: list[Lease] = []
        async with running_pool(store) as pool:
            record = pool.runner._record

            async def record_after_an_outage(lease: Lease, outcome: Outcome) -> None:
                # the build is over, its outcome and last lines not written: cut the database
                cut.append(lease)
                await proxy.stop()
                back = asyncio.create_task(_back_once_down(store, proxy))
                try:
                    await record(lease, outcome)
                finally:
                    await back

            pool.runner._record = record_after_an_outage  # type: ignore[method-assign]
            job_id = await deploy(store, app)
            job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=120)
        logs = await log_text(store, job_id)
        assert [lease.id for lease in cut] == [job_id]
        assert store.health.outages >= 1
        assert job.status is JobStatus.SUCCEEDED, f"{job.error}\n{logs}"
        assert (job.step, job.progress) == ("verify", 100)
        last = logs.splitlines()[-2:]  # written after the outage began
        assert last[0].startswith("==> verified: the registry serves sha256:"), logs
        assert last[1].startswith("==> succeeded ("), logs
    finally:
        await store.close()


async def _back_once_down(store: Store, proxy: PgProxy) -> None:
    """Bring the database back once the store has noticed it is gone."""
    async with asyncio.timeout(30):
        await store.health.wait_down()
    await proxy.start()
