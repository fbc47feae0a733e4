"""Webhook deliveries: every one recorded, accepted or refused; verified ones keep their body."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from psycopg import AsyncCursor
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from deployq.db import Connection
from deployq.errors import NotFound
from deployq.models import App, Trigger, WebhookDelivery
from deployq.store._channels import CHANNEL_DELIVERIES
from deployq.store._job_common import EnqueueResult

if TYPE_CHECKING:
    from deployq.store._store import Store

#: results a delivery can have (the CHECK constraint of webhook_deliveries.result)
RESULTS = ("accepted", "ignored", "refused", "duplicate", "error")

_SUMMARY_COLUMNS = (
    "id, received_at, provider, event, delivery_id, repo, ref, result, status_code, job_ids, "
    "reason, replay_of, spooled"
)

_COLUMNS = (
    "received_at",
    "provider",
    "event",
    "delivery_id",
    "repo",
    "ref",
    "result",
    "status_code",
    "job_ids",
    "reason",
    "headers",
    "body",
    "replay_of",
    "spooled",
)
_ROW = "(coalesce(%s, now()), " + ", ".join(["%s"] * (len(_COLUMNS) - 1)) + ")"
#: one statement whatever the number of rows: prepared once, sent in a pipeline per batch
#: (a multi-row VALUES would be a new statement, parsed again, for every batch size)
Cursor = AsyncCursor[DictRow]
_INSERT_ONE = f"INSERT INTO webhook_deliveries ({', '.join(_COLUMNS)}) VALUES {_ROW} RETURNING id"


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

    async def record_many(self, records: builtins.list[DeliveryRecord]) -> builtins.list[int]:
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
        records_for: Callable[[builtins.list[EnqueueResult]], builtins.list[DeliveryRecord]],
    ) -> tuple[builtins.list[EnqueueResult], builtins.list[int]]:
        """Group commit of verified deliveries: enqueue the triggers (``jobs.enqueue_many``)
        and insert the records that ``records_for`` makes of their results, all in ONE
        transaction: one commit, one NOTIFY per job (as ``enqueue``) and one for the
        deliveries. Any error rolls everything back and propagates.

        Pipelined: three round trips whatever the number of deliveries (the apps, the jobs,
        then the records with the commit)."""
        async with self.store.connection() as conn:
            async with conn.pipeline(), conn.transaction():
                results = await self.store.jobs.enqueue_many(triggers, conn=conn)
                cursor = await self._insert(conn, records_for(results))
            # leaving the pipeline waited for the commit
            return results, await _ids(cursor)

    async def _insert(self, conn: Connection, records: builtins.list[DeliveryRecord]) -> Cursor:
        """Queue the inserts and their NOTIFY on ``conn`` (in a transaction and a pipeline);
        the returned cursor yields the ids once the pipeline is synced."""
        params: builtins.list[tuple[Any, ...]] = []
        for record in records:
            if record.result not in RESULTS:
                raise ValueError(f"unknown delivery result {record.result!r}")
            params.append(
                (
                    record.received_at,
                    record.provider,
                    record.event,
                    record.delivery_id,
                    record.repo,
                    record.ref,
                    record.result,
                    record.status_code,
                    record.job_ids,
                    record.reason,
                    Jsonb(record.headers) if record.headers is not None else None,
                    record.body,
                    record.replay_of,
                    record.spooled,
                )
            )
        cursor = conn.cursor()
        if params:
            await cursor.executemany(_INSERT_ONE, params, returning=True)
            # currval: the last id this session took, i.e. the last row just inserted
            await conn.execute(
                "SELECT pg_notify(%s, json_build_object('id', "
                "currval(pg_get_serial_sequence('webhook_deliveries', 'id')), "
                "'count', %s::int)::text)",
                (CHANNEL_DELIVERIES, len(params)),
            )
        return cursor

    async def matching_apps(self, identities: builtins.list[str]) -> builtins.list[App]:
        """Apps configured for any of these repository identities (the receiver's candidates,
        whose secrets it verifies a delivery against)."""
        async with self.store.connection() as conn:
            rows = await (
                await conn.execute(
                    "SELECT * FROM apps WHERE repo_identity = ANY(%s) ORDER BY name",
                    (identities,),
                )
            ).fetchall()
        return [App.model_validate(r) for r in rows]

    async def list(
        self,
        *,
        limit: int = 50,
        before_id: int | None = None,
        provider: str | None = None,
        result: str | None = None,
    ) -> builtins.list[WebhookDelivery]:
        """Newest first; page with ``before_id``."""
        where = ["TRUE"]
        params: list[Any] = []
        if before_id is not None:
            where.append("id < %s")
            params.append(before_id)
        if provider is not None:
            where.append("provider = %s")
            params.append(provider)
        if result is not None:
            where.append("result = %s")
            params.append(result)
        params.append(limit)
        sql = (
            f"SELECT {_SUMMARY_COLUMNS} FROM webhook_deliveries WHERE {' AND '.join(where)} "
            "ORDER BY id DESC LIMIT %s"
        )
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql, params)).fetchall()
        return [WebhookDelivery.model_validate(r) for r in rows]

    async def get(self, delivery_row_id: int) -> StoredDelivery:
        """The delivery with its headers and body (None when it was not verified)."""
        async with self.store.connection() as conn:
            row = await (
                await conn.execute(
                    f"SELECT {_SUMMARY_COLUMNS}, headers, body FROM webhook_deliveries "
                    "WHERE id = %s",
                    (delivery_row_id,),
                )
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
                    "SELECT count(*) AS n FROM webhook_deliveries "
                    "WHERE (%(p)s::text IS NULL OR provider = %(p)s) "
                    "AND (%(d)s::text IS NULL OR delivery_id = %(d)s)",
                    {"p": provider, "d": delivery_id},
                )
            ).fetchone()
        return int(row["n"]) if row else 0


async def _ids(cursor: Cursor) -> builtins.list[int]:
    """The ids an ``executemany(..., returning=True)`` of one-row inserts returned."""
    ids: builtins.list[int] = []
    if cursor.pgresult is None:  # nothing was inserted
        return ids
    while True:
        ids.extend(int(row["id"]) for row in await cursor.fetchall())
        if not cursor.nextset():
            return ids
