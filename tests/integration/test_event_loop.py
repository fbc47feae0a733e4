"""Nothing blocks the event loop: the web service and the worker, run under asyncio's debug
mode with a slow-callback threshold of 100 ms, take webhooks, answer the API and health
probes, and build and push an image without one callback running that long."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from webhook_helpers import add_app, post_github, token

from deployq.models import JobStatus, TokenScope
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from deployq.webhooks.app import create_app
from worker_support import deploy, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SLOW_CALLBACK_S = 0.1


class _Slow(logging.Handler):
    """Collects asyncio's debug-mode warnings ("Executing <...> took 0.250 seconds")."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "took" in message and "seconds" in message:
            self.seen.append(message)


async def test_web_and_worker_never_block_the_loop_for_100_ms(
    settings_factory: Any,
    database_url: str,
    docker_host: str,
    base_image: str,
    registry: Any,
    git_repo_factory: Any,
    aiohttp_client: Any,
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_S
    slow = _Slow()
    logging.getLogger("asyncio").addHandler(slow)
    repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN echo ok > /ok\n"})
    settings = settings_factory(**registry_settings(registry, docker_host))
    store = await Store.open(settings, database_url, min_size=2)
    try:
        await add_app(store)
        app = await add_app(store, "built", repo_url=repo.url, webhook_secret=None)
        client = await aiohttp_client(create_app(store))
        read = await token(store, TokenScope.READ)
        async with running_pool(store, concurrency=2):
            job_id = await deploy(store, app.name)
            for _ in range(5):
                status, _body = await post_github(client, "ping", {"zen": "hi", "hook_id": 1})
                assert status in (200, 202)
                for path in ("/healthz", "/readyz", "/metrics", "/api/v1/jobs"):
                    resp = await client.get(path, headers=read)
                    assert resp.status == 200, path
            job = await wait_job(store, job_id, lambda j: j.status.is_final)
        assert job.status is JobStatus.SUCCEEDED, job.error
    finally:
        logging.getLogger("asyncio").removeHandler(slow)
        loop.set_debug(False)
        await store.close()
    assert slow.seen == []
