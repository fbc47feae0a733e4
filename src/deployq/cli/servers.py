"""deployq server add | list | drain | undrain | rm: the Docker engines builds run on;
deployq workers: the worker processes and their hosts."""

from __future__ import annotations

import asyncio

import click

from deployq.builders import EngineTLS, SshWrapper, make_builder
from deployq.cli.common import CliState, common_options, emit, table, with_store
from deployq.config import BuildBackend
from deployq.durations import setting
from deployq.errors import EngineUnavailable
from deployq.hostid import host_id, is_host_local
from deployq.models import BuildServer, Worker
from deployq.store import Store

#: how long `server add` waits for a TLS or ssh:// engine to answer
CHECK_TIMEOUT_S = 20.0


@click.group("server")
def server_group() -> None:
    """Build servers: Docker engines with a capacity, an architecture and labels."""


@server_group.command("add")
@click.argument("name")
@click.option(
    "--docker-host",
    required=True,
    help="Engine URL: unix:///var/run/docker.sock, tcp://host:2376, ssh://user@host.",
)
@click.option(
    "--capacity",
    type=click.IntRange(0, 1024),
    default=2,
    show_default=True,
    help="Builds at once on this server.",
)
@click.option("--arch", default="amd64", show_default=True, help="CPU architecture (amd64, arm64).")
@click.option("--label", "labels", multiple=True, help="Label apps can require (repeat).")
@click.option("--tls-ca", help="CA certificate (PEM) that signed a tcp:// engine's certificate.")
@click.option("--tls-cert", help="Client certificate (PEM) the tcp:// engine trusts.")
@click.option("--tls-key", help="Private key (PEM) of --tls-cert.")
@click.option(
    "--no-check",
    is_flag=True,
    help="Add an ssh:// or TLS engine without checking that it answers (workers probe it).",
)
@common_options
@with_store
async def server_add(
    state: CliState,
    store: Store,
    name: str,
    docker_host: str,
    capacity: int,
    arch: str,
    labels: tuple[str, ...],
    tls_ca: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    no_check: bool,
) -> None:
    """Register a build server.

    A unix:// engine belongs to this host: only workers on this host build there. With
    --tls-* the engine must answer through mutual TLS before the server is added; the three
    paths are stored and read on each worker host, which needs the files there too. An
    ssh:// engine must answer the way workers reach it (host key checked against
    DEPLOYQ_SSH_KNOWN_HOSTS, key DEPLOYQ_SSH_KEY).
    """
    tls = EngineTLS.from_options(docker_host, tls_ca, tls_cert, tls_key)
    if not no_check and (tls is not None or docker_host.startswith("ssh://")):
        await _check_engine(store, docker_host, tls)
    owner = host_id(store.settings) if is_host_local(docker_host) else None
    server = await store.servers.add(
        name,
        docker_host,
        capacity=capacity,
        arch=arch,
        labels=list(labels),
        tls=(tls.ca, tls.cert, tls.key) if tls else None,
        host_id=owner,
    )
    where = f"; only workers on host {owner} build there" if owner else ""
    emit(
        state,
        server,
        f"added build server {server.name} ({server.docker_host}, "
        f"capacity {server.capacity}, {server.arch}){where}",
    )


async def _check_engine(store: Store, docker_host: str, tls: EngineTLS | None) -> None:
    """Raise EngineUnavailable (one line) unless the engine answers the way workers reach it:
    through ``tls``, or for ssh:// through the docker CLI and the strict ssh wrapper."""
    settings = store.settings
    ssh = SshWrapper(settings.ssh_known_hosts, settings.ssh_key) if tls is None else None
    backend = BuildBackend.BUILDKIT if ssh is not None else settings.build_backend
    try:
        builder = await asyncio.to_thread(
            make_builder, docker_host, backend, docker_cli=settings.docker_cli, tls=tls, ssh=ssh
        )
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await builder.ping()
    except TimeoutError:
        listens = "with --tlsverify" if tls else "and that sshd answers there"
        raise EngineUnavailable(
            f"docker engine {docker_host} did not answer within {setting(CHECK_TIMEOUT_S)}: "
            f"check that dockerd listens there {listens} (or add it with --no-check)"
        ) from None
    finally:
        if ssh is not None:
            ssh.close()


@server_group.command("list")
@common_options
@with_store
async def server_list(state: CliState, store: Store) -> None:
    """List the build servers, their load and health: the shared state (unhealthy when every
    host that probed it recently failed) and each host's view (SEEN BY)."""
    servers = await store.servers.all()
    emit(state, servers, lambda: _table(servers))


def _state(server: BuildServer) -> str:
    if not server.healthy:
        return "unhealthy"
    return "draining" if server.draining else "healthy"


def _table(servers: list[BuildServer]) -> str:
    if not servers:
        return (
            "no build servers yet: `deployq worker` registers the local engine as `local`, "
            "or add one with `deployq server add NAME --docker-host URL`"
        )
    return table(
        [
            "NAME",
            "DOCKER HOST",
            "HOST",
            "ARCH",
            "LABELS",
            "RUNNING",
            "STATE",
            "SEEN BY",
            "ENGINE",
            "LAST ERROR",
        ],
        [
            [
                s.name,
                s.docker_host,
                s.host_id or "any",
                s.arch,
                ",".join(s.labels),
                f"{s.running}/{s.capacity}",
                _state(s),
                s.seen_by(),
                s.engine_version or "",
                s.last_error or "",
            ]
            for s in servers
        ],
    )


@server_group.command("drain")
@click.argument("name")
@common_options
@with_store
async def server_drain(state: CliState, store: Store, name: str) -> None:
    """Send no new builds to NAME; running ones finish."""
    server = await store.servers.set_draining(name, True)
    emit(state, server, f"draining {name}: {server.running} build(s) still running there")


@server_group.command("undrain")
@click.argument("name")
@common_options
@with_store
async def server_undrain(state: CliState, store: Store, name: str) -> None:
    """Let NAME take new builds again."""
    server = await store.servers.set_draining(name, False)
    emit(state, server, f"{name} takes builds again")


@server_group.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask.")
@common_options
@with_store
async def server_rm(state: CliState, store: Store, name: str, yes: bool) -> None:
    """Remove a build server (its past jobs stay in the history)."""
    await store.servers.get(name)
    if not yes and not state.json:
        click.confirm(f"remove build server {name}?", abort=True)
    await store.servers.remove(name)
    emit(state, {"removed": name}, f"removed build server {name}")


@click.command("workers")
@common_options
@with_store
async def workers_cmd(state: CliState, store: Store) -> None:
    """List the worker processes: their host id (which unix:// servers they build on), load
    and last heartbeat."""
    workers = await store.workers.all()
    emit(state, workers, lambda: _workers_table(workers))


def _workers_table(workers: list[Worker]) -> str:
    if not workers:
        return "no workers running: start one with `deployq worker` (or `deployq up`)"
    return table(
        ["HOST ID", "WORKER", "PID", "RUNNING", "STARTED", "HEARTBEAT", "STATE"],
        [
            [
                w.host_id or "",
                w.id,
                w.pid,
                f"{w.running}/{w.concurrency}",
                w.started_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
                w.heartbeat_at.astimezone().strftime("%H:%M:%S"),
                "stopping" if w.stopping else "claiming",
            ]
            for w in workers
        ],
    )


def register(main: click.Group) -> None:
    main.add_command(server_group)
    main.add_command(workers_cmd)
