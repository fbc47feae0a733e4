"""``store.stats``: wait and build times, success rates, per app and day, from the SQL views
``finished_builds``, ``build_performance_summary`` and ``active_builds`` (sql/004).

The CLI (``deployq stats``), the API (``GET /api/v1/stats``), ``/metrics`` and the console
header all read these, so they show the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from deployq.models import BuildFigures, BuildStats, DayFigures
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store

#: upper bounds (seconds) of the wait and build-time histograms of /metrics
HISTOGRAM_BUCKETS_S = (5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class Histogram:
    """Cumulative (upper bound, count) pairs, the last bound +Inf, and the sum of values."""

    buckets: list[tuple[float, int]]
    sum_s: float


@dataclass(frozen=True)
class Timings:
    wait: Histogram
    build: Histogram


class StatsStore:
    """Figures over a window that ends now (or at ``until``, for a frozen clock)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def figures(
        self, *, app: str | None = None, since: datetime, until: datetime
    ) -> BuildFigures:
        """The jobs of ``app`` (or all) that ended in (since, until]."""
        params = {"app": app, "since": since, "until": until}
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("stats_window"), params)).fetchone()
        assert row is not None
        return _figures(row)

    async def summary(
        self, *, app: str | None = None, window: timedelta, until: datetime | None = None
    ) -> BuildStats:
        """The window's figures, the queue now, and one row per app and day of the window."""
        async with self.store.connection() as conn:
            if until is None:
                row = await (await conn.execute(sql("stats_now"))).fetchone()
                assert row is not None
                until = row["now"]
            assert until is not None
            params = {"app": app, "since": until - window, "until": until}
            total = await (await conn.execute(sql("stats_window"), params)).fetchone()
            days = await (await conn.execute(sql("stats_days"), params)).fetchall()
            active = await (await conn.execute(sql("stats_active"), params)).fetchone()
        assert total is not None and active is not None
        return BuildStats(
            **_figures(total).model_dump(),
            app=app,
            since=until - window,
            until=until,
            queued=int(active["queued"]),
            running=int(active["running"]),
            oldest_wait_s=_round(active["oldest_wait_s"]),
            days=[DayFigures(**_figures(d).model_dump(), app=d["app"], day=d["day"]) for d in days],
        )

    async def timings(self) -> Timings:
        """Wait and build-time histograms over every finished job, for /metrics."""
        bounds = [*HISTOGRAM_BUCKETS_S, float("inf")]
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(sql("stats_histograms"), {"bounds": bounds})
            ).fetchall()
            sums = await (await conn.execute(sql("stats_sums"))).fetchone()
        assert sums is not None
        return Timings(
            wait=Histogram(
                [(float(r["bound"]), int(r["wait_n"])) for r in rows], float(sums["wait_sum"])
            ),
            build=Histogram(
                [(float(r["bound"]), int(r["build_n"])) for r in rows], float(sums["build_sum"])
            ),
        )


def _figures(row: dict[str, Any]) -> BuildFigures:
    succeeded, failed = int(row["succeeded"]), int(row["failed"])
    return BuildFigures(
        jobs=int(row["jobs"]),
        succeeded=succeeded,
        failed=failed,
        cancelled=int(row["cancelled"]),
        success_rate=round(succeeded / (succeeded + failed), 4) if succeeded + failed else None,
        avg_wait_s=_round(row["avg_wait_s"]),
        p95_wait_s=_round(row["p95_wait_s"]),
        avg_build_s=_round(row["avg_build_s"]),
        p95_build_s=_round(row["p95_build_s"]),
    )


def _round(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)
