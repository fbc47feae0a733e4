"""The rescue asks the engine: a job whose worker died runs again only once the engine
reports no build of the attempt that died (``store.rescuer_component`` holds the job, and so
its slot on the server, until then).

``EngineStopper`` asks the attempt's engine for the steps still running under the attempt's
name (``builders.attempts``), has it kill them, and asks again until none is left. When the
engine still reports one (or cannot be asked) after ``rescue_stop_timeout``, the server is
drained with the reason on the job's timeline and in the log, and the job is queued again: it
runs elsewhere, and the drained server gets no job until an operator has looked and undrains
it, so its capacity is never silently exceeded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from deployq.builders import attempt_marker
from deployq.durations import setting
from deployq.errors import DeployqError, EngineUnavailable, NotFound
from deployq.store import TakenAttempt, rescuer_component

if TYPE_CHECKING:
    from deployq.store import Store
    from deployq.supervisor import Component
    from deployq.worker.pool import WorkerPool
    from deployq.worker.servers import ServerMonitor

log = logging.getLogger(__name__)

#: seconds between two looks at an engine that still runs the build
RECHECK_S = 0.5
#: seconds a daemon is given to stop a build whose client died, when it cannot be looked into
BLIND_GRACE_S = 10.0


class EngineStopper:
    """``StopBuild`` for ``store.rescuer_component``: stop the attempt's build on its engine
    and return once the engine reports none (or the server is drained)."""

    def __init__(self, store: Store, monitor: ServerMonitor, *, host_id: str | None) -> None:
        self.store = store
        self.monitor = monitor
        self.host_id = host_id
        self.timeout_s = store.settings.rescue_stop_timeout

    async def __call__(self, rescuer: str, taken: TakenAttempt) -> str | None:
        if taken.server_id is None:
            return None
        try:
            server = await self.store.servers.get_by_id(taken.server_id)
        except NotFound:  # removed since: nothing of it left to count
            return None
        if server.host_id is not None and server.host_id != self.host_id:
            # the engine of another host, whose own rescuers did not come for the timeout
            # (store.leases.take_expired): that host is down, and its engine with it, or its
            # workers are, whose clients the engine there saw go
            return f"{server.docker_host} of host {server.host_id} not looked into"
        builder = await self.monitor.prepare(server)
        marker = attempt_marker(taken.id, taken.attempt, taken.enqueued_at)
        what = f"the build of job #{taken.id} attempt {taken.attempt}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        waiting = False
        while True:
            try:
                steps = await builder.attempt_steps(marker, stop=True)
            except EngineUnavailable as exc:
                problem = exc.message
            else:
                if steps is None:
                    return await self._blind(rescuer, taken, server.docker_host, what)
                if not steps.running:
                    return f"engine {server.docker_host} runs no build of it" + (
                        " any more" if waiting else ""
                    )
                problem = f"{len(steps.steps)} step(s) still running, killed"
            if not waiting:
                waiting = True
                message = f"waiting for engine {server.docker_host} to stop {what} ({problem})"
                log.warning("%s", message)
                await self.store.leases.note_rescue(rescuer, taken, message)
            if loop.time() >= deadline:
                return await self._give_up(rescuer, taken, server.name, what, problem)
            await asyncio.sleep(RECHECK_S)

    async def _blind(self, rescuer: str, taken: TakenAttempt, host: str, what: str) -> str:
        """The engine answers but cannot be looked into: give it the time a daemon takes to
        stop a build whose client went (the dead worker's client died with it), then go on."""
        image = self.store.settings.base_image_static
        message = (
            f"engine {host} cannot be looked into (no image {image} there to look with, or "
            "it refused a container with --pid host): "
            f"{what} is given {setting(BLIND_GRACE_S)} to stop, then the job is queued again "
            f"without knowing; load {image} there (DEPLOYQ_BASE_IMAGE_STATIC)"
        )
        log.warning("%s", message)
        await self.store.leases.note_rescue(rescuer, taken, message)
        await asyncio.sleep(BLIND_GRACE_S)
        return f"engine {host} not looked into"

    async def _give_up(
        self, rescuer: str, taken: TakenAttempt, server: str, what: str, problem: str
    ) -> str:
        reason = (
            f"build server {server} drained: its engine did not stop {what} within "
            f"{setting(self.timeout_s)} ({problem}); stop it there, then "
            f"`deployq server undrain {server}`"
        )
        log.error("%s", reason)
        try:
            await self.store.servers.set_draining(server, True)
        except DeployqError as exc:
            log.error("draining build server %s failed: %s", server, exc)
            raise
        await self.store.leases.note_rescue(rescuer, taken, reason)
        return f"build server {server} drained"


def pool_rescuer(store: Store, pool: WorkerPool) -> Component:
    """The rescuer that rides along with ``pool``: it looks into the engines of the pool's
    host (``EngineStopper``) before a dead worker's job runs again."""
    return rescuer_component(
        store,
        stop_build=EngineStopper(store, pool.monitor, host_id=pool.host_id),
        host_id=pool.host_id,
    )
