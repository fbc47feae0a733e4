"""Property-based test of the job state machine (hypothesis): random sequences of enqueue,
claim, heartbeat, finish, cancel, retry, release and lease expiry never reach an illegal
state, and fencing rejects exactly the writes of workers that lost their job."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from deployq.config import Settings
from deployq.errors import Conflict, LostJob
from deployq.models import JobStatus
from deployq.store import Lease, Outcome, Store
from integration.queue_helpers import add_app, add_server, push

T = TypeVar("T")

OUTCOMES = [
    Outcome(JobStatus.SUCCEEDED, image_digest="sha256:" + "b" * 64),
    Outcome(JobStatus.FAILED, error="build failed"),
    Outcome(JobStatus.FAILED, error="no Dockerfile", retryable=False),
    Outcome(JobStatus.TIMED_OUT, error="took too long"),
    Outcome(JobStatus.CANCELLED, error="cancelled"),
]
CAPACITY = {"one": 1, "two": 2}
CONCURRENCY = {"serial": 1, "pair": 2}

_INVARIANTS = """
SELECT
  (SELECT count(*) FROM jobs WHERE attempt > max_attempts) AS over_attempts,
  (SELECT count(*) FROM jobs WHERE (status = 'running') <> (lease_expires_at IS NOT NULL))
    AS lease_mismatch,
  (SELECT count(*) FROM jobs WHERE (finished_at IS NOT NULL) <> (status NOT IN
     ('queued', 'running'))) AS finished_mismatch,
  (SELECT count(*) FROM jobs WHERE status = 'running' AND (server_id IS NULL
     OR worker_id IS NULL)) AS running_without_owner,
  (SELECT count(*) FROM build_servers s WHERE s.capacity < (SELECT count(*) FROM jobs j
     WHERE j.server_id = s.id AND j.status = 'running')) AS servers_over_capacity,
  (SELECT count(*) FROM apps a WHERE a.concurrency < (SELECT count(*) FROM jobs j
     WHERE j.app_id = a.id AND j.status = 'running')) AS apps_over_concurrency,
  (SELECT count(*) FROM jobs j WHERE j.status IN ('queued', 'running')
     AND j.retry_of IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.id = j.retry_of
     AND o.status NOT IN ('queued', 'running'))) AS retry_of_unfinished
"""


class QueueMachine(RuleBasedStateMachine):
    dsn: str
    settings: Settings

    leases = Bundle("leases")
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.store = self.run(Store.open(self.settings, self.dsn, min_size=1))
        #: job id -> (attempt, worker) of the attempt that may still write, if running
        self.current: dict[int, tuple[int, str]] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def teardown(self) -> None:
        self.run(self.store.close())
        self.runner.close()

    @initialize()
    def setup(self) -> None:
        async def go() -> None:
            async with self.store.pool.connection() as conn:
                await conn.execute("TRUNCATE jobs, apps, build_servers CASCADE")
            for name, capacity in CAPACITY.items():
                await add_server(self.store, name, capacity=capacity)
            for name, concurrency in CONCURRENCY.items():
                await add_app(self.store, name, concurrency=concurrency, max_attempts=2)

        self.run(go())

    @rule(target=jobs, app=st.sampled_from(sorted(CONCURRENCY)), branch=st.sampled_from("ab"))
    def enqueue(self, app: str, branch: str) -> int:
        result = self.run(self.store.queue.enqueue(push(app, branch=branch)))
        return result.jobs[0].id

    @rule(target=leases, worker=st.sampled_from(["w1", "w2"]), limit=st.integers(1, 3))
    def claim(self, worker: str, limit: int) -> Any:
        got = self.run(self.store.leases.claim(worker, limit=limit))
        assert len(got) <= limit
        for lease in got:
            assert lease.job.status is JobStatus.RUNNING and lease.job.worker_id == worker
            self.current[lease.id] = (lease.attempt, worker)
        return multiple(*got)

    @rule(lease=leases)
    def heartbeat(self, lease: Lease) -> None:
        worker = str(lease.job.worker_id)
        result = self.run(self.store.leases.heartbeat(worker, [(lease.id, lease.attempt)]))
        ours = self.current.get(lease.id) == (lease.attempt, worker)
        assert (lease.id in result.renewed) == ours
        assert (lease.id in result.lost) == (not ours)

    @rule(lease=leases, outcome=st.sampled_from(OUTCOMES))
    def finish(self, lease: Lease, outcome: Outcome) -> None:
        ours = self.current.get(lease.id) == (lease.attempt, lease.job.worker_id)
        if not ours:
            with pytest.raises(LostJob):
                self.run(self.store.leases.finish(lease, outcome))
            return
        done = self.run(self.store.leases.finish(lease, outcome))
        del self.current[lease.id]
        retried = (
            outcome.status is JobStatus.FAILED
            and outcome.retryable
            and lease.attempt < done.max_attempts
        )
        assert done.status is (JobStatus.QUEUED if retried else outcome.status)

    @rule(job=jobs, force=st.booleans())
    def cancel(self, job: int, force: bool) -> None:
        before = self.run(self.store.jobs.get(job))
        if before.status.is_final:
            with pytest.raises(Conflict):
                self.run(self.store.jobs.cancel(job, actor="ops", force=force))
            return
        after = self.run(self.store.jobs.cancel(job, actor="ops", force=force))
        if before.status is JobStatus.QUEUED:
            assert after.status is JobStatus.CANCELLED
        else:
            assert after.cancel_requested

    @rule(target=jobs, job=jobs)
    def retry(self, job: int) -> int:
        before = self.run(self.store.jobs.get(job))
        if not before.status.is_final:
            with pytest.raises(Conflict):
                self.run(self.store.jobs.retry(job, actor="ops"))
            return job
        new = self.run(self.store.jobs.retry(job, actor="ops"))
        assert new.retry_of == job and new.status is JobStatus.QUEUED
        return new.id

    @rule(lease=leases)
    def expire(self, lease: Lease) -> None:
        """The worker dies: its lease runs out and the rescuer takes the job back."""

        async def go() -> list[int]:
            async with self.store.pool.connection() as conn:
                await conn.execute(
                    "UPDATE jobs SET lease_expires_at = now() - interval '1 second' "
                    "WHERE id = %s AND attempt = %s AND status = 'running'",
                    (lease.id, lease.attempt),
                )
            return await self.store.leases.rescue_expired()

        rescued = self.run(go())
        ours = self.current.get(lease.id) == (lease.attempt, lease.job.worker_id)
        assert rescued == ([lease.id] if ours else [])
        if ours:
            del self.current[lease.id]
            job = self.run(self.store.jobs.get(lease.id))
            expected = JobStatus.QUEUED if lease.attempt < job.max_attempts else JobStatus.FAILED
            assert job.status is expected

    @rule(lease=leases)
    def release(self, lease: Lease) -> None:
        worker = str(lease.job.worker_id)
        released = self.run(self.store.leases.release(worker, [(lease.id, lease.attempt)], "stop"))
        ours = self.current.get(lease.id) == (lease.attempt, worker)
        assert released == ([lease.id] if ours else [])
        if ours:
            del self.current[lease.id]

    @invariant()
    def nothing_illegal(self) -> None:
        async def go() -> dict[str, Any]:
            async with self.store.pool.connection() as conn:
                row = await (await conn.execute(_INVARIANTS)).fetchone()
                running = await (
                    await conn.execute(
                        "SELECT id, attempt, worker_id FROM jobs WHERE status = 'running'"
                    )
                ).fetchall()
            assert row is not None
            return {"counts": row, "running": running}

        state = self.run(go())
        assert set(state["counts"].values()) == {0}, state["counts"]
        assert {r["id"]: (r["attempt"], r["worker_id"]) for r in state["running"]} == self.current


@pytest.mark.timeout(120)
def test_the_job_state_machine_never_reaches_an_illegal_state(
    settings_factory: Any, database_url: str, tmp_path: Path
) -> None:
    QueueMachine.dsn = database_url
    QueueMachine.settings = settings_factory(retry_base_delay=0.001, retry_max_delay=0.001)
    run_state_machine_as_test(
        QueueMachine,
        settings=settings(
            max_examples=50,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        ),
    )
