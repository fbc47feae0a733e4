"""Apps: what to build for which repository."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from deployq.errors import Conflict, NotFound
from deployq.models import App, AppSpec
from deployq.repos import repo_identity
from deployq.store._queries import sql
from deployq.store._secrets import SPEC_SECRET_FIELDS, public_data

if TYPE_CHECKING:
    from deployq.store._store import Store

_JSON_FIELDS = {"build_args", "deploy", "scan_policy"}


def _params(spec: AppSpec) -> dict[str, Any]:
    """The columns of ``apps``: the spec without its secrets (those go to app_secrets)."""
    data = public_data(spec)
    for name in _JSON_FIELDS:
        if data[name] is not None:
            data[name] = Jsonb(data[name])
    data["repo_identity"] = repo_identity(spec.repo_url)
    data["forge_status"] = spec.forge_token is not None
    return data


def _no_app(name: str) -> NotFound:
    return NotFound(f"no app named {name!r}; `deployq app list` shows the apps")


class AppStore:
    """``store.apps``: what to build for which repository."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, spec: AppSpec) -> App:
        """Create an app; Conflict if the name is taken."""
        async with self.store.connection() as conn, conn.transaction():
            try:
                row = await (await conn.execute(sql("app_add"), _params(spec))).fetchone()
            except psycopg.errors.UniqueViolation as exc:
                raise Conflict(
                    f"an app named {spec.name!r} exists already; "
                    "use another name or `deployq app rm` it first"
                ) from exc
            assert row is not None
            app = App.model_validate(row)
            await self.store.secrets.save(conn, app.id, spec)
        return _with(app, spec)

    async def update(self, spec: AppSpec) -> App:
        """Replace an app's configuration (by name)."""
        async with self.store.connection() as conn, conn.transaction():
            row = await (await conn.execute(sql("app_update"), _params(spec))).fetchone()
            if row is None:
                raise _no_app(spec.name)
            app = App.model_validate(row)
            await self.store.secrets.save(conn, app.id, spec)
        return _with(app, spec)

    async def get(self, name: str) -> App:
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("app_get"), {"name": name})).fetchone()
            if row is None:
                raise _no_app(name)
            return (await self.store.secrets.attach(conn, [App.model_validate(row)]))[0]

    async def get_by_id(self, app_id: int) -> App:
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("app_get_by_id"), {"id": app_id})).fetchone()
            if row is None:
                raise NotFound(f"no app with id {app_id}")
            return (await self.store.secrets.attach(conn, [App.model_validate(row)]))[0]

    async def all(self) -> list[App]:
        """Every app, by name."""
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("apps_all"))).fetchall()
            return await self.store.secrets.attach(conn, [App.model_validate(r) for r in rows])

    async def by_repos(self, identities: list[str]) -> list[App]:
        """Apps configured for any of these repository identities (see deployq.repos)."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(sql("apps_by_repos"), {"identities": identities})
            ).fetchall()
            return await self.store.secrets.attach(conn, [App.model_validate(r) for r in rows])

    async def remove(self, name: str) -> None:
        """Delete an app; its jobs stay (with app_id NULL) for the record."""
        async with self.store.connection() as conn:
            cur = await conn.execute(sql("app_remove"), {"name": name})
        if cur.rowcount == 0:
            raise _no_app(name)


def _with(app: App, spec: AppSpec) -> App:
    """The stored ``app`` with the secrets of the ``spec`` it was written from."""
    deploy = app.deploy
    if deploy is not None and spec.deploy is not None:
        deploy = deploy.model_copy(
            update={"webhook_secret": spec.deploy.webhook_secret, "env": spec.deploy.env}
        )
    return app.model_copy(
        update={name: getattr(spec, name) for name in SPEC_SECRET_FIELDS} | {"deploy": deploy}
    )
