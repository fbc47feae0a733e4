"""Queries of missed-delivery reconciliation (deployq.reconcile)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployq.models import App
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store


class ReconcileStore:
    """``store.reconcile``: what missed-delivery reconciliation reads and marks."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def apps_due(self) -> list[App]:
        """Apps that opted in (reconcile_interval_s) and whose interval has passed."""
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("reconcile_apps_due"))).fetchall()
            # with their secrets: an app's own git credentials
            return await self.store.secrets.attach(conn, [App.model_validate(r) for r in rows])

    async def commits_with_jobs(self, app_id: int, shas: list[str]) -> set[str]:
        """Which of these commits already have a job (any status) for the app."""
        if not shas:
            return set()
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    sql("reconcile_commits_with_jobs"), {"app_id": app_id, "shas": shas}
                )
            ).fetchall()
        return {str(r["commit_sha"]) for r in rows}

    async def refs_with_jobs(self, app_id: int, refs: list[str]) -> set[tuple[str, str]]:
        """Which (ref, commit sha) pairs of these refs already have a job for the app."""
        if not refs:
            return set()
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    sql("reconcile_refs_with_jobs"), {"app_id": app_id, "refs": refs}
                )
            ).fetchall()
        return {(str(r["ref"]), str(r["commit_sha"])) for r in rows}

    async def recorded_tags(self, app_id: int) -> dict[str, str] | None:
        """The tags recorded at the first listing of the app's tags (never built), or None
        when they were not recorded yet."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(sql("reconcile_tag_baseline"), {"app_id": app_id})
            ).fetchone()
        if row is None or not row["recorded"]:
            return None
        return {str(ref): str(sha) for ref, sha in row["tags"].items()}

    async def record_tags(self, app_id: int, tags: dict[str, str]) -> None:
        """Record the app's tags as they are now, once (a second call changes nothing)."""
        refs = sorted(tags)
        async with self.store.connection() as conn:
            await conn.execute(
                sql("reconcile_record_tags"),
                {"app_id": app_id, "refs": refs, "shas": [tags[r] for r in refs]},
            )

    async def forget_tags(self, app_id: int) -> None:
        """The app no longer builds tags: drop what was recorded."""
        async with self.store.connection() as conn:
            await conn.execute(sql("reconcile_forget_tags"), {"app_id": app_id})

    async def mark_reconciled(self, app_id: int) -> None:
        async with self.store.connection() as conn:
            await conn.execute(sql("reconcile_mark"), {"app_id": app_id})
