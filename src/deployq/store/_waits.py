"""Why a queued job is waiting, in the words every client shows.

The first reason that applies wins: a retry delay, the app's concurrency, the servers
(none fits, draining, unhealthy, only on a host with no worker, full), what a worker
recorded (e.g. low disk), and finally the jobs ahead of it.
"""

from __future__ import annotations

import builtins
from datetime import timedelta
from typing import Any

from deployq.durations import elapsed
from deployq.store._job_common import StorePart
from deployq.store._queries import sql


class Waits(StorePart):
    """``store.waits``: why queued jobs wait, and when the next one is due."""

    async def reasons(self, job_ids: builtins.list[int]) -> dict[int, str]:
        """job id -> why it waits, for the queued ones among ``job_ids``."""
        if not job_ids:
            return {}
        async with self.store.connection() as conn:
            jobs = await (await conn.execute(sql("wait_jobs"), {"ids": list(job_ids)})).fetchall()
            if not jobs:
                return {}
            # a worker heartbeats every lease_ttl / 3: one missing for a whole ttl is gone
            alive = timedelta(seconds=self.store.settings.lease_ttl)
            servers = await (await conn.execute(sql("wait_servers"), {"alive": alive})).fetchall()
        return {int(j["id"]): _reason(j, servers) for j in jobs}

    async def reason(self, job_id: int) -> str | None:
        """Why this job waits; None unless it is queued."""
        return (await self.reasons([job_id])).get(job_id)

    async def set_reason(self, job_ids: builtins.list[int], reason: str | None) -> int:
        """Record why queued jobs cannot start (a worker's view, e.g. "low disk on local");
        None clears it. Returns how many queued jobs changed."""
        async with self.store.connection() as conn:
            cur = await conn.execute(
                sql("wait_reason_set"), {"reason": reason, "ids": list(job_ids)}
            )
        return cur.rowcount

    async def seconds_to_next_due(self) -> float | None:
        """Seconds until the earliest queued job with a future run_after becomes due."""
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("next_due_in"))).fetchone()
        if row is None or row["wait"] is None:
            return None
        return max(0.0, float(row["wait"]))

    async def set_due_reason(self, reason: str | None) -> int:
        """Say why due queued jobs are not being started (e.g. low disk); None clears it."""
        async with self.store.connection() as conn:
            cur = await conn.execute(sql("wait_reason_set_due"), {"reason": reason})
        return cur.rowcount


def _reason(job: dict[str, Any], servers: list[dict[str, Any]]) -> str:
    due_in = float(job["due_in_s"])
    if due_in >= 1:
        verb = "retry" if int(job["attempt"]) > 0 else "starts"
        return f"{verb} in {elapsed(due_in)}"
    running = [int(i) for i in job["app_running"]]
    concurrency = job["concurrency"]
    if concurrency is not None and len(running) >= int(concurrency):
        if int(concurrency) == 1:
            return f"app serialised behind #{running[0]}"
        shown = ", ".join(f"#{i}" for i in running)
        return f"app at its concurrency limit of {concurrency} ({shown} running)"
    server_reason = _server_reason(job, servers)
    if server_reason is not None:
        return server_reason
    if job["wait_reason"]:
        return str(job["wait_reason"])
    ahead = int(job["ahead"])
    if ahead:
        return f"{ahead} job{'s' if ahead != 1 else ''} ahead in the queue"
    return "next in line: waiting for a worker to claim it"


def _server_reason(job: dict[str, Any], servers: list[dict[str, Any]]) -> str | None:
    arch = job["required_arch"] or None
    labels = set(job["required_labels"] or [])
    if not servers:
        return "no build server registered: add one with `deployq server add`"
    fitting = [
        s for s in servers if (arch is None or s["arch"] == arch) and labels <= set(s["labels"])
    ]
    wanted = " and ".join(
        part
        for part in (
            f"arch {arch}" if arch else "",
            f"label{'s' if len(labels) > 1 else ''} {', '.join(sorted(labels))}" if labels else "",
        )
        if part
    )
    if not fitting:
        return f"no healthy server with {wanted}" if wanted else "no build server fits"
    usable = [s for s in fitting if s["healthy"] and not s["draining"]]
    if not usable:
        draining = [s["name"] for s in fitting if s["draining"]]
        if draining:
            names = ", ".join(draining)
            return f"server{'s' if len(draining) > 1 else ''} {names} draining"
        return f"no healthy server with {wanted}" if wanted else "no healthy build server"
    served = [s for s in usable if s["host_alive"]]
    if not served:
        names = ", ".join(f"{s['name']} (host {s['host_id']})" for s in usable)
        return (
            f"no worker runs on the host of {names}: only that host's workers build on its "
            "unix:// engine; start `deployq worker` there"
        )
    if all(int(s["running"]) >= int(s["capacity"]) for s in served):
        return "all matching servers full"
    return None
