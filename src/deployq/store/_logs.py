"""Job logs: numbered lines, so readers resume from an offset and follow with NOTIFY."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployq.errors import LostJob
from deployq.models import LogLine
from deployq.store._channels import CHANNEL_LOGS, dumps

if TYPE_CHECKING:
    from deployq.store._store import Store

_APPEND = """
WITH owner AS (
    SELECT id FROM jobs WHERE id = %(job)s
    AND (%(attempt)s::int IS NULL OR (attempt = %(attempt)s AND status = 'running'))
    FOR UPDATE
), base AS (
    SELECT coalesce(max(seq), 0) AS seq FROM job_logs WHERE job_id = %(job)s
)
INSERT INTO job_logs (job_id, seq, stream, line)
SELECT owner.id, base.seq + l.n, %(stream)s, l.line
FROM owner, base, unnest(%(lines)s::text[]) WITH ORDINALITY AS l(line, n)
RETURNING seq
"""


class LogStore:
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
        async with self.store.connection() as conn, conn.transaction():
            rows = await (
                await conn.execute(
                    _APPEND,
                    {"job": job_id, "attempt": attempt, "stream": stream, "lines": lines},
                )
            ).fetchall()
            if not rows:
                if attempt is not None:
                    raise LostJob(f"job #{job_id} attempt {attempt} is no longer ours")
                return 0
            last = max(int(r["seq"]) for r in rows)
            await conn.execute(
                "SELECT pg_notify(%s, %s)", (CHANNEL_LOGS, dumps({"job": job_id, "seq": last}))
            )
        return last

    async def read(self, job_id: int, *, after: int = 0, limit: int = 10_000) -> list[LogLine]:
        """Lines with seq > after, in order."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM job_logs WHERE job_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                    (job_id, after, limit),
                )
            ).fetchall()
        return [LogLine.model_validate(r) for r in rows]

    async def tail(self, job_id: int, count: int) -> list[LogLine]:
        """The last ``count`` lines, in order."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM (SELECT * FROM job_logs WHERE job_id = %s "
                    "ORDER BY seq DESC LIMIT %s) t ORDER BY seq",
                    (job_id, count),
                )
            ).fetchall()
        return [LogLine.model_validate(r) for r in rows]

    async def last_seq(self, job_id: int) -> int:
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT coalesce(max(seq), 0) AS seq FROM job_logs WHERE job_id = %s",
                    (job_id,),
                )
            ).fetchone()
        return int(row["seq"]) if row else 0
