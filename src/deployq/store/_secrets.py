"""App secrets at rest: one sealed JSON object per app in ``app_secrets`` (docs/secrets.md).

``apps`` holds no secret: the store splits them off an ``AppSpec`` when it writes and puts
them back on the ``App`` when it reads. A role that may not read ``app_secrets`` (the
read-only console role) gets apps without their secrets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deployq.models import App, AppSpec
from deployq.redact import SECRET_FIELDS
from deployq.sealing import SecretBox
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.db.pool import Connection
    from deployq.store._store import Store

#: the AppSpec fields that are secrets and never columns of ``apps`` (one list: redact's)
SPEC_SECRET_FIELDS = SECRET_FIELDS
#: the DeploySettings fields that are secrets and never in ``apps.deploy``
DEPLOY_SECRET_FIELDS = ("webhook_secret", "env")
_PLAIN = "plain:"  # rows migration 008 moved, until sealed


def secrets_of(spec: AppSpec) -> dict[str, Any]:
    """The secrets of ``spec``, empty ones left out."""
    found: dict[str, Any] = {
        name: getattr(spec, name) for name in SPEC_SECRET_FIELDS if getattr(spec, name)
    }
    if spec.deploy is not None:
        for name in DEPLOY_SECRET_FIELDS:
            if getattr(spec.deploy, name):
                found[f"deploy_{name}"] = getattr(spec.deploy, name)
    return found


def public_data(spec: AppSpec) -> dict[str, Any]:
    """``spec`` as JSON without its secrets: what goes into ``apps``."""
    data = spec.model_dump(mode="json", exclude=set(SPEC_SECRET_FIELDS))
    if data.get("deploy") is not None:
        for name in DEPLOY_SECRET_FIELDS:
            data["deploy"].pop(name, None)
    return data


def with_secrets(app: App, secrets: dict[str, Any]) -> App:
    update = {name: secrets[name] for name in SPEC_SECRET_FIELDS if name in secrets}
    if app.deploy is not None:
        deploy = {
            n: secrets[f"deploy_{n}"] for n in DEPLOY_SECRET_FIELDS if f"deploy_{n}" in secrets
        }
        if deploy:
            update["deploy"] = app.deploy.model_copy(update=deploy)
    return app.model_copy(update=update) if update else app


class SecretStore:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.box = SecretBox(store.settings)
        self._readable: bool | None = None

    def _open(self, sealed: str) -> dict[str, Any]:
        text = sealed[len(_PLAIN) :] if sealed.startswith(_PLAIN) else self.box.unseal(sealed)
        value = json.loads(text)
        assert isinstance(value, dict)
        return value

    async def save(self, conn: Connection, app_id: int, spec: AppSpec) -> None:
        """Store ``spec``'s secrets for the app (in the caller's transaction)."""
        secrets = secrets_of(spec)
        if not secrets:
            await conn.execute(sql("secrets_delete"), {"app_id": app_id})
            return
        sealed = self.box.seal(json.dumps(secrets, sort_keys=True))
        await conn.execute(sql("secrets_save"), {"app_id": app_id, "sealed": sealed})

    async def attach(self, conn: Connection, apps: Sequence[App]) -> list[App]:
        """``apps`` with their secrets, when this role may read them."""
        if not apps:
            return []
        if self._readable is None:
            row = await (await conn.execute(sql("secrets_readable"))).fetchone()
            self._readable = bool(row and row["readable"])
        if not self._readable:
            return list(apps)
        rows = await (
            await conn.execute(sql("secrets_of_apps"), {"ids": [a.id for a in apps]})
        ).fetchall()
        sealed = {int(r["app_id"]): r["sealed"] for r in rows}
        return [self.opened(a, sealed[a.id]) if a.id in sealed else a for a in apps]

    def opened(self, app: App, sealed: str) -> App:
        """``app`` with the secrets of its ``app_secrets`` row (read by the caller's query)."""
        return with_secrets(app, self._open(sealed))

    async def seal_plaintext(self) -> int:
        """Seal the rows migration 008 moved out of ``apps``; how many were sealed."""
        return await self._rewrite(only_plain=True)

    async def rotate(self) -> int:
        """Re-encrypt every secret under the first key; how many rows were rewritten."""
        return await self._rewrite(only_plain=False)

    async def _rewrite(self, *, only_plain: bool) -> int:
        count = 0
        async with self.store.connection() as conn, conn.transaction():
            rows = await (await conn.execute(sql("secrets_all_for_update"))).fetchall()
            for row in rows:
                sealed: str = row["sealed"]
                if sealed.startswith(_PLAIN):
                    new = self.box.seal(sealed[len(_PLAIN) :])
                elif only_plain:
                    continue
                else:
                    new = self.box.reseal(sealed)
                await conn.execute(sql("secrets_replace"), {"app_id": row["app_id"], "sealed": new})
                count += 1
        return count
