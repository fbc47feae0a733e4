"""Job logs: numbered lines, so readers resume from an offset and follow with NOTIFY."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployq.errors import LostJob
from deployq.models import LogLine
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store


class LogStore:
    """``store.logs``: the build logs of jobs."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def append(
        self, job_id: int, lines: list[str], *, attempt: int | None = None, stream: str = "build"
    ) -> int:
        """Store lines (already redacted) after the job's last one; return the last seq.

        With ``attempt`` the write is fenced: LostJob when the job is no longer that attempt
        of a running job.
        """
        if not lines:
            return await self.last_seq(job_id)
        params = {"job": job_id, "attempt": attempt, "stream": stream, "lines": lines}
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("log_append"), params)).fetchone()
        if row is None:
            if attempt is not None:
                raise LostJob(f"job #{job_id} attempt {attempt} is no longer ours")
            return 0
        return int(row["seq"])

    async def read(self, job_id: int, *, after: int = 0, limit: int = 10_000) -> list[LogLine]:
        """Lines with seq > after, in order."""
        params = {"job": job_id, "after": after, "limit": limit}
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("log_read"), params)).fetchall()
        return [LogLine.model_validate(r) for r in rows]

    async def tail(self, job_id: int, count: int) -> list[LogLine]:
        """The last ``count`` lines, in order."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(sql("log_tail"), {"job": job_id, "limit": count})
            ).fetchall()
        return [LogLine.model_validate(r) for r in rows]

    async def last_seq(self, job_id: int) -> int:
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("log_last_seq"), {"job": job_id})).fetchone()
        return int(row["seq"]) if row else 0
