"""The scan collector: attaches Harbor's vulnerability scan results to finished jobs.

The pipeline asks Harbor for a scan after the push and records it (``store.scans.record``);
the job finishes without waiting. This component, run by every worker process beside the
pool, takes the scans due for a look (``store.scans.claim_due``, shared between processes
with SKIP LOCKED), looks once each, and attaches the result to the job, or looks again later:
the pause doubles from DEPLOYQ_HARBOR_SCAN_POLL up to a minute. No result by
DEPLOYQ_HARBOR_SCAN_DEADLINE (or Harbor lost the artifact) records the scan unavailable,
with the reason. Nothing here fails or retries a job.

Like the other components it runs under ``deployq.supervisor``: a database outage ends a
round (the supervisor starts it again when the database answers); a scan taken by a round
that died is looked at again once its claim (LOOK_LEASE_S) runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from deployq.durations import setting
from deployq.errors import NotFound, RegistryError
from deployq.models import App, JobScan
from deployq.registry import HarborClient, HarborError
from deployq.scans import scan_text, state_of, unavailable
from deployq.store import Store

log = logging.getLogger(__name__)

#: scans looked at in one round (the looks run concurrently)
LOOK_BATCH = 20
#: a scan taken for a look is not taken again for this long (a dead collector's claim)
LOOK_LEASE_S = 120.0
#: longest pause between two looks at one scan
MAX_POLL_S = 60.0


def next_poll_s(first_s: float, polls: int) -> float:
    """The pause after the ``polls``-th look: ``first_s`` doubled each time, at most a minute."""
    return min(MAX_POLL_S, first_s * 2.0 ** max(0, polls))


async def look(harbor: HarborClient, scan: JobScan) -> tuple[dict[str, Any] | None, str | None]:
    """One look at a scan: ``(summary, None)``, or ``(None, why)`` when Harbor did not answer
    usefully this time (the caller looks again). An artifact Harbor no longer has is final."""
    try:
        return await harbor.scan_overview(scan.project, scan.repository, scan.digest), None
    except HarborError as exc:
        if exc.status == 404:
            where = f"{scan.project}/{scan.repository}@{scan.digest[:19]}"
            return unavailable(f"Harbor has no artifact {where} (HTTP 404)"), None
        return None, exc.message
    except RegistryError as exc:
        return None, exc.message


class ScanCollector:
    """``await ScanCollector(store).run(stop)``: collect scan results until ``stop``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.settings = store.settings

    async def run(self, stop: asyncio.Event) -> None:
        log.info("scan collector started")
        try:
            while not stop.is_set():
                pause = await self.round()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await stop.wait()
        finally:
            log.info("scan collector stopped")

    async def round(self) -> float:
        """Look at every due scan (LOOK_BATCH at a time); how long to pause after."""
        scans = await self.store.scans.claim_due(LOOK_BATCH, lease_s=LOOK_LEASE_S)
        if scans:
            # every look ends before the round does; the first error (an outage) is raised
            ends = await asyncio.gather(*(self._collect(s) for s in scans), return_exceptions=True)
            for end in ends:
                if isinstance(end, BaseException):
                    raise end
            if len(scans) == LOOK_BATCH:
                return 0.0
        # scans recorded by any worker are due DEPLOYQ_HARBOR_SCAN_POLL after their request
        idle = self.settings.harbor_scan_poll
        wait = await self.store.scans.seconds_until_due()
        return idle if wait is None else min(wait, idle)

    async def _collect(self, scan: JobScan) -> None:
        summary, problem = await look(self._harbor(await self._app(scan)), scan)
        state = state_of(summary)
        if summary is not None and state is not None and state.is_final:
            await self._finish(scan, summary)
        elif scan.overdue:
            deadline = setting((scan.deadline_at - scan.requested_at).total_seconds())
            why = f"no result within {deadline}" + (f" (last look: {problem})" if problem else "")
            await self._finish(scan, unavailable(why))
        else:
            if problem is not None:
                log.warning("job #%d: cannot look at its scan yet: %s", scan.job_id, problem)
            await self.store.scans.wait(
                scan.job_id,
                summary or {"state": scan.state},
                delay_s=next_poll_s(self.settings.harbor_scan_poll, scan.polls),
                note=problem,
            )

    async def _finish(self, scan: JobScan, summary: dict[str, Any]) -> None:
        if await self.store.scans.finish(scan.job_id, summary):
            log.info("job #%d: %s", scan.job_id, scan_text(summary))

    async def _app(self, scan: JobScan) -> App | None:
        """The job's app, whose registry login may be its own; None once it was removed."""
        if scan.app_id is None:
            return None
        try:
            return await self.store.apps.get_by_id(scan.app_id)
        except NotFound:
            return None

    def _harbor(self, app: App | None) -> HarborClient:
        return HarborClient.from_settings(self.settings, app)
