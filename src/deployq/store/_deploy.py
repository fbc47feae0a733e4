"""Deploy targets, releases, rollback jobs, and the lock that serialises deploys."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import psycopg

from deployq.errors import Conflict, DatabaseUnavailable, NotFound
from deployq.models import DeployTarget, Job, JobStatus, Priority, Release
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store

#: first key of the advisory lock held while an app deploys to a target ("deploy" in ASCII,
#: cut to 32 bits); the second key is hashtext(app/target)
DEPLOY_LOCK_KEY = 0x706C6F79
#: releases shown by default
RELEASES_LIMIT = 50


class DeployStore:
    """``store.deploy``: where apps run and what runs there."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- targets ---------------------------------------------------------------------------

    async def add_target(self, name: str, docker_host: str) -> DeployTarget:
        """Register a Docker engine apps can run on; Conflict if the name is taken."""
        async with self.store.connection() as conn:
            try:
                row = await (
                    await conn.execute(
                        sql("target_add"), {"name": name, "docker_host": docker_host}
                    )
                ).fetchone()
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(
                    f"a deploy target named {name!r} exists already; "
                    "`deployq target rm` it first or pick another name"
                ) from exc
            except psycopg.errors.CheckViolation as exc:
                raise Conflict(
                    f"target name {name!r}: use 1-63 lower-case letters, digits, '.', '_', '-'"
                ) from exc
        assert row is not None
        return DeployTarget.model_validate(row)

    async def targets(self) -> builtins.list[DeployTarget]:
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("target_list"))).fetchall()
        return [DeployTarget.model_validate(r) for r in rows]

    async def target(self, name: str) -> DeployTarget:
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("target_get"), {"name": name})).fetchone()
        if row is None:
            raise NotFound(
                f"no deploy target named {name!r}; `deployq target list` shows them, "
                "`deployq target add NAME --docker-host URL` adds one"
            )
        return DeployTarget.model_validate(row)

    async def remove_target(self, name: str) -> None:
        """Forget a target; refused while an app deploys to it."""
        async with self.store.connection() as conn:
            users = await (await conn.execute(sql("target_users"), {"name": name})).fetchall()
            if users:
                apps = ", ".join(str(r["name"]) for r in users)
                raise Conflict(
                    f"apps deploy to {name}: {apps}; change them "
                    "(`deployq app add NAME ... --replace`) before removing the target"
                )
            cur = await conn.execute(sql("target_remove"), {"name": name})
        if cur.rowcount == 0:
            raise NotFound(f"no deploy target named {name!r}; `deployq target list` shows them")

    async def record_target_health(
        self, target_id: int, *, healthy: bool, error: str | None, engine_version: str | None
    ) -> None:
        async with self.store.connection() as conn:
            await conn.execute(
                sql("target_record_health"),
                {
                    "id": target_id,
                    "healthy": healthy,
                    "error": error,
                    "engine_version": engine_version,
                },
            )

    # -- releases --------------------------------------------------------------------------

    async def record_release(
        self,
        job: Job,
        *,
        target: str,
        image_ref: str,
        digest: str,
        commit_sha: str | None,
        container: str | None,
    ) -> Release:
        """``job``'s image runs on ``target`` now; the release it replaced is marked so."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    sql("release_replace"),
                    {
                        "app_name": job.app_name,
                        "target": target,
                        "job_id": job.id,
                        "commit_sha": commit_sha,
                        "image_ref": image_ref,
                        "digest": digest,
                        "container": container,
                    },
                )
            ).fetchone()
        assert row is not None
        return Release.model_validate(row)

    async def releases(self, app_name: str, *, limit: int = RELEASES_LIMIT) -> list[Release]:
        """The app's releases, newest first."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(sql("release_list"), {"app_name": app_name, "limit": limit})
            ).fetchall()
        return [Release.model_validate(r) for r in rows]

    async def current_releases(self, app_name: str) -> builtins.list[Release]:
        """What runs now on each target of the app."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(sql("release_current"), {"app_name": app_name})
            ).fetchall()
        return [Release.model_validate(r) for r in rows]

    # -- rollback --------------------------------------------------------------------------

    async def rollback_source(
        self, app_name: str, *, job_id: int | None = None, digest: str | None = None
    ) -> Job:
        """The succeeded job whose image a rollback deploys: ``job_id``, the newest with
        ``digest``, or (neither) the release before the one running now."""
        params: dict[str, Any]
        async with self.store.connection() as conn:
            if job_id is not None:
                query, params, what = sql("rollback_source_job"), {"job_id": job_id}, f"#{job_id}"
            elif digest is not None:
                query = sql("rollback_source_digest")
                params = {"app_name": app_name, "digest": digest}
                what = f"an image {digest}"
            else:
                query, params, what = sql("rollback_source_previous"), {"app_name": app_name}, ""
            row = await (await conn.execute(query, params)).fetchone()
        if row is None:
            if not what:
                raise NotFound(
                    f"{app_name} has no earlier release to roll back to; "
                    f"`deployq releases {app_name}` lists them"
                )
            raise NotFound(
                f"no succeeded job of {app_name} with {what}; `deployq releases {app_name}` "
                "lists the releases"
            )
        job = Job.model_validate(row)
        if job.app_name != app_name:
            raise Conflict(f"job #{job.id} belongs to {job.app_name}, not {app_name}")
        if job.status is not JobStatus.SUCCEEDED or not job.image_digest or not job.image_ref:
            raise Conflict(
                f"job #{job.id} is {job.status.value} and pushed no image; roll back to a "
                "succeeded job (`deployq releases APP` lists them)"
            )
        return job

    async def enqueue_rollback(
        self, app_name: str, source: Job, *, actor: str, priority: Priority | None = None
    ) -> Job:
        """Queue a deploy-only job of ``source``'s image (no build)."""
        settings = self.store.settings
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    sql("rollback_enqueue"),
                    {
                        "app_name": app_name,
                        "source": source.id,
                        "actor": actor,
                        "priority": int(priority) if priority is not None else None,
                        "max_attempts": settings.max_attempts,
                        "timeout_s": settings.build_timeout,
                    },
                )
            ).fetchone()
        if row is None:
            raise NotFound(f"no app named {app_name!r}; `deployq app list` shows the apps")
        return Job.model_validate(row)

    # -- serialisation ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lock(self, app_name: str, target: str) -> AsyncIterator[None]:
        """Hold the deploy lock of ``app_name`` on ``target`` (waits for another holder).

        A session lock on a connection of its own: a worker killed mid-deploy loses its
        connection, and with it the lock, so the next attempt can go on."""
        params: dict[str, Any] = {"key": DEPLOY_LOCK_KEY, "app_name": app_name, "target": target}
        try:
            async with self.store.connection() as conn:
                await conn.execute(sql("deploy_lock"), params)
                try:
                    yield
                finally:
                    await conn.execute(sql("deploy_unlock"), params)
        except DatabaseUnavailable as exc:
            raise DatabaseUnavailable(
                f"the deploy lock of {app_name} was lost: {exc.message}"
            ) from exc
