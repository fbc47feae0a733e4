"""``store.scans``: the vulnerability scans of pushed images (docs/harbor.md).

The worker records the scan it asked Harbor for (``record``, fenced on its attempt); the
background collector (``deployq.worker.scans``) takes the due ones (``claim_due``, SKIP
LOCKED, so several workers share them), looks, and either waits (``wait``) or attaches the
result (``finish``). Every change lands on the job (``jobs.scan_summary``) and NOTIFYs; a
result also adds a ``scan`` line to the job's timeline (and so to the live feed).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg.types.json import Jsonb

from deployq.errors import LostJob
from deployq.models import JobScan
from deployq.scans import ScanState, scan_text, state_of
from deployq.store._job_common import Lease, StorePart
from deployq.store._queries import sql


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=max(0.0, value))


class ScanStore(StorePart):
    async def record(
        self,
        lease: Lease,
        *,
        project: str,
        repository: str,
        digest: str,
        summary: dict[str, Any],
        first_poll_s: float,
        deadline_s: float,
    ) -> None:
        """The scan of the running attempt's image: asked for (``requested``, the collector
        looks after ``first_poll_s``), or already final. LostJob when the attempt is not
        running any more."""
        state = state_of(summary) or ScanState.REQUESTED
        params = {
            "job_id": lease.id,
            "attempt": lease.attempt,
            "project": project,
            "repository": repository,
            "digest": digest,
            "state": state.value,
            "reason": summary.get("reason"),
            "summary": Jsonb(summary),
            "message": scan_text(summary),
            "first_poll": _seconds(first_poll_s),
            "deadline": _seconds(deadline_s),
        }
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("scan_record"), params)).fetchone()
        if row is None:
            raise LostJob(f"job #{lease.id} attempt {lease.attempt} is no longer ours")

    async def claim_due(self, limit: int, *, lease_s: float) -> list[JobScan]:
        """Up to ``limit`` scans due for a look, kept from other collectors for ``lease_s``."""
        params = {"limit": limit, "lease": _seconds(lease_s)}
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("scans_claim_due"), params)).fetchall()
        return [JobScan.model_validate(r) for r in rows]

    async def seconds_until_due(self) -> float | None:
        """Until the next look is due (0 when one is); None when no scan is pending."""
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("scans_next_due_in"))).fetchone()
        wait = row["wait"] if row else None
        return None if wait is None else max(0.0, float(wait))

    async def wait(
        self, job_id: int, summary: dict[str, Any], *, delay_s: float, note: str | None = None
    ) -> None:
        """No result yet: look again in ``delay_s``; ``note`` says why (a failed look)."""
        state = state_of(summary) or ScanState.RUNNING
        params = {
            "job_id": job_id,
            "state": state.value,
            "reason": note,
            "summary": Jsonb(summary),
            "delay": _seconds(delay_s),
        }
        async with self.store.connection() as conn:
            await conn.execute(sql("scan_wait"), params)

    async def finish(self, job_id: int, summary: dict[str, Any]) -> bool:
        """Attach a final result to the job; False when it was final already."""
        state = state_of(summary)
        assert state is not None and state.is_final, summary
        params = {
            "job_id": job_id,
            "state": state.value,
            "reason": summary.get("reason"),
            "summary": Jsonb(summary),
            "message": scan_text(summary),
        }
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("scan_finish"), params)).fetchone()
        return row is not None
