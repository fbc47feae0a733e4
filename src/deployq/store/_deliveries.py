"""Webhook deliveries: every one recorded, accepted or refused; verified ones keep their body."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import AsyncCursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from deployq.db import Connection
from deployq.errors import NotFound
from deployq.models import Trigger, WebhookDelivery
from deployq.store._job_common import EnqueueResult
from deployq.store._queries import sql

if TYPE_CHECKING:
    from deployq.store._store import Store

#: results a delivery can have (the CHECK constraint of webhook_deliveries.result)
RESULTS = ("accepted", "ignored", "refused", "duplicate", "error")

#: one statement whatever the number of rows (see queries/deliveries.sql)
Cursor = AsyncCursor[DictRow]


@dataclass
class DeliveryRecord:
    """One delivery as the receiver saw it. ``body`` only for verified deliveries."""

    provider: str
    event: str | None
    delivery_id: str | None
    result: str
    status_code: int
    repo: str | None = None
    ref: str | None = None
    job_ids: list[int] = field(default_factory=list)
    reason: str | None = None
    headers: dict[str, str] | None = None
    body: bytes | None = None
    replay_of: int | None = None
    spooled: bool = False
    received_at: datetime | None = None


@dataclass(frozen=True)
class StoredDelivery:
    """A recorded delivery with what is needed to process it again."""

    delivery: WebhookDelivery
    headers: dict[str, str]
    body: bytes | None


class DeliveryStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(self, record: DeliveryRecord) -> int:
        """Insert one delivery (and NOTIFY it); return its row id."""
        [row_id] = await self.record_many([record])
        return row_id

    async def record_many(self, records: list[DeliveryRecord]) -> list[int]:
        """Insert deliveries in one round trip and one commit (the receiver batches the
        deliveries that arrive together); one NOTIFY {"id": last, "count": n}. Ids in order."""
        if not records:
            return []
        async with self.store.connection() as conn:
            async with conn.pipeline(), conn.transaction():
                cursor = await self._insert(conn, records)
            return await _ids(cursor)

    async def enqueue_and_record(
        self,
        triggers: Sequence[Trigger],
        records_for: Callable[[list[EnqueueResult]], list[DeliveryRecord]],
    ) -> tuple[list[EnqueueResult], list[int]]:
        """Group commit of verified deliveries: enqueue the triggers (``jobs.enqueue_many``)
        and insert the records that ``records_for`` makes of their results, all in ONE
        transaction: one commit, one NOTIFY per job (as ``enqueue``) and one for the
        deliveries. Any error rolls everything back and propagates.

        Pipelined: three round trips whatever the number of deliveries (the apps, the jobs,
        then the records with the commit)."""
        async with self.store.connection() as conn:
            async with conn.pipeline(), conn.transaction():
                results = await self.store.queue.enqueue_many(triggers, conn=conn)
                cursor = await self._insert(conn, records_for(results))
            # leaving the pipeline waited for the commit
            return results, await _ids(cursor)

    async def _insert(self, conn: Connection, records: list[DeliveryRecord]) -> Cursor:
        """Queue the inserts and their NOTIFY on ``conn`` (in a transaction and a pipeline);
        the returned cursor yields the ids once the pipeline is synced."""
        params: list[dict[str, Any]] = []
        for record in records:
            if record.result not in RESULTS:
                raise ValueError(f"unknown delivery result {record.result!r}")
            params.append(
                {
                    "received_at": record.received_at,
                    "provider": record.provider,
                    "event": record.event,
                    "delivery_id": record.delivery_id,
                    "repo": record.repo,
                    "ref": record.ref,
                    "result": record.result,
                    "status_code": record.status_code,
                    "job_ids": record.job_ids,
                    "reason": record.reason,
                    "headers": Jsonb(record.headers) if record.headers is not None else None,
                    "body": record.body,
                    "replay_of": record.replay_of,
                    "spooled": record.spooled,
                }
            )
        cursor = conn.cursor()
        if params:
            await cursor.executemany(sql("delivery_add"), params, returning=True)
            await conn.execute(sql("deliveries_notify"), {"count": len(params)})
        return cursor

    async def recent(
        self,
        *,
        limit: int = 50,
        before_id: int | None = None,
        provider: str | None = None,
        result: str | None = None,
    ) -> list[WebhookDelivery]:
        """Newest first; page with ``before_id``."""
        params = {"limit": limit, "before_id": before_id, "provider": provider, "result": result}
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("deliveries_recent"), params)).fetchall()
        return [WebhookDelivery.model_validate(r) for r in rows]

    async def get(self, delivery_row_id: int) -> StoredDelivery:
        """The delivery with its headers and body (None when it was not verified)."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(sql("delivery_get"), {"id": delivery_row_id})
            ).fetchone()
        if row is None:
            raise NotFound(
                f"no webhook delivery #{delivery_row_id}; GET /api/v1/deliveries lists them"
            )
        body = row["body"]
        return StoredDelivery(
            WebhookDelivery.model_validate(row),
            dict(row["headers"] or {}),
            bytes(body) if body is not None else None,
        )

    async def count(self, *, provider: str | None = None, delivery_id: str | None = None) -> int:
        """How many deliveries were recorded (for a provider / delivery id)."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    sql("deliveries_count"), {"provider": provider, "delivery_id": delivery_id}
                )
            ).fetchone()
        return int(row["n"]) if row else 0


async def _ids(cursor: Cursor) -> list[int]:
    """The ids an ``executemany(..., returning=True)`` of one-row inserts returned."""
    ids: list[int] = []
    if cursor.pgresult is None:  # nothing was inserted
        return ids
    while True:
        ids.extend(int(row["id"]) for row in await cursor.fetchall())
        if not cursor.nextset():
            return ids
