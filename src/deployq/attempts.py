"""How long a job took: from its first claim to its end, and each attempt's own time.

``started_at`` on the job row is the last attempt's start, so it alone undercounts a job that
was retried (6 s shown for a job that took 82 s). The timeline has every claim: an attempt runs
from its ``claimed`` event to the next change of status away from ``running``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from deployq.models import Job, JobEvent


@dataclass(frozen=True)
class AttemptTime:
    attempt: int
    seconds: float | None
    """None while it runs."""
    outcome: str | None


@dataclass(frozen=True)
class JobTimes:
    total_s: float | None
    """First claim to finish (to now's last update while running); None before any claim."""
    attempts: list[AttemptTime]


def job_times(job: Job, events: list[JobEvent]) -> JobTimes:
    """Total and per-attempt times of ``job`` from its timeline (``store.jobs.events``)."""
    attempts: list[AttemptTime] = []
    started: datetime | None = None
    first: datetime | None = None
    for event in events:
        at = event.at
        if event.kind == "claimed" or event.to_status == "running":
            if started is None:
                started = at
                first = first or at
            continue
        if started is not None and event.from_status == "running":
            attempts.append(
                AttemptTime(len(attempts) + 1, (at - started).total_seconds(), event.to_status)
            )
            started = None
    if started is not None:
        attempts.append(AttemptTime(len(attempts) + 1, None, None))
    if first is None:
        first = job.started_at
    if first is None:
        return JobTimes(None, attempts)
    end = job.finished_at or job.updated_at
    return JobTimes(max(0.0, (end - first).total_seconds()), attempts)
