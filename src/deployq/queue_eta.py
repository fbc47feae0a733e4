"""When queued jobs should start: a small simulation of the claim loop.

Jobs are taken in claim order (priority, then due time, then id). A job starts when a build
slot is free, its app has a free slot under its concurrency (default 1: the pushes of an app
build one after another, so a job behind a running build of the same app starts after it),
and it is due (retry backoff). Each build is expected to take its app's median build time.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: assumed build time of an app with no finished build to learn from
DEFAULT_BUILD_S = 120.0
#: a running build past its expected time is assumed to end this soon
OVERDUE_REMAINING_S = 1.0


@dataclass(frozen=True)
class RunningBuild:
    app: str
    elapsed_s: float


@dataclass(frozen=True)
class QueuedJob:
    job_id: int
    app: str
    due_in_s: float = 0.0


def start_estimates(
    queued: Sequence[QueuedJob],
    running: Sequence[RunningBuild],
    *,
    slots: int,
    build_s: Mapping[str, float],
    concurrency: Mapping[str, int | None],
    default_build_s: float = DEFAULT_BUILD_S,
) -> dict[int, float]:
    """Seconds from now until each queued job (given in claim order) should start; empty
    when no build slot exists (no healthy server takes jobs: no estimate is honest)."""
    if slots <= 0:
        return {}

    def duration(app: str) -> float:
        return build_s.get(app) or default_build_s

    busy = sorted(max(OVERDUE_REMAINING_S, duration(r.app) - r.elapsed_s) for r in running)
    free_at = sorted([0.0] * max(0, slots - len(busy)) + busy)
    app_free: dict[str, list[float]] = {}

    def app_slots(app: str) -> list[float]:
        if app not in app_free:
            limit = concurrency.get(app, 1)
            mine = [
                max(OVERDUE_REMAINING_S, duration(r.app) - r.elapsed_s)
                for r in running
                if r.app == app
            ]
            if limit is None:
                app_free[app] = [0.0]  # no limit: never waits for its own app
            else:
                app_free[app] = sorted(mine + [0.0] * max(0, limit - len(mine)))[: max(limit, 1)]
        return app_free[app]

    starts: dict[int, float] = {}
    for job in queued:
        mine = app_slots(job.app)
        ready = max(mine[0], job.due_in_s, 0.0)
        # the slot that frees last before the job is ready (keeps earlier slots for the
        # jobs behind it), else the one that frees first
        index = bisect.bisect_right(free_at, ready) - 1
        slot = free_at.pop(index if index >= 0 else 0)
        start = max(slot, ready)
        end = start + duration(job.app)
        bisect.insort(free_at, end)
        if concurrency.get(job.app, 1) is not None:
            mine[0] = end
            mine.sort()
        starts[job.job_id] = start
    return starts
