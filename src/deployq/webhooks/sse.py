"""Live job logs over server-sent events.

The web process's one :class:`~deployq.logfollow.LogWaker` (one LISTEN connection) wakes
the :class:`~deployq.logfollow.LogFollower` of each stream. Events: one per log line
(``id:`` is the line's seq, so a client resumes with ``Last-Event-ID``), then ``event: end``
with the job's final status.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp_sse import sse_response

from deployq.logfollow import LogWaker
from deployq.models import Job
from deployq.store import Store

log = logging.getLogger(__name__)


def _end_event(job: Job) -> str:
    return json.dumps({"id": job.id, "status": job.status.value, "error": job.error})


async def stream_logs(
    request: web.Request, store: Store, waker: LogWaker, job_id: int, after: int
) -> web.StreamResponse:
    """Send the lines after ``after``, then follow until the job is final."""
    await store.jobs.get(job_id)  # 404 before the stream starts
    async with (
        waker.follow(store, job_id, after=after) as follower,
        sse_response(request) as resp,
    ):
        try:
            async for lines in follower:
                for line in lines:
                    await resp.send(line.line, id=str(line.seq))
            if follower.final is not None:
                await resp.send(_end_event(follower.final), event="end")
        except ConnectionResetError:
            log.debug("log follower of job #%d went away", job_id)
    return resp
