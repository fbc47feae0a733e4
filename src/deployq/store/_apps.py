"""Apps: what to build for which repository."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from deployq.errors import Conflict, NotFound
from deployq.models import App, AppSpec
from deployq.repos import repo_identity

if TYPE_CHECKING:
    from deployq.store._store import Store

_JSON_FIELDS = {"build_args", "build_secrets", "deploy"}
_COLUMNS = [name for name in AppSpec.model_fields]


def _params(spec: AppSpec) -> dict[str, Any]:
    data = spec.model_dump(mode="json")
    for name in _JSON_FIELDS:
        if data[name] is not None:
            data[name] = Jsonb(data[name])
    data["repo_identity"] = repo_identity(spec.repo_url)
    return data


class AppStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, spec: AppSpec) -> App:
        """Create an app; Conflict if the name is taken."""
        data = _params(spec)
        columns = [*_COLUMNS, "repo_identity"]
        sql = (
            f"INSERT INTO apps ({', '.join(columns)}) "
            f"VALUES ({', '.join(f'%({c})s' for c in columns)}) RETURNING *"
        )
        async with self.store.connection() as conn:
            try:
                row = await (await conn.execute(sql, data)).fetchone()
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(
                    f"an app named {spec.name!r} exists already; "
                    "use another name or `deployq app rm` it first"
                ) from exc
        assert row is not None
        return App.model_validate(row)

    async def update(self, spec: AppSpec) -> App:
        """Replace an app's configuration (by name)."""
        data = _params(spec)
        assignments = ", ".join(f"{c} = %({c})s" for c in [*_COLUMNS, "repo_identity"])
        sql = f"UPDATE apps SET {assignments}, updated_at = now() WHERE name = %(name)s RETURNING *"
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql, data)).fetchone()
        if row is None:
            raise NotFound(f"no app named {spec.name!r}; `deployq app list` shows the apps")
        return App.model_validate(row)

    async def get(self, name: str) -> App:
        async with self.store.connection() as conn:
            row = await (
                await conn.execute("SELECT * FROM apps WHERE name = %s", (name,))
            ).fetchone()
        if row is None:
            raise NotFound(f"no app named {name!r}; `deployq app list` shows the apps")
        return App.model_validate(row)

    async def get_by_id(self, app_id: int) -> App:
        async with self.store.connection() as conn:
            row = await (
                await conn.execute("SELECT * FROM apps WHERE id = %s", (app_id,))
            ).fetchone()
        if row is None:
            raise NotFound(f"no app with id {app_id}")
        return App.model_validate(row)

    async def list(self) -> list[App]:
        async with self.store.connection() as conn:
            rows = await (await conn.execute("SELECT * FROM apps ORDER BY name")).fetchall()
        return [App.model_validate(r) for r in rows]

    async def by_repo(self, identity: str) -> builtins.list[App]:
        """Apps configured for this repository identity (see deployq.repos)."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM apps WHERE repo_identity = %s ORDER BY name", (identity,)
                )
            ).fetchall()
        return [App.model_validate(r) for r in rows]

    async def remove(self, name: str) -> None:
        """Delete an app; its jobs stay (with app_id NULL) for the record."""
        async with self.store.connection() as conn:
            cur = await conn.execute("DELETE FROM apps WHERE name = %s", (name,))
        if cur.rowcount == 0:
            raise NotFound(f"no app named {name!r}; `deployq app list` shows the apps")
