"""A pull that hangs in the engine gives up (deployq.worker.prefetch.PULL_STALL_S).

dockerd 20.10 once held a prefetch's pull silent until the 600 s timeout (bench/pipeline.py,
stop 25). A stuck engine cannot be made on demand, so this is a fake of the Engine API's
``POST /images/create`` on a unix socket, named as one: it answers 200, reports one line of
progress, then says nothing, as that pull did."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from deployq.config import Settings
from deployq.models import BuildServer
from deployq.worker.prefetch import Prefetcher, pull
from deployq.worker.servers import ServerState

REF = "registry.invalid/team/app@sha256:" + "a" * 64


class SilentEngine:
    """Fake engine: /images/create starts a pull, then goes quiet until released."""

    def __init__(self) -> None:
        self.pulls: list[str] = []
        self.release = asyncio.Event()

    async def create(self, request: web.Request) -> web.StreamResponse:
        self.pulls.append(request.query["fromImage"])
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        line = {"status": "Pulling from team/app", "id": "sha256"}
        await response.write(json.dumps(line).encode() + b"\r\n")
        await self.release.wait()
        return response


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[tuple[SilentEngine, str]]:
    fake = SilentEngine()
    app = web.Application()
    app.router.add_post("/{version:v[0-9.]+}/images/create", fake.create)
    app.router.add_post("/images/create", fake.create)
    runner = web.AppRunner(app)
    await runner.setup()
    socket = tmp_path / "engine.sock"
    await web.UnixSite(runner, str(socket)).start()
    try:
        yield fake, f"unix://{socket}"
    finally:
        fake.release.set()
        await runner.cleanup()


def server(sid: int, docker_host: str) -> BuildServer:
    return BuildServer(
        id=sid, name=f"s{sid}", docker_host=docker_host, capacity=2, arch="amd64", labels=[],
        draining=False, healthy=True, last_heartbeat_at=None, last_error=None,
        engine_version=None, created_at=datetime.now(UTC),
    )  # fmt: skip


async def test_a_pull_the_engine_stops_answering_gives_up(
    engine: tuple[SilentEngine, str],
) -> None:
    fake, host = engine
    async with asyncio.timeout(30):
        with pytest.raises(TimeoutError):
            await pull(host, server(2, host), REF, None, stall_s=0.5)
    assert fake.pulls == [REF]


async def test_the_prefetch_of_a_stuck_pull_ends_and_frees_its_slot(
    engine: tuple[SilentEngine, str], caplog: pytest.LogCaptureFixture
) -> None:
    fake, host = engine
    source, stuck = server(1, "tcp://a.invalid:2376"), server(2, host)
    states = {s.id: ServerState(s, True, None, None, 0.0) for s in (source, stuck)}
    monitor = SimpleNamespace(settings=Settings(), states=states, host_id="here")
    prefetcher = Prefetcher(monitor, stall_s=0.5)  # type: ignore[arg-type]

    with caplog.at_level(logging.INFO, logger="deployq.worker.prefetch"):
        prefetcher.pushed("app", "main", source, [REF], None)
        async with asyncio.timeout(30):
            await prefetcher.idle()

    assert fake.pulls == [REF]
    assert f"prefetch of {REF} onto s2 failed" in caplog.text
