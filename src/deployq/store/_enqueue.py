"""Triggers become jobs: app matching, delivery dedupe, supersede, operator retries."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from deployq.db import Connection
from deployq.errors import Conflict, NotFound
from deployq.matching import skip_reason
from deployq.models import (
    App,
    Job,
    NotifyEvent,
    RefType,
    SupersedePolicy,
    Trigger,
    TriggerKind,
)
from deployq.store._enqueue_sql import ENQUEUE, ENQUEUE_NAMED
from deployq.store._job_common import EnqueueResult, StorePart, short_ref, wants_notification


def skip_reason_is_none(trigger: Trigger) -> bool:
    """Whether ``skip_reason`` is None for this trigger whatever the app (so the one-round-
    trip path, which does not see the app in Python, may skip the matching)."""
    return trigger.kind in (TriggerKind.MANUAL, TriggerKind.RETRY)


class EnqueuePart(StorePart):
    """``enqueue`` and ``retry`` of JobStore."""

    async def enqueue(self, trigger: Trigger) -> EnqueueResult:
        """Turn a trigger into jobs, one per matching app, in one transaction.

        A delivery id seen before returns the jobs it created then (``created`` False),
        even when both deliveries arrive at the same moment. QueueFull when a queue limit
        refuses a job (nothing is written then).
        """
        result = EnqueueResult()
        async with self.store.connection() as conn:
            if trigger.app is not None and skip_reason_is_none(trigger):
                job = await self._insert_named(conn, trigger, result)
                if job is not None:
                    result.jobs.append(job)
                    return result
            matching: list[App] = []
            for app in await self._candidate_apps(conn, trigger):
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
                    job, created = await self._insert_job(conn, app, trigger, result)
                    result.jobs.append(job)
                    if not created:
                        result.created = False
                    elif outbox:
                        await self.store.notifications.create_for_job(
                            conn, job, NotifyEvent.QUEUED, app=app
                        )
        return result

    async def _insert_named(
        self, conn: Connection, trigger: Trigger, result: EnqueueResult
    ) -> Job | None:
        """The job of a trigger naming its app, lookup included, in one round trip; None
        when the general path must do it (outbox rows to write, a delivery seen before)."""
        row = await (await conn.execute(ENQUEUE_NAMED, self._named_params(trigger))).fetchone()
        if row is None:
            raise NotFound(f"no app named {trigger.app!r}; `deployq app list` shows the apps")
        if row["id"] is None:
            return None
        row.pop("app_found")
        row.pop("notified")
        result.superseded.extend(int(i) for i in row.pop("superseded_ids"))
        result.cancel_requested.extend(int(i) for i in row.pop("cancel_ids"))
        return Job.model_validate(row)

    async def _candidate_apps(self, conn: Connection, trigger: Trigger) -> list[App]:
        if trigger.app is not None:
            row = await (
                await conn.execute("SELECT * FROM apps WHERE name = %s", (trigger.app,))
            ).fetchone()
            if row is None:
                raise NotFound(f"no app named {trigger.app!r}; `deployq app list` shows the apps")
            return [App.model_validate(row)]
        if trigger.repo is None:
            return []
        rows = await (
            await conn.execute(
                "SELECT * FROM apps WHERE repo_identity = %s ORDER BY name", (trigger.repo,)
            )
        ).fetchall()
        return [App.model_validate(r) for r in rows]

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
        by_name, by_repo = await self._candidates_many(conn, triggers)
        results = [EnqueueResult() for _ in triggers]
        planned: list[tuple[EnqueueResult, App, Trigger]] = []
        for trigger, result in zip(triggers, results, strict=True):
            if trigger.app is not None:
                app = by_name.get(trigger.app)
                if app is None:
                    raise NotFound(
                        f"no app named {trigger.app!r}; `deployq app list` shows the apps"
                    )
                candidates = [app]
            else:
                candidates = by_repo.get(trigger.repo, []) if trigger.repo is not None else []
            for app in candidates:
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
            ENQUEUE, [self._params(app, trigger) for _, app, trigger in planned], returning=True
        )
        for n, (result, app, trigger) in enumerate(planned):
            if n:
                cursor.nextset()
            row = await cursor.fetchone()
            if row is not None:
                result.superseded.extend(int(i) for i in row.pop("superseded_ids"))
                result.cancel_requested.extend(int(i) for i in row.pop("cancel_ids"))
                row.pop("notified")
                job = Job.model_validate(row)
                if wants_notification(app, NotifyEvent.QUEUED):
                    await self.store.notifications.create_for_job(
                        conn, job, NotifyEvent.QUEUED, app=app
                    )
            else:
                job = await self._existing_job(conn, app, trigger)
                result.created = False
            result.jobs.append(job)
        return results

    async def _candidates_many(
        self, conn: Connection, triggers: Sequence[Trigger]
    ) -> tuple[dict[str, App], dict[str, list[App]]]:
        """The apps of these triggers in one query: (by name, by repository identity)."""
        names = sorted({t.app for t in triggers if t.app is not None})
        repos = sorted({t.repo for t in triggers if t.app is None and t.repo is not None})
        rows = await (
            await conn.execute(
                "SELECT * FROM apps WHERE name = ANY(%s) OR repo_identity = ANY(%s) ORDER BY name",
                (names, repos),
            )
        ).fetchall()
        by_name: dict[str, App] = {}
        by_repo: dict[str, list[App]] = {}
        for row in rows:
            app = App.model_validate(row)
            by_name[app.name] = app
            by_repo.setdefault(app.repo_identity, []).append(app)
        return by_name, by_repo

    async def _existing_job(self, conn: Connection, app: App, trigger: Trigger) -> Job:
        # ON CONFLICT waited for the other transaction to commit (or the conflicting row is
        # this transaction's own), so the row is visible now
        existing = await (
            await conn.execute(
                "SELECT * FROM jobs WHERE provider = %s AND delivery_id = %s AND app_id = %s",
                (trigger.provider, trigger.delivery_id, app.id),
            )
        ).fetchone()
        assert existing is not None, "ON CONFLICT without a conflicting row"
        return Job.model_validate(existing)

    async def _insert_job(
        self, conn: Connection, app: App, trigger: Trigger, result: EnqueueResult
    ) -> tuple[Job, bool]:
        row = await (await conn.execute(ENQUEUE, self._params(app, trigger))).fetchone()
        if row is not None:
            result.superseded.extend(int(i) for i in row.pop("superseded_ids"))
            result.cancel_requested.extend(int(i) for i in row.pop("cancel_ids"))
            row.pop("notified")
            return Job.model_validate(row), True
        return await self._existing_job(conn, app, trigger), False

    def _named_params(self, trigger: Trigger) -> dict[str, Any]:
        """``_params`` without the app: ENQUEUE_NAMED takes the app's part from its row."""
        settings = self.store.settings
        branch = short_ref(trigger)
        sha = trigger.commit_sha.lower() if trigger.commit_sha else None
        supersede = trigger.ref_type is RefType.BRANCH and trigger.kind is not TriggerKind.RETRY
        return {
            "app_name": trigger.app,
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
            # the statement adds the app's policy (an operator's retry supersedes nothing)
            "supersede": supersede,
            "cancel_running": supersede,
        }

    def _params(self, app: App, trigger: Trigger) -> dict[str, Any]:
        settings = self.store.settings
        priority = trigger.priority if trigger.priority is not None else app.priority
        branch = short_ref(trigger)
        sha = trigger.commit_sha.lower() if trigger.commit_sha else None
        params: dict[str, Any] = {
            "app_id": app.id,
            "app_name": app.name,
            "provider": trigger.provider,
            "trigger": trigger.kind.value,
            "delivery_id": trigger.delivery_id,
            "repo_url": app.repo_url,
            "ref": trigger.ref,
            "ref_type": trigger.ref_type.value,
            "branch": branch,
            "commit_sha": sha,
            "commit_message": trigger.commit_message,
            "commit_author": trigger.commit_author,
            "pusher": trigger.pusher,
            "pusher_email": trigger.pusher_email,
            "priority": int(priority),
            "max_attempts": app.max_attempts or settings.max_attempts,
            "timeout_s": app.timeout_s or settings.build_timeout,
            "retry_of": trigger.retry_of,
            "actor": trigger.actor or trigger.provider,
            "message": f"{trigger.kind.value} {branch}" + (f"@{sha[:7]}" if sha else ""),
            # an operator's retry of an old commit must not push newer queued work aside
            "supersede": app.supersede_policy is not SupersedePolicy.QUEUE
            and trigger.ref_type is RefType.BRANCH
            and trigger.kind is not TriggerKind.RETRY,
            "cancel_running": app.supersede_policy is SupersedePolicy.CANCEL_RUNNING
            and trigger.ref_type is RefType.BRANCH
            and trigger.kind is not TriggerKind.RETRY,
        }
        return params

    async def retry(self, job_id: int, *, actor: str) -> Job:
        """A new job for the same app and commit, linked to the finished one (retry_of)."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
            ).fetchone()
        if row is None:
            raise NotFound(f"no job #{job_id}; `deployq jobs` lists the jobs")
        job = Job.model_validate(row)
        if not job.status.is_final:
            raise Conflict(
                f"job #{job_id} is {job.status.value}; only a finished job can be retried"
            )
        if job.app_id is None:
            raise Conflict(f"the app of job #{job_id} was removed; it cannot be retried")
        trigger = Trigger(
            kind=TriggerKind.RETRY,
            provider="manual",
            app=job.app_name,
            ref=job.ref,
            ref_type=job.ref_type,
            commit_sha=job.commit_sha,
            commit_message=job.commit_message,
            commit_author=job.commit_author,
            pusher=job.pusher,
            pusher_email=job.pusher_email,
            priority=job.priority,
            actor=actor,
            retry_of=job.id,
        )
        result = await self.enqueue(trigger)
        return result.jobs[0]
