"""``store.feed``: the rows of ``job_events`` in the order the live feed sends them.

Ids come from a sequence and transactions commit in any order, so "the rows after id N"
could skip a row with a lower id that commits later. The feed orders rows by the id of
the transaction that wrote them, then by id (``Cursor``), and passes a row on only once
every transaction below its own has ended (``pg_snapshot_xmin``): nothing can appear
behind the cursor any more. The price: a row waits while an older write transaction is
still open somewhere on the server (they are short in deployq).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from deployq.store._queries import sql
from deployq.validation import MAX_ID

if TYPE_CHECKING:
    from deployq.store._store import Store

#: kinds a running job's worker reports through the job row (written by a trigger)
PROGRESS_KINDS = frozenset({"step", "progress"})


class Cursor(NamedTuple):
    """A position in the feed: (transaction id, event id); events after it come next."""

    tx: int
    id: int


@dataclass(frozen=True)
class FeedEvent:
    """One event of the feed: a job changed state, step or progress, or a server changed."""

    id: int
    cursor: Cursor
    at: datetime
    kind: str
    job_id: int | None
    app: str | None
    branch: str | None
    status: str | None
    """the job's status the event leaves it in (None for server events)"""
    from_status: str | None
    actor: str | None
    message: str | None
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        """What the API and ``deployq watch --json`` send."""
        out: dict[str, Any] = {
            "id": self.id,
            "at": self.at.isoformat(),
            "kind": self.kind,
            "job": self.job_id,
            "app": self.app,
            "branch": self.branch,
            "status": self.status,
            "from_status": self.from_status,
            "message": self.message,
            "actor": self.actor,
        }
        for key in ("step", "progress", "server", "attempt"):
            if key in self.data:
                out[key] = self.data[key]
        out["data"] = self.data
        return out


@dataclass(frozen=True)
class FeedPage:
    events: list[FeedEvent]
    cursor: Cursor
    """where the next read starts"""
    held_back: bool
    """rows exist past the cursor that wait for an older transaction to end: read again soon"""


class FeedStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def head(self) -> Cursor:
        """The cursor of now: a reader starting here gets only events not yet passed on."""
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("feed_horizon"))).fetchone()
        assert row is not None
        return Cursor(int(row["horizon"]) - 1, MAX_ID)

    async def cursor_of(self, event_id: int) -> Cursor | None:
        """The cursor right after event ``event_id``; None if no such event is kept."""
        async with self.store.connection() as conn:
            row = await (await conn.execute(sql("feed_cursor_of"), {"id": event_id})).fetchone()
        return Cursor(int(row["tx"]), int(row["id"])) if row is not None else None

    async def after(self, cursor: Cursor, *, limit: int = 1000) -> FeedPage:
        """The events after ``cursor`` that can be passed on now, oldest first."""
        params = {"tx": cursor.tx, "id": cursor.id, "limit": limit}
        async with self.store.connection() as conn:
            rows = await (await conn.execute(sql("feed_after"), params)).fetchall()
        events: list[FeedEvent] = []
        for row in rows:
            if int(row["tx"]) >= int(row["horizon"]):
                return FeedPage(events, cursor, held_back=True)
            event = _event(row)
            events.append(event)
            cursor = event.cursor
        return FeedPage(events, cursor, held_back=False)

    async def prune_server_events(self, older_than_s: float, *, dry_run: bool = False) -> int:
        """Delete server events older than ``older_than_s``; returns how many (``dry_run``:
        counts them, deleting nothing)."""
        params = {"age": timedelta(seconds=older_than_s)}
        async with self.store.connection() as conn:
            if dry_run:
                cur = await conn.execute(sql("feed_count_old_server_events"), params)
                row = await cur.fetchone()
                return int(row["n"]) if row else 0
            cur = await conn.execute(sql("feed_prune_server_events"), params)
        return cur.rowcount


def _event(row: dict[str, Any]) -> FeedEvent:
    data: dict[str, Any] = row["data"] or {}
    kind = str(row["kind"])
    status = row["to_status"]
    if status is None and row["job_id"] is not None:
        status = "running" if kind in PROGRESS_KINDS else row["job_status"]
    return FeedEvent(
        id=int(row["id"]),
        cursor=Cursor(int(row["tx"]), int(row["id"])),
        at=row["at"],
        kind=kind,
        job_id=row["job_id"],
        app=row["app"],
        branch=row["branch"],
        status=status,
        from_status=row["from_status"],
        actor=row["actor"],
        message=row["message"],
        data=data,
    )
