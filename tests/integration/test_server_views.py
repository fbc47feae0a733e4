"""Health as seen by each worker host (issue #15, point 2), with real engines.

A second dockerd (mutual TLS on loopback) is the build server. Each "host" (its own
DEPLOYQ_HOST_ID and data directory) reaches it through a loopback TCP proxy of its own, its
network path; the test cuts one host's path by stopping that proxy, so the probes and builds
of that host fail for real while the other host's still work.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from tcp_proxy import TcpProxy

from deployq.builders import Builder, EngineTLS, make_builder
from deployq.config import BuildBackend
from deployq.models import BuildServer, JobStatus, ServerView
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from deployq.testing.services import SecondEngine
from deployq.worker.servers import BuilderFactory, ServerMonitor
from worker_support import add_app, deploy, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROUNDS = 20


@dataclass
class Host:
    """One worker host: its id, its store, its own network path to the engine."""

    host_id: str
    store: Store
    proxy: TcpProxy
    factory: BuilderFactory


@pytest.fixture
async def hosts(
    settings_factory: Any,
    database_url: str,
    registry: Any,
    docker_host: str,
    engine: SecondEngine,
    tmp_path: Path,
) -> AsyncIterator[tuple[Host, Host]]:
    target = urlsplit(engine.tcp)
    made: list[Host] = []
    for name in ("host-a", "host-b"):
        values = registry_settings(registry, docker_host, build_backend=BuildBackend.BUILDKIT)
        settings = settings_factory(**values, host_id=name, data_dir=tmp_path / name)
        proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 2376)
        await proxy.start()
        store = await Store.open(settings, database_url, min_size=1)
        made.append(Host(name, store, proxy, _through(proxy, engine)))
    try:
        yield made[0], made[1]
    finally:
        for host in made:
            await host.store.close()
            if host.proxy.running:
                await host.proxy.stop()


def _through(proxy: TcpProxy, engine: SecondEngine) -> BuilderFactory:
    """This host's builders: the engine's address replaced by this host's path to it."""
    engine_address = urlsplit(engine.tcp).netloc

    def factory(docker_host: str, tls: EngineTLS | None) -> Builder:
        routed = docker_host.replace(engine_address, proxy.address)
        return make_builder(routed, BuildBackend.BUILDKIT, tls=tls)

    return factory


async def _add_server(store: Store, engine: SecondEngine, name: str) -> BuildServer:
    tls = engine.tls
    return await store.servers.add(
        name,
        engine.tcp,
        capacity=2,
        labels=[name],
        tls=(str(tls.ca), str(tls.client_cert), str(tls.client_key)),
    )


async def _round(monitors: list[ServerMonitor], name: str) -> dict[str, ServerView]:
    """One probe round of every host; each host's view of the server after it."""
    for monitor in monitors:
        await monitor.refresh(force=True)
    server = await monitors[0].store.servers.get(name)
    return {view.host_id: view for view in server.views}


async def test_a_host_that_cannot_reach_a_server_does_not_make_it_unhealthy_for_others(
    hosts: tuple[Host, Host], engine: SecondEngine
) -> None:
    a, b = hosts
    server = await _add_server(a.store, engine, "views")
    monitor_a = ServerMonitor(a.store, host_id=a.host_id, builder_factory=a.factory)
    monitor_b = ServerMonitor(b.store, host_id=b.host_id, builder_factory=b.factory)
    monitors = [monitor_a, monitor_b]

    # host-b's path is cut: it sees the server failed, host-a sees it ok, and the server
    # stays healthy for everyone, round after round
    await b.proxy.stop()
    for _ in range(ROUNDS):
        views = await _round(monitors, "views")
        assert views["host-a"].healthy and views["host-a"].last_ok
        assert not views["host-b"].healthy and not views["host-b"].last_ok
        assert (await a.store.servers.get("views")).healthy
        assert server.id in monitor_b.excluded_ids()
        assert server.id not in monitor_a.excluded_ids()
    assert views["host-b"].streak == ROUNDS
    assert "TLS" not in (views["host-b"].error or "")  # refused on the way, not by the engine
    assert views["host-a"].latency_ms is not None

    # back: one answer is not enough, two in a row are
    await b.proxy.start()
    views = await _round(monitors, "views")
    assert not views["host-b"].healthy and views["host-b"].last_ok
    assert server.id in monitor_b.excluded_ids()
    views = await _round(monitors, "views")
    assert views["host-b"].healthy
    assert server.id not in monitor_b.excluded_ids()

    # a path that fails every other probe never changes the view: no flapping
    settled = views["host-b"].changed_at
    for round_ in range(ROUNDS):
        if round_ % 2 == 0:
            await b.proxy.stop()
        else:
            await b.proxy.start()
        views = await _round(monitors, "views")
        assert views["host-b"].healthy, f"round {round_}"
        assert views["host-b"].last_ok is (round_ % 2 == 1)
        assert views["host-b"].changed_at == settled
    assert b.proxy.running

    # unhealthy for everyone only when every host that probed it fails (twice in a row)
    await a.proxy.stop()
    await b.proxy.stop()
    await _round(monitors, "views")
    assert (await a.store.servers.get("views")).healthy
    views = await _round(monitors, "views")
    assert not views["host-a"].healthy and not views["host-b"].healthy
    down = await a.store.servers.get("views")
    assert not down.healthy and down.last_error
    await a.proxy.start()
    await b.proxy.start()
    await _round(monitors, "views")
    await _round(monitors, "views")
    assert (await a.store.servers.get("views")).healthy

    # the server's timeline: one change each way, in all those rounds
    async with a.store.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT data->>'change' AS change FROM job_events "
                "WHERE kind = 'server' AND data->>'server' = 'views' ORDER BY id"
            )
        ).fetchall()
    assert [r["change"] for r in rows] == ["added", "unhealthy", "healthy"]


async def test_the_other_host_keeps_building_on_it_and_server_list_shows_both_views(
    hosts: tuple[Host, Host],
    engine: SecondEngine,
    git_repo_factory: Any,
    database_url: str,
    tmp_path: Path,
) -> None:
    a, b = hosts
    await _add_server(a.store, engine, "shared")
    await b.proxy.stop()
    repo = git_repo_factory(
        {"Dockerfile": "FROM deployq-test/base:latest\nRUN echo seen-from-a > /built\n"}
    )
    apps = [await add_app(a.store, repo.url, required_labels=["shared"]) for _ in range(3)]
    async with (
        running_pool(b.store, builder_factory=b.factory) as pool_b,
        running_pool(a.store, builder_factory=a.factory) as pool_a,
    ):
        job_ids = [await deploy(b.store, app) for app in apps]
        jobs = [await wait_job(a.store, job_id, lambda j: j.status.is_final) for job_id in job_ids]
        listed = await asyncio.to_thread(_cli, database_url, tmp_path, "server", "list", "--json")
        table = await asyncio.to_thread(_cli, database_url, tmp_path, "server", "list")

    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 3, [j.error for j in jobs]
    assert {j.worker_id for j in jobs} == {pool_a.worker_id}
    assert pool_b.worker_id not in {j.worker_id for j in jobs}
    [server] = json.loads(listed)
    assert server["healthy"] is True
    views = {v["host_id"]: v for v in server["views"]}
    assert views["host-a"]["healthy"] is True and views["host-a"]["recent"] is True
    assert views["host-b"]["healthy"] is False
    assert "127.0.0.1" in views["host-b"]["error"]
    [row] = [line for line in table.splitlines() if line.startswith("shared")]
    assert "healthy" in row and "host-a ok" in row and "host-b failed" in row


def _cli(database_url: str, tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update({"DEPLOYQ_DATABASE_URL": database_url, "DEPLOYQ_DATA_DIR": str(tmp_path / "cli")})
    env["COLUMNS"] = "400"
    done = subprocess.run(
        [sys.executable, "-m", "deployq", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout
