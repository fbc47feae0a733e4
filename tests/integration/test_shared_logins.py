"""One registry login for all the build servers of a worker (builders.logins).

Server A is the host's dockerd (unix://), server B a second dockerd started here, reached over
tcp:// with mutual TLS or over ssh:// (a loopback sshd). The docker CLI is a wrapper that
records each invocation's arguments before it runs the real one, so the tests count the
``docker login`` runs themselves, not only the job log's lines.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from registry_helpers import rotate_password

from deployq.builders import BuildKitBuilder, BuildRequest, EngineTLS, RegistryAuth, RegistryLogins
from deployq.config import BuildBackend
from deployq.models import JobStatus
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from deployq.testing.services import (
    DOCKER,
    LocalRegistry,
    SecondEngine,
    SshEngine,
    docker_cmd,
    start_registry,
)
from worker_support import add_app, deploy, log_text, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """A registry of this test alone, whose password the test may rotate."""
    with start_registry(tmp_path / "registry", password=f"first-{uuid.uuid4().hex[:8]}") as reg:
        yield reg


@dataclass(frozen=True)
class CountingCli:
    """A docker CLI that appends each invocation's arguments to ``calls`` (one per line)."""

    path: str
    calls: Path

    def logins(self) -> int:
        """How many times ``docker login`` ran."""
        if not self.calls.exists():
            return 0
        return sum(" login " in f" {line} " for line in self.calls.read_text().splitlines())


@pytest.fixture
def cli(tmp_path: Path) -> CountingCli:
    calls = tmp_path / "docker-calls"
    wrapper = tmp_path / "docker"
    wrapper.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{calls}'\nexec {DOCKER} \"$@\"\n")
    wrapper.chmod(0o755)
    return CountingCli(str(wrapper), calls)


def engine_tls(engine: SecondEngine) -> EngineTLS:
    tls = engine.tls
    return EngineTLS(str(tls.ca), str(tls.client_cert), str(tls.client_key))


def auth_for(registry: LocalRegistry, password: str | None = None) -> RegistryAuth:
    return RegistryAuth(registry.url, registry.username, password or registry.password)


def logging_in(lines: list[str]) -> int:
    """The job log's "logging in to" lines."""
    return sum(line.startswith("logging in to ") for line in lines)


@dataclass
class TwoServers:
    """Builders of servers A and B sharing ``logins``; ``build_both`` gives each an image
    (``ref_a``, ``ref_b``) of ``repository`` to push."""

    a: BuildKitBuilder
    b: BuildKitBuilder
    logins: RegistryLogins
    repository: str
    context: Path
    ref_a: str = ""
    ref_b: str = ""


@pytest.fixture
def two_servers(
    docker_host: str, engine: SecondEngine, cli: CountingCli, tmp_path: Path
) -> Iterator[TwoServers]:
    logins = RegistryLogins()
    a = BuildKitBuilder(docker_host, cli.path, logins=logins)
    b = BuildKitBuilder(engine.tcp, cli.path, tls=engine_tls(engine), logins=logins)
    name = f"deployq-test/shared-{uuid.uuid4().hex[:10]}"
    context = tmp_path / "context"
    context.mkdir()
    yield TwoServers(a, b, logins, name, context)
    logins.close()
    for host in (docker_host, engine.socket):
        listed = docker_cmd(host, "images", "--format", "{{.Repository}}:{{.Tag}}")
        refs = [ref for ref in listed.stdout.split() if ref.split(":")[-2].endswith(name)]
        if refs:
            docker_cmd(host, "rmi", *refs, check=False)


async def build_both(servers: TwoServers, registry: LocalRegistry) -> None:
    """Build an image on A and one on B (without credentials: the base image is local)."""
    context = servers.context
    servers.ref_a = registry.ref(servers.repository, "a")
    servers.ref_b = registry.ref(servers.repository, "b")
    for builder, ref in ((servers.a, servers.ref_a), (servers.b, servers.ref_b)):
        (context / "Dockerfile").write_text(
            f"FROM deployq-test/base:latest\nRUN echo {uuid.uuid4().hex} > /id\n"
        )
        await builder.build(BuildRequest(context, tags=[ref]), lambda line: None)


async def test_server_bs_first_push_uses_the_login_made_through_server_a(
    two_servers: TwoServers, registry: LocalRegistry, cli: CountingCli
) -> None:
    await build_both(two_servers, registry)
    on_a: list[str] = []
    on_b: list[str] = []

    digest_a = await two_servers.a.push(two_servers.ref_a, auth_for(registry), on_a.append)
    digest_b = await two_servers.b.push(two_servers.ref_b, auth_for(registry), on_b.append)

    assert digest_a.startswith("sha256:") and digest_b.startswith("sha256:")
    assert logging_in(on_a) == 1 and logging_in(on_b) == 0, (on_a, on_b)
    assert cli.logins() == 1
    assert registry.password not in cli.calls.read_text()  # never in argv
    root = two_servers.logins.root
    assert root is not None and two_servers.b.config_root == two_servers.a.config_root == root
    two_servers.b.close()  # a builder does not close what it shares
    assert root.exists()
    two_servers.logins.close()
    assert not root.exists() and two_servers.logins.root is None


async def test_concurrent_first_pushes_on_two_servers_wait_for_one_login(
    two_servers: TwoServers, registry: LocalRegistry, cli: CountingCli
) -> None:
    await build_both(two_servers, registry)
    lines: list[str] = []

    digests = await asyncio.gather(
        two_servers.a.push(two_servers.ref_a, auth_for(registry), lines.append),
        two_servers.b.push(two_servers.ref_b, auth_for(registry), lines.append),
    )

    assert all(d.startswith("sha256:") for d in digests)
    assert logging_in(lines) == 1 and cli.logins() == 1


async def test_a_rotated_password_logs_in_once_for_all_servers(
    two_servers: TwoServers, private_registry: LocalRegistry, cli: CountingCli
) -> None:
    await build_both(two_servers, private_registry)
    await two_servers.a.push(two_servers.ref_a, auth_for(private_registry), lambda line: None)
    await two_servers.b.push(two_servers.ref_b, auth_for(private_registry), lambda line: None)
    assert cli.logins() == 1
    new = rotate_password(private_registry)
    on_b: list[str] = []
    on_a: list[str] = []

    await two_servers.b.push(two_servers.ref_b, new, on_b.append)
    await two_servers.a.push(two_servers.ref_a, new, on_a.append)

    assert logging_in(on_b) == 1 and logging_in(on_a) == 0, (on_b, on_a)
    assert cli.logins() == 2
    assert new.password and new.password not in cli.calls.read_text()


async def test_a_login_refused_through_server_b_is_renewed_for_server_a_too(
    two_servers: TwoServers, registry: LocalRegistry, cli: CountingCli
) -> None:
    await build_both(two_servers, registry)
    await two_servers.a.push(two_servers.ref_a, auth_for(registry), lambda line: None)
    root = two_servers.logins.root
    assert root is not None
    for stored in root.glob("*/config.json"):
        stored.unlink()  # as a /tmp cleaner would: the registry refuses B's push
    on_b: list[str] = []
    on_a: list[str] = []

    digest_b = await two_servers.b.push(two_servers.ref_b, auth_for(registry), on_b.append)
    digest_a = await two_servers.a.push(two_servers.ref_a, auth_for(registry), on_a.append)

    assert digest_b.startswith("sha256:") and digest_a.startswith("sha256:")
    assert any("refused the stored login: logging in again" in line for line in on_b), on_b
    assert logging_in(on_b) == 1 and logging_in(on_a) == 0, (on_b, on_a)
    assert cli.logins() == 2


async def test_one_worker_logs_in_once_for_a_local_and_an_ssh_server(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    engine: SecondEngine,
    ssh_engine: SshEngine,
    git_repo_factory: Any,
    cli: CountingCli,
) -> None:
    """The job on the ssh:// server builds and pushes with the login the local server's job
    made: the CLI reads the DOCKER_CONFIG here and sends the engine the credentials."""
    values = registry_settings(
        registry,
        docker_host,
        build_backend=BuildBackend.BUILDKIT,
        docker_cli=cli.path,
        ssh_known_hosts=ssh_engine.known_hosts,
        ssh_key=ssh_engine.key,
        cache_prefetch=False,
    )
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    try:
        await store.servers.add("local", docker_host, labels=["local"])
        await store.servers.add("remote-ssh", ssh_engine.url, labels=["ssh"])
        dockerfile = f"FROM deployq-test/base:latest\nRUN echo {uuid.uuid4().hex} > /built\n"
        repo = git_repo_factory({"Dockerfile": dockerfile})
        app_a = await add_app(store, repo.url, required_labels=["local"])
        app_b = await add_app(store, repo.url, required_labels=["ssh"])
        async with running_pool(store) as pool:
            job_a = await wait_job(store, await deploy(store, app_a), lambda j: j.status.is_final)
            job_b = await wait_job(store, await deploy(store, app_b), lambda j: j.status.is_final)
            root = pool.monitor.logins.root
        logs_a = await log_text(store, job_a.id)
        logs_b = await log_text(store, job_b.id)
    finally:
        await store.close()

    assert job_a.status is JobStatus.SUCCEEDED, f"{job_a.error}\n{logs_a}"
    assert job_b.status is JobStatus.SUCCEEDED, f"{job_b.error}\n{logs_b}"
    assert (job_a.server_name, job_b.server_name) == ("local", "remote-ssh")
    assert logging_in(logs_a.splitlines()) == 1
    assert logging_in(logs_b.splitlines()) == 0, logs_b
    assert cli.logins() == 1
    image = job_b.image_ref or ""
    assert docker_cmd(engine.socket, "image", "inspect", image, check=False).returncode == 0
    # the worker's stop removed the credentials
    assert root is not None and not root.exists()
