"""Read queries the operator console needs beyond the other stores: a few rows by id, the
queue page (active jobs pinned, then recent history) and the header figures at a given time.

Every query here is read-only; the console changes state only through the other stores.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from psycopg.rows import tuple_row

from deployq.models import Job
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store


@dataclass(frozen=True)
class HeaderStats:
    """The figures in the console's header, as of ``now``."""

    queued: int
    running: int
    succeeded_24h: int
    failed_24h: int
    p95_duration_s: float | None
    oldest_queued_at: datetime | None
    p95_wait_s: float | None = None
    """wait (enqueued to start) of the jobs that ended in the last 24 h, 95th percentile"""

    @property
    def success_rate_24h(self) -> float | None:
        """Succeeded / (succeeded + failed + timed out) over the last 24 h; None when none ended."""
        ended = self.succeeded_24h + self.failed_24h
        return self.succeeded_24h / ended if ended else None


class ConsoleStore:
    """``store.console``: the console's read side."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def jobs_by_ids(self, ids: Iterable[int]) -> list[Job]:
        """The jobs with these ids that exist (one query, any order)."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("jobs_by_ids"), {"ids": wanted})).fetchall()
        return [Job.model_validate(r) for r in rows]

    async def queue_page(self, *, active_limit: int, history_limit: int) -> list[Job]:
        """Running jobs (up to ``active_limit``, newest first), queued ones in claim order
        (up to ``active_limit``), then the newest ``history_limit`` finished ones."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    sql("console_queue_page"), {"active": active_limit, "history": history_limit}
                )
            ).fetchall()
        return [Job.model_validate(r) for r in rows]

    async def start_estimates(self, now: datetime) -> dict[int, float]:
        """Seconds from ``now`` until each queued job should start (``store.estimates``:
        free build slots, per-app serialisation, each app's median build time)."""
        return await self.store.estimates.start_times(now)

    async def header_stats(self, now: datetime) -> HeaderStats:
        """Queue figures, with the 24-hour window ending at ``now`` (so a frozen clock gives
        the same figures every time)."""
        async with self.store.connection() as conn:
            live = await (await conn.execute(sql("console_live"))).fetchone()
        assert live is not None
        # the last day from the statistics views, as `deployq stats` computes it
        day = await self.store.stats.figures(since=now - timedelta(hours=24), until=now)
        return HeaderStats(
            queued=int(live["queued"]),
            running=int(live["running"]),
            succeeded_24h=day.succeeded,
            failed_24h=day.failed,
            p95_duration_s=day.p95_build_s,
            oldest_queued_at=live["oldest_queued_at"],
            p95_wait_s=day.p95_wait_s,
        )

    async def log_lines(
        self, job_id: int, *, after: int = 0, limit: int, last: bool = False
    ) -> tuple[int, list[str]]:
        """Log text only (no models: the console shows thousands of lines at once).

        The first ``limit`` lines after seq ``after``, or with ``last`` the last ``limit``
        lines; returns the seq of the last line returned (``after`` when none) and the lines.
        """
        query = sql("log_text_last") if last else sql("log_text")
        params = {"job": job_id, "after": after, "limit": limit}
        async with self.store.connection() as conn:
            cur = conn.cursor(row_factory=tuple_row)
            rows = await (await cur.execute(query, params)).fetchall()
        if not rows:
            return after, []
        return int(rows[-1][0]), [str(r[1]) for r in rows]
