"""A retried job's time runs from its first claim to its end, and each attempt has its own."""

from __future__ import annotations

import asyncio
from typing import Any

from queue_helpers import FAILURE, SUCCESS, add_app, add_server, enqueue

from deployq.attempts import job_times
from deployq.models import JobStatus


async def test_the_total_time_counts_every_attempt_not_only_the_last(store_factory: Any) -> None:
    store = await store_factory(retry_base_delay=0.2, retry_max_delay=0.2, max_attempts=2)
    await add_server(store, "local")
    await add_app(store, "web")
    job_id = await enqueue(store, "web")

    [first] = await store.leases.claim("w1", limit=1)
    await asyncio.sleep(0.3)  # the first attempt takes a measurable time
    await store.leases.finish(first, FAILURE)
    for _ in range(200):  # run_after passes by the clock: there is no event to wait for
        if leases := await store.leases.claim("w1", limit=1):
            break
        await asyncio.sleep(0.05)
    await store.leases.finish(leases[0], SUCCESS)

    job = await store.jobs.get(job_id)
    times = job_times(job, await store.jobs.events(job_id))

    assert job.status is JobStatus.SUCCEEDED
    assert [(a.attempt, a.outcome) for a in times.attempts] == [(1, "queued"), (2, "succeeded")]
    first_attempt = times.attempts[0].seconds
    assert first_attempt is not None and first_attempt >= 0.3
    assert times.total_s is not None and job.duration_s is not None
    second_attempt = times.attempts[1].seconds
    assert second_attempt is not None
    assert times.total_s > first_attempt + second_attempt  # the wait for the retry counts too
    assert job.duration_s < first_attempt  # the job row alone knows only the last attempt
