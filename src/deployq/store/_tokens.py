"""API tokens: shown once, stored as SHA-256, scoped read < deploy < admin."""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from deployq.errors import NotFound
from deployq.models import ApiToken, TokenScope
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store

TOKEN_PREFIX = "dq_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """``store.tokens``: the API tokens."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, name: str, scope: TokenScope) -> tuple[ApiToken, str]:
        """A new token; the plain text is returned once and never stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        params = {"name": name, "hash": hash_token(token), "scope": scope.value}
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("token_create"), params)).fetchone()
        assert row is not None
        return ApiToken.model_validate(row), token

    async def verify(self, token: str) -> ApiToken | None:
        """The live token with this text, or None (unknown or revoked)."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(sql("token_verify"), {"hash": hash_token(token)})
            ).fetchone()
        return ApiToken.model_validate(row) if row else None

    async def all(self) -> list[ApiToken]:
        """Every token, revoked ones included, oldest first."""
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("tokens_all"))).fetchall()
        return [ApiToken.model_validate(r) for r in rows]

    async def revoke(self, token_id: int) -> None:
        async with self.store.connection() as conn:
            cur = await conn.execute(sql("token_revoke"), {"id": token_id})
        if cur.rowcount == 0:
            raise NotFound(f"no live token with id {token_id}; `deployq token list` shows them")
