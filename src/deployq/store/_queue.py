"""Triggers become jobs (``store.queue``): app matching, delivery dedupe, supersede."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from deployq.db import Connection
from deployq.errors import NotFound
from deployq.matching import skip_reason
from deployq.models import (
    App,
    Job,
    NotifyEvent,
    RefType,
    Trigger,
    TriggerKind,
)
from deployq.store._job_common import EnqueueResult, StorePart, short_ref, wants_notification
from deployq.store._queries import sql


def skip_reason_is_none(trigger: Trigger) -> bool:
    """Whether ``skip_reason`` is None for this trigger whatever the app (so the one-round-
    trip path, which does not see the app in Python, may skip the matching)."""
    return trigger.kind in (TriggerKind.MANUAL, TriggerKind.RETRY)


class Queue(StorePart):
    """``store.queue``: ``enqueue`` and ``enqueue_many``."""

    async def enqueue(self, trigger: Trigger) -> EnqueueResult:
        """Turn a trigger into jobs, one per matching app, in one transaction.

        A delivery id seen before returns the jobs it created then (``created`` False),
        even when both deliveries arrive at the same moment. QueueFull when a queue limit
        refuses a job (nothing is written then).
        """
        result = EnqueueResult()
        async with self.store.connection() as conn:
            if trigger.app is not None and skip_reason_is_none(trigger):
                # the app named and no matching to do: one round trip, unless the app may
                # want outbox rows (or the delivery was seen before)
                row = await _enqueue_row(conn, self._params(trigger, trigger.app, False))
                if row["id"] is not None:
                    result.jobs.append(_job(row, result))
                    return result
            by_name, by_repo = await self._candidates(conn, [trigger])
            matching: list[App] = []
            for app in _candidates_of(trigger, by_name, by_repo):
                reason = skip_reason(app, trigger)
                if reason is None:
                    matching.append(app)
                else:
                    result.skipped[app.name] = reason
            outbox = any(wants_notification(a, NotifyEvent.QUEUED) for a in matching)
            # one app and no outbox rows: its one statement is the whole transaction
            alone = len(matching) == 1 and not outbox
            async with contextlib.nullcontext() if alone else conn.transaction():
                for app in matching:
                    row = await _enqueue_row(conn, self._params(trigger, app.name, True))
                    if row["id"] is None:
                        result.jobs.append(await _existing_job(conn, app, trigger))
                        result.created = False
                        continue
                    job = _job(row, result)
                    result.jobs.append(job)
                    if outbox:
                        await self.store.notifications.create_for_job(
                            conn, job, NotifyEvent.QUEUED, app=app
                        )
        return result

    async def enqueue_many(
        self, triggers: Sequence[Trigger], *, conn: Connection | None = None
    ) -> list[EnqueueResult]:
        """``enqueue`` for several triggers in ONE transaction (one commit), in order.

        The result of each trigger is what ``enqueue`` would return had the triggers been
        enqueued one after the other: a delivery id repeated in the list yields the job of
        its first occurrence (``created`` False), a later push to a branch supersedes the
        earlier one. The job statements are sent in one pipeline. Any error (an unknown
        app, a constraint) fails the whole list and rolls it back: callers that must not let
        one trigger fail the others retry them one by one. With ``conn``, runs inside the
        caller's transaction instead of a transaction of its own.
        """
        if not triggers:
            return []
        if conn is None:
            async with self.store.connection() as own, own.transaction():
                return await self._enqueue_many(own, triggers)
        return await self._enqueue_many(conn, triggers)

    async def _enqueue_many(
        self, conn: Connection, triggers: Sequence[Trigger]
    ) -> list[EnqueueResult]:
        by_name, by_repo = await self._candidates(conn, triggers)
        results = [EnqueueResult() for _ in triggers]
        planned: list[tuple[EnqueueResult, App, Trigger]] = []
        for trigger, result in zip(triggers, results, strict=True):
            for app in _candidates_of(trigger, by_name, by_repo):
                reason = skip_reason(app, trigger)
                if reason is None:
                    planned.append((result, app, trigger))
                else:
                    result.skipped[app.name] = reason
        if not planned:
            return results
        # every statement in one round trip; they still run in order, each seeing the rows
        # of those before it (a repeated delivery id conflicts with its first occurrence)
        cursor = conn.cursor()
        await cursor.executemany(
            sql("enqueue_job"),
            [self._params(trigger, app.name, True) for _, app, trigger in planned],
            returning=True,
        )
        for n, (result, app, trigger) in enumerate(planned):
            if n:
                cursor.nextset()
            row = await cursor.fetchone()
            if row is None:
                raise _no_app(app.name)
            if row["id"] is None:
                result.jobs.append(await _existing_job(conn, app, trigger))
                result.created = False
                continue
            job = _job(row, result)
            result.jobs.append(job)
            if wants_notification(app, NotifyEvent.QUEUED):
                await self.store.notifications.create_for_job(
                    conn, job, NotifyEvent.QUEUED, app=app
                )
        return results

    async def _candidates(
        self, conn: Connection, triggers: Sequence[Trigger]
    ) -> tuple[dict[str, App], dict[str, list[App]]]:
        """The apps of these triggers in one query: (by name, by repository identity)."""
        names = sorted({t.app for t in triggers if t.app is not None})
        repos = sorted({t.repo for t in triggers if t.app is None and t.repo is not None})
        rows = await (
            await conn.execute(sql("apps_for_triggers"), {"names": names, "repos": repos})
        ).fetchall()
        by_name: dict[str, App] = {}
        by_repo: dict[str, list[App]] = {}
        for row in rows:
            app = App.model_validate(row)
            by_name[app.name] = app
            by_repo.setdefault(app.repo_identity, []).append(app)
        return by_name, by_repo

    def _params(self, trigger: Trigger, app_name: str, outbox_ok: bool) -> dict[str, Any]:
        """The parameters of ``enqueue_job``; the statement adds the app's part (its
        defaults, its supersede policy) from its row."""
        settings = self.store.settings
        branch = short_ref(trigger)
        sha = trigger.commit_sha.lower() if trigger.commit_sha else None
        return {
            "app_name": app_name,
            "provider": trigger.provider,
            "trigger": trigger.kind.value,
            "delivery_id": trigger.delivery_id,
            "ref": trigger.ref,
            "ref_type": trigger.ref_type.value,
            "branch": branch,
            "commit_sha": sha,
            "commit_message": trigger.commit_message,
            "commit_author": trigger.commit_author,
            "pusher": trigger.pusher,
            "pusher_email": trigger.pusher_email,
            "priority": int(trigger.priority) if trigger.priority is not None else None,
            "max_attempts": settings.max_attempts,
            "timeout_s": settings.build_timeout,
            "retry_of": trigger.retry_of,
            "actor": trigger.actor or trigger.provider,
            "message": f"{trigger.kind.value} {branch}" + (f"@{sha[:7]}" if sha else ""),
            # an operator's retry of an old commit must not push newer work aside
            "supersede": trigger.ref_type is RefType.BRANCH
            and trigger.kind is not TriggerKind.RETRY,
            "outbox_ok": outbox_ok,
        }


def _no_app(name: str) -> NotFound:
    return NotFound(f"no app named {name!r}; `deployq app list` shows the apps")


def _candidates_of(
    trigger: Trigger, by_name: dict[str, App], by_repo: dict[str, list[App]]
) -> list[App]:
    """The apps that may build ``trigger``: the one it names, or those of its repository."""
    if trigger.app is not None:
        app = by_name.get(trigger.app)
        if app is None:
            raise _no_app(trigger.app)
        return [app]
    return by_repo.get(trigger.repo, []) if trigger.repo is not None else []


async def _enqueue_row(conn: Connection, params: dict[str, Any]) -> dict[str, Any]:
    """``enqueue_job``'s row (NotFound when the app does not exist)."""
    row = await (await conn.execute(sql("enqueue_job"), params)).fetchone()
    if row is None:
        raise _no_app(params["app_name"])
    return row


def _job(row: dict[str, Any], result: EnqueueResult) -> Job:
    """The new job of an ``enqueue_job`` row; what it superseded goes into ``result``."""
    result.superseded.extend(int(i) for i in row.pop("superseded_ids"))
    result.cancel_requested.extend(int(i) for i in row.pop("cancel_ids"))
    row.pop("app_found")
    row.pop("notified")
    return Job.model_validate(row)


async def _existing_job(conn: Connection, app: App, trigger: Trigger) -> Job:
    """The job a delivery seen before created for ``app``."""
    row = await (
        await conn.execute(
            sql("job_by_delivery"),
            {"provider": trigger.provider, "delivery_id": trigger.delivery_id, "app_id": app.id},
        )
    ).fetchone()
    assert row is not None, "ON CONFLICT without a conflicting row"
    return Job.model_validate(row)
