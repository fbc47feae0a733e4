"""Remote build engines: a second dockerd reached over tcp:// with mutual TLS, and over ssh://.

The engine is a real dockerd started by the test (own data root, exec root, bridge) that
listens on 127.0.0.1 with --tlsverify and certificates made here with openssl; a loopback
sshd started by the test runs `docker system dial-stdio` against its socket.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from registry_helpers import push_image

from deployq.builders import BuildRequest, RegistryAuth, attempt_marker
from deployq.config import BuildBackend
from deployq.doctor import run_checks
from deployq.errors import BuildError
from deployq.models import JobStatus
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from deployq.testing.services import (
    LocalRegistry,
    SecondEngine,
    SshEngine,
    docker_cmd,
    make_ca,
    make_client_cert,
)
from deployq.worker.prefetch import Prefetcher
from deployq.worker.servers import ServerMonitor
from fixtures.cli import run_deployq
from worker_support import add_app, deploy, log_text, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

Cli = Callable[..., subprocess.CompletedProcess[str]]


@dataclass(frozen=True)
class Strangers:
    """TLS files the engine must refuse: another CA, and a client cert and key from it."""

    ca: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def strangers(tmp_path_factory: pytest.TempPathFactory) -> Strangers:
    directory = tmp_path_factory.mktemp("stranger-tls")
    ca, ca_key = make_ca(directory, "stranger-ca")
    cert, key = make_client_cert(directory, ca, ca_key, "stranger")
    return Strangers(ca, cert, key)


@pytest.fixture
def cli(database_url: str, tmp_path: Path, registry: LocalRegistry) -> Cli:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        """``deployq ARGS``; settings of this call only after a ``--``: NAME=VALUE."""
        env = {"DEPLOYQ_REGISTRY_URL": registry.url}
        if "--" in args:
            at = args.index("--")
            args, extra = args[:at], args[at + 1 :]
            env.update(a.split("=", 1) for a in extra)
        return run_deployq(*args, data_dir=tmp_path, database_url=database_url, env=env)

    return run


def tls_options(ca: Path, cert: Path, key: Path) -> list[str]:
    return ["--tls-ca", str(ca), "--tls-cert", str(cert), "--tls-key", str(key)]


def test_server_add_refuses_a_wrong_ca_or_client_key_in_one_line(
    cli: Cli, engine: SecondEngine, strangers: Strangers
) -> None:
    good = engine.tls
    cases = {
        "the engine's certificate is not signed by the CA in": (
            strangers.ca, good.client_cert, good.client_key,
        ),
        "the engine refused the client certificate": (
            good.ca, strangers.client_cert, strangers.client_key,
        ),
        f"the client key {strangers.client_key} does not belong to the client certificate": (
            good.ca, good.client_cert, strangers.client_key,
        ),
    }  # fmt: skip
    for expected, files in cases.items():
        refused = cli("server", "add", "remote", "--docker-host", engine.tcp, *tls_options(*files))
        assert refused.returncode == 1, refused.stdout
        line = refused.stderr.strip()
        assert "\n" not in line, line
        assert f"docker engine {engine.tcp} refused: TLS: {expected}" in line

    plain = cli("server", "add", "remote", "--docker-host", engine.tcp, "--tls-ca", str(good.ca))
    assert plain.returncode == 1
    assert "needs all three of --tls-ca, --tls-cert and --tls-key" in plain.stderr
    assert "no build servers yet" in cli("server", "list").stdout

    added = cli(
        "server", "add", "remote", "--docker-host", engine.tcp, "--label", "tls",
        *tls_options(good.ca, good.client_cert, good.client_key),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    [server] = json.loads(cli("server", "list", "--json").stdout)
    assert server["docker_host"] == engine.tcp
    assert (server["tls_ca"], server["tls_cert"], server["tls_key"]) == (
        str(good.ca),
        str(good.client_cert),
        str(good.client_key),
    )


async def test_doctor_says_which_tls_file_is_wrong(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    engine: SecondEngine,
    strangers: Strangers,
) -> None:
    settings = settings_factory(**registry_settings(registry, engine.socket))
    store = await Store.open(settings, database_url, min_size=1)
    good = engine.tls
    try:
        await store.servers.add(
            "good", engine.tcp, tls=(str(good.ca), str(good.client_cert), str(good.client_key))
        )
        await store.servers.add(
            "wrong-ca",
            engine.tcp,
            tls=(str(strangers.ca), str(good.client_cert), str(good.client_key)),
        )
        await store.servers.add(
            "wrong-key",
            engine.tcp,
            tls=(str(good.ca), str(strangers.client_cert), str(strangers.client_key)),
        )
    finally:
        await store.close()

    checks = {c.name: c for c in await run_checks(settings=settings)}

    assert checks["engine good"].ok, checks["engine good"].detail
    wrong_ca = checks["engine wrong-ca"]
    assert not wrong_ca.ok
    assert wrong_ca.detail == (
        f"{engine.tcp} refused: TLS: the engine's certificate is not signed by the CA in "
        f"{strangers.ca}: give the CA that signed the daemon's --tlscert"
    )
    assert "deployq server rm wrong-ca" in wrong_ca.fix
    wrong_key = checks["engine wrong-key"]
    assert not wrong_key.ok
    assert f"refused the client certificate {strangers.client_cert}" in wrong_key.detail


@pytest.mark.parametrize("backend", [BuildBackend.BUILDKIT, BuildBackend.ENGINE])
async def test_a_job_pinned_to_the_tls_engine_builds_and_pushes_there(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    engine: SecondEngine,
    git_repo_factory: Any,
    backend: BuildBackend,
) -> None:
    values = registry_settings(registry, docker_host, build_backend=backend)
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    good = engine.tls
    try:
        await store.servers.add(
            "remote-tls",
            engine.tcp,
            labels=["tls"],
            tls=(str(good.ca), str(good.client_cert), str(good.client_key)),
        )
        repo = git_repo_factory(
            {"Dockerfile": "FROM deployq-test/base:latest\nRUN echo built-remotely > /built\n"}
        )
        app = await add_app(store, repo.url, required_labels=["tls"])
        job_id = await deploy(store, app)
        async with running_pool(store):
            job = await wait_job(store, job_id, lambda j: j.status.is_final)
        logs = await log_text(store, job_id)
    finally:
        await store.close()

    assert job.status is JobStatus.SUCCEEDED, f"{job.error}\n{logs}"
    assert job.server_name == "remote-tls"
    assert job.image_digest is not None and job.image_digest.startswith("sha256:")
    image = job.image_ref or ""
    assert image, job
    # built on the second engine: its image store has the image, the host's engine does not
    assert docker_cmd(engine.socket, "image", "inspect", image, check=False).returncode == 0
    assert docker_cmd(docker_host, "image", "inspect", image, check=False).returncode != 0


@pytest.mark.parametrize("backend", [BuildBackend.BUILDKIT, BuildBackend.ENGINE])
async def test_a_job_pinned_to_the_ssh_engine_builds_and_pushes_there(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    engine: SecondEngine,
    ssh_engine: SshEngine,
    git_repo_factory: Any,
    backend: BuildBackend,
) -> None:
    values = registry_settings(
        registry,
        docker_host,
        build_backend=backend,
        ssh_known_hosts=ssh_engine.known_hosts,
        ssh_key=ssh_engine.key,
    )
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    try:
        await store.servers.add("remote-ssh", ssh_engine.url, labels=["ssh"])
        repo = git_repo_factory(
            {"Dockerfile": "FROM deployq-test/base:latest\nRUN echo over-ssh > /built\n"}
        )
        app = await add_app(store, repo.url, required_labels=["ssh"])
        job_id = await deploy(store, app)
        async with running_pool(store):
            job = await wait_job(store, job_id, lambda j: j.status.is_final)
        logs = await log_text(store, job_id)
    finally:
        await store.close()

    assert job.status is JobStatus.SUCCEEDED, f"{job.error}\n{logs}"
    assert job.server_name == "remote-ssh"
    assert job.image_digest is not None
    image = job.image_ref or ""
    assert docker_cmd(engine.socket, "image", "inspect", image, check=False).returncode == 0
    assert docker_cmd(docker_host, "image", "inspect", image, check=False).returncode != 0


async def test_the_cache_prefetch_pulls_onto_an_ssh_engine_through_the_strict_ssh(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    engine: SecondEngine,
    ssh_engine: SshEngine,
) -> None:
    """What one server pushed is pulled, by digest, onto an ssh:// engine: through the dial
    socket over the ssh with the known_hosts and key of the settings."""
    values = registry_settings(
        registry, docker_host, ssh_known_hosts=ssh_engine.known_hosts, ssh_key=ssh_engine.key
    )
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    repository = f"deployq/prefetch-{uuid.uuid4().hex[:8]}"
    ref = f"{registry.url}/{repository}@{await push_image(registry, repository, 'main')}"
    auth = RegistryAuth(registry.url, registry.username, registry.password)
    try:
        source = await store.servers.add("local", docker_host)
        await store.servers.add("remote-ssh", ssh_engine.url)
        monitor = ServerMonitor(store)
        await monitor.refresh(force=True)
        prefetch = Prefetcher(monitor)
        try:
            assert [s.name for s in prefetch.targets(source)] == ["remote-ssh"]
            prefetch.pushed("web", "main", source, [ref], auth)
            await prefetch.idle()
        finally:
            await prefetch.close()
    finally:
        await store.close()

    listed = docker_cmd(
        engine.socket, "image", "ls", "--digests", "--format", "{{.Repository}}@{{.Digest}}"
    )
    try:
        assert ref in listed.stdout.split()
    finally:
        docker_cmd(engine.socket, "rmi", ref, check=False)


@pytest.mark.parametrize("backend", [BuildBackend.BUILDKIT, BuildBackend.ENGINE])
async def test_an_unknown_ssh_host_key_is_refused_with_the_fix(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    ssh_engine: SshEngine,
    tmp_path: Path,
    backend: BuildBackend,
) -> None:
    known_hosts = tmp_path / "known_hosts"  # exists, but does not know the sshd's key
    known_hosts.write_text("")
    values = registry_settings(
        registry,
        docker_host,
        build_backend=backend,
        ssh_known_hosts=known_hosts,
        ssh_key=ssh_engine.key,
    )
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    try:
        server = await store.servers.add("stranger-ssh", ssh_engine.url)
        monitor = ServerMonitor(store)
        await monitor.refresh(force=True)
        state = monitor.states[server.id]
        row = await store.servers.get("stranger-ssh")
    finally:
        await store.close()

    assert not state.healthy
    expected = (
        f"docker engine {ssh_engine.url} refused: ssh: the host key of 127.0.0.1 is not the "
        f"one in {known_hosts} (unknown or changed): check its fingerprint, then add it "
        f"(`ssh-keyscan -p {ssh_engine.port} 127.0.0.1 >> {known_hosts}`) or set "
        "DEPLOYQ_SSH_KNOWN_HOSTS"
    )
    assert state.reason == expected
    assert not row.healthy and row.last_error == expected


async def test_doctor_checks_ssh_engines_with_the_workers_host_key_rule(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    ssh_engine: SshEngine,
    tmp_path: Path,
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    base = registry_settings(registry, "unix:///var/run/docker.sock", ssh_key=ssh_engine.key)
    trusting = settings_factory(**base, ssh_known_hosts=ssh_engine.known_hosts)
    store = await Store.open(trusting, database_url, min_size=1)
    try:
        await store.servers.add("over-ssh", ssh_engine.url)
    finally:
        await store.close()

    good = {c.name: c for c in await run_checks(settings=trusting)}["engine over-ssh"]
    assert good.ok, good.detail
    assert f"host key checked against {ssh_engine.known_hosts}" in good.detail

    strict = settings_factory(**base, ssh_known_hosts=known_hosts)
    refused = {c.name: c for c in await run_checks(settings=strict)}["engine over-ssh"]
    assert not refused.ok
    assert refused.detail.startswith(
        f"docker engine {ssh_engine.url} refused: ssh: the host key of 127.0.0.1 is not the "
        f"one in {known_hosts}"
    )
    assert "DEPLOYQ_SSH_KNOWN_HOSTS" in refused.fix


async def test_free_disk_arch_and_version_are_probed_over_tls_and_ssh_alike(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    engine: SecondEngine,
    ssh_engine: SshEngine,
) -> None:
    values = registry_settings(
        registry,
        "unix:///var/run/docker.sock",
        build_backend=BuildBackend.BUILDKIT,
        ssh_known_hosts=ssh_engine.known_hosts,
        ssh_key=ssh_engine.key,
        base_image_static="deployq-test/base:latest",  # has df; loaded into the engine
    )
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    good = engine.tls
    try:
        over_tls = await store.servers.add(
            "disk-tls", engine.tcp, tls=(str(good.ca), str(good.client_cert), str(good.client_key))
        )
        over_ssh = await store.servers.add("disk-ssh", ssh_engine.url)
        monitor = ServerMonitor(store)
        await monitor.refresh(force=True)
    finally:
        await store.close()

    free_here = shutil.disk_usage(engine.root).free // (1024 * 1024)
    for server in (over_tls, over_ssh):
        info = monitor.states[server.id].info
        assert info is not None, monitor.states[server.id].reason
        assert info.version.startswith("20.10") and info.arch == "amd64"
        assert info.data_root == str(engine.root / "data")
        assert info.free_disk_mb is not None
        # the same file system measured two ways; other tests write to it meanwhile
        assert abs(info.free_disk_mb - free_here) < max(1024, free_here // 20)


def test_server_add_checks_an_ssh_engine_the_way_workers_reach_it(
    cli: Cli, ssh_engine: SshEngine, tmp_path: Path
) -> None:
    stranger = tmp_path / "known_hosts"  # exists, but does not know the sshd's key
    stranger.write_text("")
    add = ["server", "add", "over-ssh", "--docker-host", ssh_engine.url]
    key = ["--", f"DEPLOYQ_SSH_KEY={ssh_engine.key}"]

    refused = cli(*add, *key, f"DEPLOYQ_SSH_KNOWN_HOSTS={stranger}")
    assert refused.returncode == 1
    line = refused.stderr.strip()
    assert "\n" not in line, line
    assert line == (
        f"error: docker engine {ssh_engine.url} refused: ssh: the host key of 127.0.0.1 is not "
        f"the one in {stranger} (unknown or changed): check its fingerprint, then add it "
        f"(`ssh-keyscan -p {ssh_engine.port} 127.0.0.1 >> {stranger}`) or set "
        "DEPLOYQ_SSH_KNOWN_HOSTS"
    )
    assert "no build servers yet" in cli("server", "list").stdout

    added = cli(*add, *key, f"DEPLOYQ_SSH_KNOWN_HOSTS={ssh_engine.known_hosts}")
    assert added.returncode == 0, added.stderr
    [server] = json.loads(cli("server", "list", "--json").stdout)
    assert server["docker_host"] == ssh_engine.url and server["host_id"] is None


async def test_an_attempts_build_is_found_and_stopped_over_tls_and_ssh_alike(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    engine: SecondEngine,
    ssh_engine: SshEngine,
    tmp_path: Path,
) -> None:
    values = registry_settings(
        registry,
        "unix:///var/run/docker.sock",
        build_backend=BuildBackend.BUILDKIT,
        ssh_known_hosts=ssh_engine.known_hosts,
        ssh_key=ssh_engine.key,
        base_image_static="deployq-test/base:latest",  # what the rescue looks with
    )
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    good = engine.tls
    try:
        over_tls = await store.servers.add(
            "steps-tls", engine.tcp, tls=(str(good.ca), str(good.client_cert), str(good.client_key))
        )
        over_ssh = await store.servers.add("steps-ssh", ssh_engine.url)
        monitor = ServerMonitor(store)
        for attempt, server in enumerate((over_tls, over_ssh), start=1):
            builder = await monitor.prepare(server)
            marker = attempt_marker(77, attempt, datetime.now(UTC))
            root = tmp_path / server.name
            root.mkdir()
            (root / "Dockerfile").write_text(
                f"FROM deployq-test/base:latest\nRUN echo go-{attempt} && sleep 60 && echo ok\n"
            )
            running = asyncio.Event()
            request = BuildRequest(root, tags=[f"steps/{server.name}:x"], attempt_marker=marker)
            build = asyncio.create_task(
                builder.build(
                    request,
                    lambda line, running=running, n=attempt: (
                        running.set() if f"go-{n}" in line and "RUN" not in line else None
                    ),
                )
            )
            await asyncio.wait_for(running.wait(), 120)
            found = await builder.attempt_steps(marker, stop=True)
            assert found is not None and len(found.steps) == 1, server.docker_host
            with pytest.raises(BuildError):
                await asyncio.wait_for(build, 30)
            after = await builder.attempt_steps(marker)
            assert after is not None and not after.running, server.docker_host
    finally:
        await store.close()
