"""Worker processes: registration, liveness, and what the claim loop needs to schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployq.models import Worker
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store


class WorkerStore:
    """``store.workers``: rows of the ``workers`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def register(
        self, worker_id: str, *, host: str, pid: int, concurrency: int, host_id: str | None = None
    ) -> None:
        params = {
            "id": worker_id,
            "host": host,
            "host_id": host_id,
            "pid": pid,
            "concurrency": concurrency,
        }
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

    async def all(self) -> list[Worker]:
        """Every registered worker (stopped ones unregister; a dead one stays until its
        heartbeat is old), with its running jobs counted."""
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("workers_all"))).fetchall()
        return [Worker.model_validate(r) for r in rows]
