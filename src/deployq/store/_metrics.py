"""Queries behind /metrics: jobs by status, queue depth, build durations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployq.store._store import Store

#: upper bounds (seconds) of the build-duration histogram
DURATION_BUCKETS_S = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class JobMetrics:
    by_status: dict[str, int]
    queued: int
    due: int
    duration_buckets: list[tuple[float, int]]
    """(upper bound, cumulative count), the last bound is +Inf"""
    duration_sum_s: float


class MetricsStore:
    """``store.metrics``: the figures /metrics exports."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def jobs(self) -> JobMetrics:
        """One snapshot, three queries on one connection."""
        bounds = [*DURATION_BUCKETS_S, float("inf")]
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute("SELECT status, count(*) AS n FROM jobs GROUP BY status")
            ).fetchall()
            queue = await (
                await conn.execute(
                    "SELECT count(*) AS queued, count(*) FILTER (WHERE run_after <= now()) AS due "
                    "FROM jobs WHERE status = 'queued'"
                )
            ).fetchone()
            hist = await (
                await conn.execute(
                    "WITH d AS (SELECT extract(epoch FROM finished_at - started_at)::float8 AS s "
                    "FROM jobs WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) "
                    "SELECT b.bound, (SELECT count(*) FROM d WHERE d.s <= b.bound) AS n, "
                    "(SELECT coalesce(sum(s), 0) FROM d) AS total "
                    "FROM unnest(%s::float8[]) AS b(bound) ORDER BY b.bound",
                    (bounds,),
                )
            ).fetchall()
        return JobMetrics(
            by_status={str(r["status"]): int(r["n"]) for r in rows},
            queued=int(queue["queued"]) if queue else 0,
            due=int(queue["due"]) if queue else 0,
            duration_buckets=[(float(r["bound"]), int(r["n"])) for r in hist],
            duration_sum_s=float(hist[0]["total"]) if hist else 0.0,
        )
