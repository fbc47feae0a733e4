"""Long-running processes: the web service, the worker pool, the notifier, or all of them.

Each component is ``async def run(stop: asyncio.Event)``: it runs until ``stop`` is set, then
winds down gracefully. They run under deployq.supervisor: one that fails is restarted alone.
SIGTERM and SIGINT set ``stop``; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal

from aiohttp import web

from deployq.store import Store
from deployq.supervisor import Component, run_supervised
from deployq.worker.sdnotify import SdNotifier

log = logging.getLogger(__name__)

#: allocations between generation-0 collections (CPython's default is 700)
GC_GEN0_THRESHOLD = 50_000


def web_component(store: Store, *, announce: bool = False) -> Component:
    """The aiohttp service. With ``announce`` (the web service alone, as `deployq serve`) it
    speaks sd_notify itself: READY=1 once listening, WATCHDOG=1, STOPPING=1."""
    from deployq.webhooks.app import create_app

    async def run(stop: asyncio.Event) -> None:
        sd = SdNotifier.from_environ() if announce else SdNotifier(None)
        settings = store.settings
        runner = web.AppRunner(create_app(store), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.listen_host, settings.listen_port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SystemExit(
                f"error: cannot listen on {settings.listen}: {exc.strerror}; "
                "set DEPLOYQ_LISTEN to a free HOST:PORT"
            ) from exc
        log.info("web service listening on http://%s", settings.listen)
        sd.ready()
        sd.status(f"listening on {settings.listen}")
        watchdog = asyncio.create_task(_watchdog(sd, stop))
        try:
            await stop.wait()
        finally:
            sd.stopping()
            watchdog.cancel()
            await runner.cleanup()

    return run


async def _watchdog(sd: SdNotifier, stop: asyncio.Event) -> None:
    """WATCHDOG=1 every half period while the event loop runs (systemd restarts a hung one)."""
    interval = sd.watchdog_interval_s
    if interval is None:
        return
    while not stop.is_set():
        sd.watchdog()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stop.wait()


def components_for(store: Store, *, web: bool, worker: bool) -> list[Component]:
    parts: list[Component] = []
    if web:
        parts.append(web_component(store, announce=not worker))
    if worker:
        parts.extend(worker_components(store))
    return parts


def worker_components(store: Store) -> list[Component]:
    """The worker pool and the background loops that ride along with it."""
    from deployq.reconcile import reconcile_component
    from deployq.store import prune_component
    from deployq.worker.mirror_sweep import mirror_sweeper
    from deployq.worker.notifier import Notifier
    from deployq.worker.pool import WorkerPool
    from deployq.worker.rescue import pool_rescuer
    from deployq.worker.scans import ScanCollector

    pool = WorkerPool(store)
    return [
        pool.run,
        Notifier(store).run,
        ScanCollector(store).run,
        pool_rescuer(store, pool),
        reconcile_component(store),
        prune_component(store),
        mirror_sweeper(store),
    ]


async def run_components(components: list[Component], store: Store) -> None:
    """Run until a signal, each component supervised; then stop them and wait for them."""
    # Everything imported and configured so far lives as long as the process: keep it out of
    # the collector's generations, and collect less often, so that a full collection does
    # not pause a request in the middle of a burst of webhooks.
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second %s: exiting now", sig.name)
            raise SystemExit(1)
        log.info("%s: shutting down gracefully (again to force)", sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await run_supervised(components, stop, health=store.health)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
