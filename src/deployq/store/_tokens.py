"""API tokens: shown once, stored as SHA-256, scoped read < deploy < admin."""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING

from deployq.errors import NotFound
from deployq.models import ApiToken, TokenScope

if TYPE_CHECKING:
    from deployq.store._store import Store

TOKEN_PREFIX = "dq_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def create(self, name: str, scope: TokenScope) -> tuple[ApiToken, str]:
        """A new token; the plain text is returned once and never stored."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    "INSERT INTO api_tokens (name, token_hash, scope) VALUES (%s, %s, %s) "
                    "RETURNING *",
                    (name, hash_token(token), scope.value),
                )
            ).fetchone()
        assert row is not None
        return ApiToken.model_validate(row), token

    async def verify(self, token: str) -> ApiToken | None:
        """The live token with this text, or None (unknown or revoked)."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    "UPDATE api_tokens SET last_used_at = now() WHERE token_hash = %s "
                    "AND revoked_at IS NULL RETURNING *",
                    (hash_token(token),),
                )
            ).fetchone()
        return ApiToken.model_validate(row) if row else None

    async def list(self) -> list[ApiToken]:
        async with self.store.connection() as conn:
            rows = await (await conn.execute("SELECT * FROM api_tokens ORDER BY id")).fetchall()
        return [ApiToken.model_validate(r) for r in rows]

    async def revoke(self, token_id: int) -> None:
        async with self.store.connection() as conn:
            cur = await conn.execute(
                "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
                (token_id,),
            )
        if cur.rowcount == 0:
            raise NotFound(f"no live token with id {token_id}; `deployq token list` shows them")
