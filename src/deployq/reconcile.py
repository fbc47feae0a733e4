"""Missed-delivery reconciliation: forges drop webhook deliveries (and GitHub does not retry).

For each app that opts in (``reconcile_interval_s``), ``git ls-remote`` lists the branch heads
of its repository; every head matching the app's branch globs that has no job for that commit
yet is enqueued with trigger ``reconcile`` (delivery id ``reconcile:<app>:<sha>``, so two
reconcilers never enqueue the same commit twice). ``deployq reconcile [APP]`` runs it once;
:func:`reconcile_component` runs it periodically next to the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from deployq.errors import CheckoutError, DeployqError, QueueFull
from deployq.gitauth import app_git_auth, ls_remote
from deployq.matching import glob_match
from deployq.models import App, Trigger, TriggerKind
from deployq.store import Store
from deployq.supervisor import Component

log = logging.getLogger(__name__)

PROVIDER = "reconcile"
#: how often the periodic task looks for apps whose interval has passed
RECONCILE_TICK_S = 15.0


@dataclass
class ReconcileResult:
    """What reconciling one app did."""

    app: str
    heads: int = 0
    enqueued: list[int] = field(default_factory=list)
    error: str | None = None


async def reconcile_app(store: Store, app: App) -> ReconcileResult:
    """Enqueue the matching branch heads of one app that have no job yet."""
    result = ReconcileResult(app.name)
    try:
        with app_git_auth(app, store.settings) as auth:  # the checkout's credentials
            heads = await ls_remote(app.repo_url, auth=auth, tags=app.build_tags)
    except CheckoutError as exc:
        result.error = exc.message
        log.warning("reconcile %s: %s", app.name, exc.message)
        await store.reconcile.mark_reconciled(app.id)
        return result
    matching = {
        ref: sha
        for ref, sha in heads.items()
        if any(glob_match(pattern, ref.removeprefix("refs/heads/")) for pattern in app.branches)
    }
    result.heads = len(matching)
    known = await store.reconcile.commits_with_jobs(app.id, sorted(set(matching.values())))
    for ref, sha in sorted(matching.items()):
        if sha in known:
            continue
        try:
            enqueued = await store.queue.enqueue(
                Trigger(
                    kind=TriggerKind.RECONCILE,
                    provider=PROVIDER,
                    app=app.name,
                    ref=ref,
                    commit_sha=sha,
                    delivery_id=f"reconcile:{app.name}:{sha}",
                    actor=PROVIDER,
                )
            )
        except QueueFull as exc:  # not marked reconciled: the next round tries again
            result.error = exc.message
            log.warning("reconcile %s: %s", app.name, exc.message)
            return result
        known.add(sha)
        if enqueued.created:
            result.enqueued.extend(job.id for job in enqueued.jobs)
            log.info("reconcile %s: %s@%s had no job; enqueued", app.name, ref, sha[:7])
    await store.reconcile.mark_reconciled(app.id)
    return result


async def reconcile(
    store: Store, app_name: str | None = None, *, only_due: bool = False
) -> list[ReconcileResult]:
    """Reconcile one app (by name), the apps whose interval passed, or every app."""
    if app_name is not None:
        apps = [await store.apps.get(app_name)]
    elif only_due:
        apps = await store.reconcile.apps_due()
    else:
        apps = await store.apps.all()
    return [await reconcile_app(store, app) for app in apps]


def reconcile_component(store: Store) -> Component:
    """The periodic reconciliation, as a service component (runs until ``stop`` is set)."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await reconcile(store, only_due=True)
            except DeployqError as exc:
                if store.health.up:  # an outage is logged once, by deployq.db.health
                    log.warning("reconciliation failed: %s", exc.message)
            except OSError as exc:
                log.warning("reconciliation failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONCILE_TICK_S):
                    await stop.wait()

    return run
