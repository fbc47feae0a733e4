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

    async def mark_reconciled(self, app_id: int) -> None:
        async with self.store.connection() as conn:
            await conn.execute(sql("reconcile_mark"), {"app_id": app_id})
