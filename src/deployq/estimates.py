"""When will a queued job start, and how long will a build take: a simulation of the queue.

Pure functions (the store feeds them rows): each job is expected to take its app's usual
time (the median of its last successful builds). The running jobs hold their build slots
until their expected end; the queued ones are placed in the order the claim takes them
(priority, then due time, then id), each as soon as three things hold: it is due, its app
has a free place within its concurrency (one at a time by default, so an app's pushes wait
for each other) and a build slot is free (the healthy, non-draining servers' capacity). A
job that must wait for its app leaves the slot it could not use to the jobs behind it.
Server architecture and labels are not simulated: an estimate, not a promise. With no
healthy server there is no estimate.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable
from dataclasses import dataclass

#: how many recent successful builds of an app the expected duration is the median of
DURATION_SAMPLE = 20
#: the expected duration when neither the app nor any other app has a successful build
DEFAULT_DURATION_S = 120.0
#: the least a running job is expected to still take (it runs over its usual time)
MIN_REMAINING_S = 1.0


@dataclass(frozen=True)
class Running:
    job_id: int
    app_id: int | None
    elapsed_s: float


@dataclass(frozen=True)
class Queued:
    """A queued job, in claim order."""

    job_id: int
    app_id: int | None
    due_in_s: float
    concurrency: int


def expected_starts(
    capacity: int,
    running: Iterable[Running],
    queued: Iterable[Queued],
    duration_s: dict[int | None, float],
    *,
    fallback_s: float = DEFAULT_DURATION_S,
) -> dict[int, float]:
    """Seconds from now until each queued job is expected to start; empty when no build
    slot takes jobs (no healthy server: no estimate is honest)."""
    if capacity <= 0:
        return {}
    slots = [0.0] * capacity  # when each build slot is free, sorted
    busy: dict[int | None, list[float]] = {}  # app -> end times of its jobs (a heap)
    for run in running:
        end = max(MIN_REMAINING_S, duration_s.get(run.app_id, fallback_s) - run.elapsed_s)
        _take_slot(slots, 0.0, end)
        heapq.heappush(busy.setdefault(run.app_id, []), end)
    starts: dict[int, float] = {}
    for job in queued:
        took = duration_s.get(job.app_id, fallback_s)
        mine = busy.setdefault(job.app_id, [])  # at most `concurrency` ends: its places
        full = len(mine) >= max(job.concurrency, 1)
        ready = max(job.due_in_s, mine[0] if full else 0.0)
        start = _take_slot(slots, ready, took)
        if full:
            heapq.heappop(mine)
        heapq.heappush(mine, start + took)
        starts[job.job_id] = start
    return starts


def _take_slot(slots: list[float], ready: float, duration: float) -> float:
    """Put a job ready at ``ready`` on a slot for ``duration``; return when it starts. It
    takes the slot that frees last among those free by then (leaving the earlier ones to
    the jobs behind it), or else the one that frees first."""
    i = bisect.bisect_right(slots, ready)
    index = i - 1 if i > 0 else 0
    start = max(ready, slots[index])
    del slots[index]
    bisect.insort(slots, start + duration)
    return start
