"""Statistics: the views of sql/004 and what ``store.stats``, the CLI and the API make of them,
checked against figures this test computes itself from the jobs it created."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from statistics import mean
from typing import Any

import pytest

from deployq.models import JobStatus, Step
from deployq.store import Outcome, Store
from integration.queue_helpers import SUCCESS, add_app, add_server, claim_one, enqueue

FAILED = Outcome(JobStatus.FAILED, error="exit 1", retryable=False)
TIMED_OUT = Outcome(JobStatus.TIMED_OUT, error="took too long", retryable=False)

# (app, outcome, wait s, build s): what each finished job did
FINISHED = [
    ("web", SUCCESS, 2.0, 30.0),
    ("web", SUCCESS, 4.0, 50.0),
    ("web", SUCCESS, 10.0, 40.0),
    ("web", FAILED, 6.0, 12.0),
    ("api", SUCCESS, 1.0, 100.0),
    ("api", TIMED_OUT, 20.0, 300.0),
]


def p95(values: list[float]) -> float:
    """percentile_cont(0.95): linear between the two closest ranks."""
    ordered = sorted(values)
    rank = 0.95 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def _finished_jobs(store: Store, ended_at: datetime) -> None:
    """The FINISHED jobs, one at a time, with their times set to the figures above."""
    await add_server(store, "local", capacity=4)
    for name in ("web", "api"):
        await add_app(store, name)
    for app, outcome, wait_s, build_s in FINISHED:
        await enqueue(store, app)
        lease = await claim_one(store)
        await store.leases.finish(lease, outcome)
        started = ended_at - timedelta(seconds=build_s)
        async with store.pool.connection() as conn:
            await conn.execute(
                "UPDATE jobs SET enqueued_at = %s, started_at = %s, finished_at = %s WHERE id = %s",
                (started - timedelta(seconds=wait_s), started, ended_at, lease.id),
            )
    # cancelled while queued: it counts as a job, not as a wait or a build
    cancelled = await enqueue(store, "api", branch="dev")
    await store.jobs.cancel(cancelled, actor="tester")


def _expected(app: str | None) -> dict[str, Any]:
    rows = [r for r in FINISHED if app is None or r[0] == app]
    waits = [r[2] for r in rows]
    builds = [r[3] for r in rows]
    succeeded = sum(1 for r in rows if r[1] is SUCCESS)
    return {
        "jobs": len(rows) + (1 if app in (None, "api") else 0),
        "succeeded": succeeded,
        "failed": len(rows) - succeeded,
        "success_rate": round(succeeded / len(rows), 4),
        "avg_wait_s": mean(waits),
        "p95_wait_s": p95(waits),
        "avg_build_s": mean(builds),
        "p95_build_s": p95(builds),
    }


def _close(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, abs=1e-3), key


async def test_build_performance_summary_has_the_figures_of_each_app_and_day(
    store: Store,
) -> None:
    ended_at = datetime.now(UTC) - timedelta(minutes=5)
    await _finished_jobs(store, ended_at)

    async with store.pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT * FROM build_performance_summary ORDER BY app")
        ).fetchall()

    assert [r["app"] for r in rows] == ["api", "web"]
    for row in rows:
        assert row["day"] == ended_at.date()
        _close(row, _expected(row["app"]))
    assert rows[0]["cancelled"] == 1 and rows[1]["cancelled"] == 0


async def test_stats_summary_covers_the_window_all_apps_or_one(store: Store) -> None:
    ended_at = datetime.now(UTC) - timedelta(minutes=5)
    await _finished_jobs(store, ended_at)
    old = await enqueue(store, "web")
    await store.leases.finish(await claim_one(store), SUCCESS)
    async with store.pool.connection() as conn:  # ended 3 days ago: outside a 1-day window
        await conn.execute(
            "UPDATE jobs SET enqueued_at = now() - interval '3 days 1 minute', "
            "started_at = now() - interval '3 days 30 seconds', "
            "finished_at = now() - interval '3 days' WHERE id = %s",
            (old,),
        )

    everything = await store.stats.summary(window=timedelta(days=1))
    web = await store.stats.summary(app="web", window=timedelta(days=1))
    week = await store.stats.summary(window=timedelta(days=7))

    _close(everything.model_dump(), _expected(None))
    _close(web.model_dump(), _expected("web"))
    assert week.jobs == everything.jobs + 1
    assert [(d.app, d.day) for d in web.days] == [("web", ended_at.date())]


async def test_active_builds_shows_the_wait_so_far_server_step_and_progress(
    store: Store,
) -> None:
    await add_server(store, "local", capacity=1)
    await add_app(store, "web")
    running = await enqueue(store, "web")
    lease = await claim_one(store)
    await store.leases.set_progress(lease, step=Step.BUILD, progress=40)
    queued = await enqueue(store, "web", branch="dev")
    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET enqueued_at = now() - interval '90 seconds' WHERE id = %s", (queued,)
        )
        rows = {
            r["id"]: r for r in await (await conn.execute("SELECT * FROM active_builds")).fetchall()
        }
    stats = await store.stats.summary(window=timedelta(days=1))

    assert set(rows) == {running, queued}
    assert rows[running]["status"] == "running" and rows[running]["server"] == "local"
    assert rows[running]["step"] == "build" and rows[running]["progress"] == 40
    assert rows[queued]["status"] == "queued" and rows[queued]["server"] is None
    assert 90 <= rows[queued]["wait_s"] < 150
    assert stats.queued == 1 and stats.running == 1
    assert stats.oldest_wait_s is not None and 90 <= stats.oldest_wait_s < 150


async def test_metrics_histograms_count_wait_and_build_times(store: Store) -> None:
    await _finished_jobs(store, datetime.now(UTC) - timedelta(minutes=5))

    timings = await store.stats.timings()

    waits = [r[2] for r in FINISHED]
    builds = [r[3] for r in FINISHED]
    for bound, count in timings.wait.buckets:
        assert count == sum(1 for w in waits if w <= bound), bound
    for bound, count in timings.build.buckets:
        assert count == sum(1 for b in builds if b <= bound), bound
    assert timings.wait.buckets[-1] == (math.inf, len(waits))
    assert timings.wait.sum_s == pytest.approx(sum(waits))
    assert timings.build.sum_s == pytest.approx(sum(builds))


async def test_a_rollback_builds_nothing_so_it_is_not_in_the_statistics(store: Store) -> None:
    ended_at = datetime.now(UTC) - timedelta(minutes=5)
    await _finished_jobs(store, ended_at)
    rollback = await enqueue(store, "web", branch="rollback")
    await store.leases.finish(await claim_one(store), SUCCESS)
    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET deploy_only = true, started_at = finished_at - interval '1 hour' "
            "WHERE id = %s",
            (rollback,),
        )
        [web] = await (
            await conn.execute("SELECT * FROM build_performance_summary WHERE app = 'web'")
        ).fetchall()
    usual = await store.estimates.usual_durations([None])

    _close(web, _expected("web"))
    assert usual[None].duration_s == pytest.approx(45.0)  # median of FINISHED's successes
