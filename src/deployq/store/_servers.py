"""Build servers: Docker engines with a capacity, an architecture and labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

from deployq.db import Connection
from deployq.errors import Conflict, NotFound
from deployq.models import BuildServer, ServerView
from deployq.store._channels import CHANNEL_SERVERS, dumps
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store


def _no_server(name: str) -> NotFound:
    return NotFound(f"no build server named {name!r}; `deployq server list` shows them")


class ServerStore:
    """``store.servers``: the build servers and their health."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(
        self,
        name: str,
        docker_host: str,
        *,
        capacity: int = 2,
        arch: str = "amd64",
        labels: list[str] | None = None,
        tls: tuple[str, str, str] | None = None,
        host_id: str | None = None,
    ) -> BuildServer:
        """``tls``: the paths of the CA, client certificate and client key of a tcp:// engine;
        ``host_id``: the host whose workers alone may build there (its unix:// engine)."""
        ca, cert, key = tls or (None, None, None)
        params = {
            "name": name,
            "docker_host": docker_host,
            "capacity": capacity,
            "arch": arch,
            "labels": labels or [],
            "tls_ca": ca,
            "tls_cert": cert,
            "tls_key": key,
            "host_id": host_id,
        }
        async with self.store.connection() as conn:
            try:
                row = await (await conn.execute(sql("server_add"), params)).fetchone()
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(f"a build server named {name!r} exists already") from exc
            await _notify(conn, name)
        assert row is not None
        return BuildServer.model_validate(row)

    async def ensure_local(
        self, docker_host: str, *, capacity: int, arch: str, host_id: str | None = None
    ) -> BuildServer | None:
        """Register the local engine as ``local`` when no server exists at all."""
        params = {
            "docker_host": docker_host,
            "capacity": capacity,
            "arch": arch,
            "host_id": host_id,
        }
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("server_ensure_local"), params)).fetchone()
        return BuildServer.model_validate(row) if row else None

    async def all(self) -> list[BuildServer]:
        """Every server, by name, with its running jobs counted."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(sql("servers_all"), {"name": None, "id": None})
            ).fetchall()
        return [BuildServer.model_validate(r) for r in rows]

    async def get(self, name: str) -> BuildServer:
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(sql("servers_all"), {"name": name, "id": None})
            ).fetchone()
        if row is None:
            raise _no_server(name)
        return BuildServer.model_validate(row)

    async def get_by_id(self, server_id: int) -> BuildServer:
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(sql("servers_all"), {"name": None, "id": server_id})
            ).fetchone()
        if row is None:
            raise NotFound(f"no build server with id {server_id}")
        return BuildServer.model_validate(row)

    async def set_draining(self, name: str, draining: bool) -> BuildServer:
        """Drain: no new jobs go to the server; running ones finish."""
        async with self.store.connection() as conn:
            cur = await conn.execute(
                sql("server_set_draining"), {"name": name, "draining": draining}
            )
            if cur.rowcount == 0:
                raise _no_server(name)
            await _notify(conn, name)
        return await self.get(name)

    async def set_capacity(self, name: str, capacity: int) -> BuildServer:
        async with self.store.connection() as conn:
            cur = await conn.execute(
                sql("server_set_capacity"), {"name": name, "capacity": capacity}
            )
            if cur.rowcount == 0:
                raise _no_server(name)
            await _notify(conn, name)
        return await self.get(name)

    async def observe(
        self,
        server_id: int,
        *,
        host_id: str,
        ok: bool,
        error: str | None = None,
        latency_ms: int | None = None,
        engine_version: str | None = None,
        free_disk_mb: int | None = None,
    ) -> ServerView | None:
        """Record what a probe from host ``host_id`` found; returns that host's view after
        it (None: the server was removed). ``ok``: the engine answered; ``error``: why the
        server is not usable (engine error, low disk). The shared ``healthy`` is derived:
        false only when every host that probed the server recently sees it failed."""
        params = {
            "id": server_id,
            "host_id": host_id,
            "ok": ok,
            "error": error,
            "latency_ms": latency_ms,
            "engine_version": engine_version,
            "free_disk_mb": free_disk_mb,
        }
        async with self.store.connection() as conn, conn.transaction():
            locked = await (await conn.execute(sql("server_health_lock"), params)).fetchone()
            if locked is None:
                return None
            row = await (await conn.execute(sql("server_observe"), params)).fetchone()
            await conn.execute(sql("server_derive_health"), params)
            await conn.execute(sql("server_health_forget"), params)
            await _notify(conn, str(locked["name"]))  # consoles show each probe's time
        assert row is not None
        row.pop("server_id")
        return ServerView.model_validate(row)

    async def remove(self, name: str) -> None:
        async with self.store.connection() as conn:
            cur = await conn.execute(sql("server_remove"), {"name": name})
        if cur.rowcount == 0:
            raise _no_server(name)


async def _notify(conn: Connection, name: str) -> None:
    payload = dumps({"name": name})
    await conn.execute(sql("notify"), {"channel": CHANNEL_SERVERS, "payload": payload})
