"""unix:// build servers belong to the host that registered them (issue #15, point 1).

Several "hosts" run on this machine by giving each its own DEPLOYQ_HOST_ID (or data
directory, where the id is kept).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deployq.doctor import run_checks
from deployq.models import JobStatus
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from fixtures.cli import run_deployq
from worker_support import add_app, deploy, registry_settings

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(database_url: str, tmp_path: Path) -> Cli:
    def run(*args: str, host_id: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {"DEPLOYQ_HOST_ID": host_id} if host_id else {}
        return run_deployq(*args, data_dir=tmp_path / "cli", database_url=database_url, env=env)

    return run


def test_server_add_records_the_host_of_a_unix_engine(cli: Cli, tmp_path: Path) -> None:
    added = cli("server", "add", "mine", "--docker-host", "unix:///run/x.sock", host_id="host-a")
    assert added.returncode == 0, added.stderr
    assert "only workers on host host-a build there" in added.stdout
    shared = cli(
        "server", "add", "shared", "--docker-host", "ssh://builder@b2", "--no-check",
        host_id="host-a",
    )  # fmt: skip
    assert shared.returncode == 0, shared.stderr
    # no setting: the id made once and kept in the data directory
    kept = cli("server", "add", "kept", "--docker-host", "unix:///run/y.sock")
    assert kept.returncode == 0, kept.stderr
    kept_id = (tmp_path / "cli" / "host-id").read_text().strip()

    listed = {s["name"]: s["host_id"] for s in json.loads(cli("server", "list", "--json").stdout)}
    assert listed == {"mine": "host-a", "shared": None, "kept": kept_id}
    lines = {line.split()[0]: line.split()[2] for line in cli("server", "list").stdout.splitlines()}
    assert lines["NAME"] == "HOST"
    assert (lines["mine"], lines["shared"], lines["kept"]) == ("host-a", "any", kept_id)
    assert cli("server", "list", host_id="host-b").stdout == cli("server", "list").stdout


async def test_only_workers_of_the_owner_host_claim_a_unix_server(store: Store) -> None:
    owned = await store.servers.add(
        "engine-a", "unix:///run/a.sock", capacity=1, labels=["a"], host_id="host-a"
    )
    await store.servers.add("shared", "tcp://10.0.0.9:2376", capacity=1, labels=["shared"])
    on_a = await add_app(store, "https://example.com/a.git", required_labels=["a"])
    on_shared = await add_app(store, "https://example.com/s.git", required_labels=["shared"])
    job_a = await deploy(store, on_a)

    assert await store.leases.claim("w-b", limit=4, host_id="host-b") == []
    assert await store.leases.claim("w-none", limit=4) == []  # no host owns nothing
    [lease] = await store.leases.claim("w-a", limit=4, host_id="host-a")
    assert (lease.id, lease.job.server_id) == (job_a, owned.id)

    # the shared server is anyone's; the owned one's capacity counts only on its host
    job_s = await deploy(store, on_shared)
    [shared] = await store.leases.claim("w-b", limit=4, host_id="host-b")
    assert shared.id == job_s


async def test_a_job_for_a_host_without_workers_says_so(store: Store) -> None:
    await store.servers.add("engine-a", "unix:///run/a.sock", labels=["a"], host_id="host-a")
    job = await deploy(
        store, await add_app(store, "https://example.com/a.git", required_labels=["a"])
    )
    await store.workers.register("w-b", host="b", host_id="host-b", pid=1, concurrency=1)

    assert await store.waits.reason(job) == (
        "no worker runs on the host of engine-a (host host-a): only that host's workers build "
        "on its unix:// engine; start `deployq worker` there"
    )
    await store.workers.register("w-a", host="a", host_id="host-a", pid=2, concurrency=1)
    assert await store.waits.reason(job) == "next in line: waiting for a worker to claim it"
    await store.workers.set_stopping("w-a")
    assert "no worker runs on the host of engine-a" in (await store.waits.reason(job) or "")


@pytest.mark.docker
@pytest.mark.slow
async def test_two_hosts_only_the_owner_builds_on_its_local_engine(
    settings_factory: Any,
    database_url: str,
    registry: Any,
    docker_host: str,
    base_image: str,
    git_repo_factory: Any,
    tmp_path: Path,
) -> None:
    def host(name: str) -> Any:
        values = registry_settings(registry, docker_host, host_id=name)
        return settings_factory(**values, data_dir=tmp_path / name, worker_concurrency=2)

    store_a = await Store.open(host("host-a"), database_url, min_size=1)
    store_b = await Store.open(host("host-b"), database_url, min_size=1)
    try:
        await store_a.servers.add(
            "engine-a", docker_host, capacity=4, labels=["a"], host_id="host-a"
        )
        repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN echo on-a > /built\n"})
        apps = [await add_app(store_a, repo.url, required_labels=["a"]) for _ in range(3)]
        async with running_pool(store_b) as pool_b, running_pool(store_a) as pool_a:
            workers = {w.id: w.host_id for w in await store_a.workers.all()}
            assert workers == {pool_a.worker_id: "host-a", pool_b.worker_id: "host-b"}
            listed = await asyncio.to_thread(_workers_json, database_url, tmp_path)
            assert {w["id"]: w["host_id"] for w in listed} == workers
            job_ids = [await deploy(store_b, app) for app in apps]
            jobs = [
                await wait_job(store_a, job_id, lambda j: j.status.is_final) for job_id in job_ids
            ]
    finally:
        await store_b.close()
        await store_a.close()

    assert [j.status for j in jobs] == [JobStatus.SUCCEEDED] * 3, [j.error for j in jobs]
    assert {j.worker_id for j in jobs} == {pool_a.worker_id}
    assert {j.server_name for j in jobs} == {"engine-a"}


def _workers_json(database_url: str, tmp_path: Path) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update({"DEPLOYQ_DATABASE_URL": database_url, "DEPLOYQ_DATA_DIR": str(tmp_path / "cli")})
    done = subprocess.run(
        [sys.executable, "-m", "deployq", "workers", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


async def test_doctor_checks_only_this_hosts_unix_engines(
    settings_factory: Any, database_url: str, docker_host: str, tmp_path: Path
) -> None:
    here = settings_factory(host_id="host-a", docker_host=docker_host)
    store = await Store.open(here, database_url, min_size=1)
    try:
        await store.servers.add("mine", docker_host, host_id="host-a")
        await store.servers.add("theirs", "unix:///run/theirs.sock", host_id="host-z")
    finally:
        await store.close()

    checks = {c.name: c for c in await run_checks(settings=here)}

    assert checks["engine mine"].ok and not checks["engine mine"].skipped
    theirs = checks["engine theirs"]
    assert theirs.ok and theirs.skipped
    assert theirs.detail == (
        "unix:///run/theirs.sock is host host-z's engine: run `deployq doctor` there"
    )
