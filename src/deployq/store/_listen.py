"""LISTEN on an autocommit connection of its own, reconnecting by itself.

Never LISTEN on a pooled connection that also runs queries: waiting for notifications holds
the connection, and queries would queue behind it (measured in bench/queue_bench.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from deployq.db import connect
from deployq.errors import DatabaseUnavailable
from deployq.store._queries import sql as named

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5
#: at most this long between attempts, so LISTEN is back soon after the database
RECONNECT_MAX_S = 1.0


@dataclass(frozen=True)
class Notice:
    channel: str
    payload: dict[str, Any]


class Listener:
    """``async for notice in Listener(dsn, channels)``: every NOTIFY on those channels.

    ``on_connect`` runs after each (re)connection, once LISTEN is in place: the moment to
    re-read state, since notifications sent while disconnected are lost. ``connected`` is
    set while listening, so callers (and tests) can wait for it instead of sleeping.
    """

    def __init__(
        self,
        dsn: str,
        channels: Iterable[str],
        *,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        on_disconnect: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.dsn = dsn
        self.channels = tuple(channels)
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.connected = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            await self._conn.close()

    async def __aiter__(self) -> AsyncIterator[Notice]:
        delay = RECONNECT_MIN_S
        while not self._closed:
            try:
                self._conn = await connect(self.dsn, autocommit=True)
                for channel in self.channels:
                    await self._conn.execute(
                        sql.SQL(named("listen")).format(channel=sql.Identifier(channel))
                    )
                self.connected.set()
                delay = RECONNECT_MIN_S
                if self.on_connect is not None:
                    await self.on_connect()
                async for notify in self._conn.notifies():
                    yield Notice(notify.channel, _decode(notify.payload))
            except (psycopg.Error, DatabaseUnavailable, OSError) as exc:
                if self._closed:
                    return
                self.connected.clear()
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                if delay == RECONNECT_MIN_S:  # the first failure since it last worked
                    log.warning("LISTEN connection lost (%s); reconnecting", reason)
                if self.on_disconnect is not None:
                    await self.on_disconnect(reason)
                await asyncio.sleep(delay)
                delay = min(RECONNECT_MAX_S, delay * 2)
            finally:
                if self._conn is not None and not self._conn.closed:
                    await self._conn.close()
                self._conn = None


def _decode(payload: str) -> dict[str, Any]:
    try:
        value = json.loads(payload) if payload else {}
    except json.JSONDecodeError:
        return {"raw": payload}
    return value if isinstance(value, dict) else {"value": value}
