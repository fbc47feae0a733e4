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
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from deployq.durations import setting
from deployq.errors import CheckoutError, DeployqError, QueueFull
from deployq.matching import glob_match
from deployq.models import App, Trigger, TriggerKind
from deployq.redact import redact_urls
from deployq.store import Store
from deployq.supervisor import Component
from deployq.worker.checkout import git_env

log = logging.getLogger(__name__)

PROVIDER = "reconcile"
#: how long one ``git ls-remote`` may take
LS_REMOTE_TIMEOUT_S = 60.0
#: how often the periodic task looks for apps whose interval has passed
RECONCILE_TICK_S = 15.0


@dataclass
class ReconcileResult:
    """What reconciling one app did."""

    app: str
    heads: int = 0
    enqueued: list[int] = field(default_factory=list)
    error: str | None = None


async def ls_remote(
    url: str,
    *refs: str,
    timeout_s: float = LS_REMOTE_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Branch heads of a repository, ``{"refs/heads/main": sha}``, or with ``refs`` (full
    refs) those of them that exist; CheckoutError on failure. ``env``: git's environment
    (credentials, as the checkout sets them); default: ours."""
    if env is None:
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for a password prompt
    proc = await asyncio.create_subprocess_exec(
        "git",
        "ls-remote",
        *(("--",) if refs else ("--heads", "--")),
        url,
        *refs,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise CheckoutError(
            f"git ls-remote {redact_urls(url)} took longer than {setting(timeout_s)}; "
            "check that the repository host answers"
        ) from None
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit status {proc.returncode}"
        raise CheckoutError(
            f"git ls-remote {redact_urls(url)} failed: {reason.replace(url, redact_urls(url))}; "
            "check the app's repository URL and credentials"
        )
    heads: dict[str, str] = {}
    for line in out.decode(errors="replace").splitlines():
        sha, _, ref = line.partition("\t")
        wanted = ref in refs if refs else ref.startswith("refs/heads/")
        if wanted and len(sha) >= 40:
            heads[ref] = sha.lower()
    return heads


async def reconcile_app(store: Store, app: App) -> ReconcileResult:
    """Enqueue the matching branch heads of one app that have no job yet."""
    result = ReconcileResult(app.name)
    try:
        settings = store.settings
        token = settings.git_token.get_secret_value() if settings.git_token else None
        url, env = git_env(app.repo_url, token, settings.git_ssh_key, settings.git_token_hosts)
        heads = await ls_remote(url, env=env)
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
