"""Deploy target health: every worker probes every target's engine, like build servers.

A probe asks the engine for its version; the answer (or why there was none) is recorded on
the target (`deployq target list`, the API). An unhealthy target is not skipped: a deploy
there fails with the engine's error and is retried like any engine outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from deployq.durations import setting
from deployq.errors import DeployqError
from deployq.models import DeployTarget
from deployq.worker.deploy_engine import DeployEngine

if TYPE_CHECKING:
    from deployq.store import Store

log = logging.getLogger(__name__)

#: seconds between two probes of the targets, and how long one may take
TARGET_PROBE_INTERVAL_S = 15.0
TARGET_PROBE_TIMEOUT_S = 10.0


async def probe_target(store: Store, target: DeployTarget) -> str | None:
    """Probe one target and record the result; the error, or None when it answers."""
    engine = DeployEngine(target.docker_host)
    version: str | None = None
    try:
        async with asyncio.timeout(TARGET_PROBE_TIMEOUT_S):
            version = await engine.version()
        error = None
    except TimeoutError:
        error = (
            f"docker engine {target.docker_host} did not answer within "
            f"{setting(TARGET_PROBE_TIMEOUT_S)}"
        )
    except DeployqError as exc:
        error = exc.message
    finally:
        await asyncio.to_thread(engine.close)
    if error and target.healthy:
        log.warning("deploy target %s does not answer: %s", target.name, error)
    await store.deploy.record_target_health(
        target.id, healthy=error is None, error=error, engine_version=version
    )
    return error


async def probe_targets(store: Store) -> None:
    """Probe every target once, at the same time."""
    targets = await store.deploy.targets()
    await asyncio.gather(*(probe_target(store, t) for t in targets))


async def run_target_probes(store: Store, stop: asyncio.Event) -> None:
    """Probe the targets now, then every TARGET_PROBE_INTERVAL_S until ``stop``."""
    while not stop.is_set():
        try:
            await probe_targets(store)
        except DeployqError as exc:
            if store.health.up:  # an outage is logged once, by deployq.db.health
                log.warning("probing the deploy targets failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TARGET_PROBE_INTERVAL_S):
                await stop.wait()
