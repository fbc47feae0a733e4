"""Worker processes: registration, liveness, and what the claim loop needs to schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deployq.store._store import Store


class WorkerStore:
    """Rows of the ``workers`` table, plus small queue reads the worker pool schedules by."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def register(self, worker_id: str, *, host: str, pid: int, concurrency: int) -> None:
        async with self.store.connection() as conn:
            await conn.execute(
                "INSERT INTO workers (id, host, pid, concurrency) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                "concurrency = excluded.concurrency, heartbeat_at = now(), stopping = false",
                (worker_id, host, pid, concurrency),
            )

    async def heartbeat(self, worker_id: str) -> None:
        async with self.store.connection() as conn:
            await conn.execute(
                "UPDATE workers SET heartbeat_at = now() WHERE id = %s", (worker_id,)
            )

    async def set_stopping(self, worker_id: str) -> None:
        async with self.store.connection() as conn:
            await conn.execute("UPDATE workers SET stopping = true WHERE id = %s", (worker_id,))

    async def unregister(self, worker_id: str) -> None:
        async with self.store.connection() as conn:
            await conn.execute("DELETE FROM workers WHERE id = %s", (worker_id,))

    async def list(self) -> list[dict[str, Any]]:
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT w.*, (SELECT count(*) FROM jobs j WHERE j.worker_id = w.id "
                    "AND j.status = 'running') AS running FROM workers w ORDER BY w.started_at"
                )
            ).fetchall()
        return [dict(r) for r in rows]

    async def seconds_to_next_due(self) -> float | None:
        """Seconds until the earliest queued job with a future run_after becomes due."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT extract(epoch FROM min(run_after) - now())::float8 AS wait "
                    "FROM jobs WHERE status = 'queued' AND run_after > now()"
                )
            ).fetchone()
        if row is None or row["wait"] is None:
            return None
        return max(0.0, float(row["wait"]))

    async def set_wait_reason(self, reason: str | None) -> int:
        """Say why due queued jobs are not being started (e.g. low disk); None clears it."""
        async with self.store.connection() as conn:
            cur = await conn.execute(
                "UPDATE jobs SET wait_reason = %s, updated_at = now() "
                "WHERE status = 'queued' AND run_after <= now() "
                "AND wait_reason IS DISTINCT FROM %s",
                (reason, reason),
            )
        return cur.rowcount
