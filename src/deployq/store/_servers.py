"""Build servers: Docker engines with a capacity, an architecture and labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

from deployq.errors import Conflict, NotFound
from deployq.models import BuildServer
from deployq.store._channels import CHANNEL_SERVERS, dumps

if TYPE_CHECKING:
    from deployq.store._store import Store

_SELECT = (
    "SELECT s.*, (SELECT count(*) FROM jobs j WHERE j.server_id = s.id "
    "AND j.status = 'running') AS running FROM build_servers s"
)


class ServerStore:
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
    ) -> BuildServer:
        async with self.store.connection() as conn:
            try:
                row = await (
                    await conn.execute(
                        "INSERT INTO build_servers (name, docker_host, capacity, arch, labels) "
                        "VALUES (%s, %s, %s, %s, %s) RETURNING *",
                        (name, docker_host, capacity, arch, labels or []),
                    )
                ).fetchone()
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(f"a build server named {name!r} exists already") from exc
            await self._notify(conn, name)
        assert row is not None
        return BuildServer.model_validate(row)

    async def ensure_local(
        self, docker_host: str, *, capacity: int, arch: str
    ) -> BuildServer | None:
        """Register the local engine as ``local`` when no server exists at all."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO build_servers (name, docker_host, capacity, arch) "
                    "SELECT 'local', %s, %s, %s "
                    "WHERE NOT EXISTS (SELECT 1 FROM build_servers) "
                    "ON CONFLICT (name) DO NOTHING RETURNING *",
                    (docker_host, capacity, arch),
                )
            ).fetchone()
        return BuildServer.model_validate(row) if row else None

    async def list(self) -> list[BuildServer]:
        async with self.store.connection() as conn:
            rows = await (await conn.execute(_SELECT + " ORDER BY s.name")).fetchall()
        return [BuildServer.model_validate(r) for r in rows]

    async def get(self, name: str) -> BuildServer:
        async with self.store.connection() as conn:
            row = await (await conn.execute(_SELECT + " WHERE s.name = %s", (name,))).fetchone()
        if row is None:
            raise NotFound(f"no build server named {name!r}; `deployq server list` shows them")
        return BuildServer.model_validate(row)

    async def get_by_id(self, server_id: int) -> BuildServer:
        async with self.store.connection() as conn:
            row = await (await conn.execute(_SELECT + " WHERE s.id = %s", (server_id,))).fetchone()
        if row is None:
            raise NotFound(f"no build server with id {server_id}")
        return BuildServer.model_validate(row)

    async def set_draining(self, name: str, draining: bool) -> BuildServer:
        """Drain: no new jobs go to the server; running ones finish."""
        async with self.store.connection() as conn:
            cur = await conn.execute(
                "UPDATE build_servers SET draining = %s WHERE name = %s", (draining, name)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no build server named {name!r}; `deployq server list` shows them")
            await self._notify(conn, name)
        return await self.get(name)

    async def set_capacity(self, name: str, capacity: int) -> BuildServer:
        async with self.store.connection() as conn:
            cur = await conn.execute(
                "UPDATE build_servers SET capacity = %s WHERE name = %s", (capacity, name)
            )
            if cur.rowcount == 0:
                raise NotFound(f"no build server named {name!r}")
            await self._notify(conn, name)
        return await self.get(name)

    async def record_health(
        self,
        server_id: int,
        *,
        healthy: bool,
        error: str | None = None,
        engine_version: str | None = None,
        free_disk_mb: int | None = None,
    ) -> None:
        """What the last probe of the engine found; unhealthy servers get no new jobs."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    "UPDATE build_servers SET healthy = %s, last_error = %s, "
                    "engine_version = coalesce(%s, engine_version), "
                    "free_disk_mb = coalesce(%s, free_disk_mb), last_heartbeat_at = now() "
                    "WHERE id = %s RETURNING name, "
                    "(healthy IS DISTINCT FROM %s) AS changed",
                    (healthy, error, engine_version, free_disk_mb, server_id, healthy),
                )
            ).fetchone()
            if row is not None:
                await self._notify(conn, str(row["name"]))

    async def remove(self, name: str) -> None:
        async with self.store.connection() as conn:
            cur = await conn.execute("DELETE FROM build_servers WHERE name = %s", (name,))
        if cur.rowcount == 0:
            raise NotFound(f"no build server named {name!r}")

    async def _notify(self, conn: psycopg.AsyncConnection[object], name: str) -> None:
        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL_SERVERS, dumps({"name": name})))
