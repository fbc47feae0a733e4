"""Worker processes: registration, liveness, and what the claim loop needs to schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store


class WorkerStore:
    """Rows of the ``workers`` table, plus small queue reads the worker pool schedules by."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def register(self, worker_id: str, *, host: str, pid: int, concurrency: int) -> None:
        params = {"id": worker_id, "host": host, "pid": pid, "concurrency": concurrency}
        async with self.store.connection() as conn:
            await conn.execute(sql("worker_register"), params)

    async def heartbeat(self, worker_id: str) -> None:
        async with self.store.connection() as conn:
            await conn.execute(sql("worker_heartbeat"), {"id": worker_id})

    async def set_stopping(self, worker_id: str) -> None:
        async with self.store.connection() as conn:
            await conn.execute(sql("worker_stopping"), {"id": worker_id})

    async def unregister(self, worker_id: str) -> None:
        async with self.store.connection() as conn:
            await conn.execute(sql("worker_unregister"), {"id": worker_id})

    async def seconds_to_next_due(self) -> float | None:
        """Seconds until the earliest queued job with a future run_after becomes due."""
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("next_due_in"))).fetchone()
        if row is None or row["wait"] is None:
            return None
        return max(0.0, float(row["wait"]))

    async def set_wait_reason(self, reason: str | None) -> int:
        """Say why due queued jobs are not being started (e.g. low disk); None clears it."""
        async with self.store.connection() as conn:
            cur = await conn.execute(sql("wait_reason_set_due"), {"reason": reason})
        return cur.rowcount
