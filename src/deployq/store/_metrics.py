"""Queries behind /metrics: jobs by status, queue depth (wait and build times: _stats)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store


@dataclass(frozen=True)
class JobMetrics:
    by_status: dict[str, int]
    queued: int
    due: int


class MetricsStore:
    """``store.metrics``: the figures /metrics exports."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def jobs(self) -> JobMetrics:
        """One snapshot, two queries on one connection."""
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("metrics_by_status"))).fetchall()
            queue = await (await conn.execute(sql("metrics_queue"))).fetchone()
        return JobMetrics(
            by_status={str(r["status"]): int(r["n"]) for r in rows},
            queued=int(queue["queued"]) if queue else 0,
            due=int(queue["due"]) if queue else 0,
        )
