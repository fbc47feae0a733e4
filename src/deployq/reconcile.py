"""Missed-delivery reconciliation: forges drop webhook deliveries (and GitHub does not retry).

For each app that opts in (``reconcile_interval_s``), ``git ls-remote`` lists the branch heads
of its repository (with the app's credentials, as the checkout); every head matching the app's
branch globs that has no job for that commit yet is enqueued with trigger ``reconcile``
(delivery id ``reconcile:<app>:<sha>``, so two reconcilers never enqueue the same commit
twice). An app that builds tags gets its new tags too (``reconcile:<app>:<ref>@<sha>``): the
first listing records the tags there are and builds none, later ones build a tag that is new
or moved and has no job for its commit. ``deployq reconcile [APP]`` runs it once;
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
from deployq.models import App, RefType, Trigger, TriggerKind
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
    tags: int = 0
    enqueued: list[int] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class _Missed:
    """A ref whose commit has no job: what to enqueue."""

    ref: str
    sha: str
    ref_type: RefType
    delivery_id: str


async def reconcile_app(store: Store, app: App) -> ReconcileResult:
    """Enqueue the matching branch heads (and, for an app that builds tags, the new tags) of
    one app that have no job yet."""
    result = ReconcileResult(app.name)
    try:
        with app_git_auth(app, store.settings) as auth:  # the checkout's credentials
            refs = await ls_remote(app.repo_url, auth=auth, tags=app.build_tags)
    except CheckoutError as exc:
        result.error = exc.message
        log.warning("reconcile %s: %s", app.name, exc.message)
        await store.reconcile.mark_reconciled(app.id)
        return result
    heads = {
        ref: sha
        for ref, sha in refs.items()
        if ref.startswith("refs/heads/")
        and any(glob_match(pattern, ref.removeprefix("refs/heads/")) for pattern in app.branches)
    }
    tags = {ref: sha for ref, sha in refs.items() if ref.startswith("refs/tags/")}
    result.heads, result.tags = len(heads), len(tags)
    missed = await _missed_heads(store, app, heads) + await _missed_tags(store, app, tags)
    for ref in missed:
        try:
            enqueued = await store.queue.enqueue(
                Trigger(
                    kind=TriggerKind.RECONCILE,
                    provider=PROVIDER,
                    app=app.name,
                    ref=ref.ref,
                    ref_type=ref.ref_type,
                    commit_sha=ref.sha,
                    delivery_id=ref.delivery_id,
                    actor=PROVIDER,
                )
            )
        except QueueFull as exc:  # not marked reconciled: the next round tries again
            result.error = exc.message
            log.warning("reconcile %s: %s", app.name, exc.message)
            return result
        if enqueued.created:
            result.enqueued.extend(job.id for job in enqueued.jobs)
            log.info("reconcile %s: %s@%s had no job; enqueued", app.name, ref.ref, ref.sha[:7])
    await store.reconcile.mark_reconciled(app.id)
    return result


async def _missed_heads(store: Store, app: App, heads: dict[str, str]) -> list[_Missed]:
    """Branch heads whose commit has no job of the app (one per commit, whatever the
    branches pointing at it)."""
    known = await store.reconcile.commits_with_jobs(app.id, sorted(set(heads.values())))
    missed: list[_Missed] = []
    for ref, sha in sorted(heads.items()):
        if sha not in known:
            known.add(sha)
            delivery = f"reconcile:{app.name}:{sha}"
            missed.append(_Missed(ref, sha, RefType.BRANCH, delivery))
    return missed


async def _missed_tags(store: Store, app: App, tags: dict[str, str]) -> list[_Missed]:
    """Tags made (or moved) since reconciliation first listed the app's tags, without a job
    for that tag and commit. The first listing builds nothing: it records the tags there are
    (a repository's old releases are not missed pushes)."""
    if not app.build_tags:
        await store.reconcile.forget_tags(app.id)
        return []
    recorded = await store.reconcile.recorded_tags(app.id)
    if recorded is None:
        await store.reconcile.record_tags(app.id, tags)
        log.info("reconcile %s: %d existing tags recorded, not built", app.name, len(tags))
        return []
    moved = {ref: sha for ref, sha in tags.items() if recorded.get(ref) != sha}
    built = await store.reconcile.refs_with_jobs(app.id, sorted(moved))
    return [
        _Missed(ref, sha, RefType.TAG, f"reconcile:{app.name}:{ref}@{sha}")
        for ref, sha in sorted(moved.items())
        if (ref, sha) not in built
    ]


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
