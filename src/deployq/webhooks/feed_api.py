"""``GET /api/v1/events``: the live feed as server-sent events.

Each event is ``id: <event id>`` and ``data: <JSON>`` (``FeedEvent.as_json``); a client
that reconnects with ``Last-Event-ID`` (or ``?after=``) gets what it missed first.
``?app=a,b`` and ``?status=queued,running`` filter. Control events: ``event: reset`` (the
id to resume from is no longer kept; the feed goes on from now) and ``event: dropped``, the
last one a client gets when it fell more than DEPLOYQ_FEED_BUFFER events behind, with the
id to resume from. A comment line every KEEPALIVE_S keeps proxies from closing an idle
stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from typing import Any

from aiohttp import web

from deployq.feed import Dropped, FeedFilter, FeedHub, Subscription
from deployq.models import JobStatus
from deployq.store import Store
from deployq.validation import MAX_ID
from deployq.webhooks.errors import ApiError
from deployq.webhooks.state import STATE_KEY

log = logging.getLogger(__name__)

FEED_KEY = web.AppKey("deployq_feed_hub", FeedHub)
#: a comment line after this long without an event
KEEPALIVE_S = 15.0
#: how long a client asks to wait before reconnecting (the SSE ``retry:`` field)
RECONNECT_MS = 2000
#: how long a dropped client's last bytes may take to leave before the connection is cut
DROP_LINGER_S = 30.0
#: how long writing the last event to a dropped client may take
LAST_WRITE_S = 1.0
#: the kernel's send buffer of a feed connection (instead of autotuning up to megabytes): a
#: client that stops reading is then noticed after DEPLOYQ_FEED_BUFFER events, not after
#: megabytes queued in the kernel; 64 KiB per round trip is ample for a feed of small events
SEND_BUFFER_BYTES = 64 * 1024


def frame(data: dict[str, Any], *, event_id: int | None = None, event: str | None = None) -> bytes:
    """One server-sent event."""
    lines = []
    if event is not None:
        lines.append(f"event: {event}")
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), default=str))
    return ("\n".join(lines) + "\n\n").encode()


def _filter(request: web.Request) -> FeedFilter:
    def listed(name: str) -> frozenset[str] | None:
        raw = request.query.get(name, "")
        values = frozenset(v.strip() for v in raw.split(",") if v.strip())
        return values or None

    statuses = listed("status")
    known = {s.value for s in JobStatus}
    if statuses is not None and not statuses <= known:
        raise ApiError(
            400,
            "invalid_input",
            "status is a comma-separated list of " + ", ".join(s.value for s in JobStatus),
        )
    return FeedFilter(apps=listed("app"), statuses=statuses)


def _resume_from(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID", "").strip() or request.query.get("after", "")
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 0 <= int(raw) <= MAX_ID:
        raise ApiError(400, "invalid_input", "Last-Event-ID (or after) must be an event id")
    return int(raw)


async def stream_events(request: web.Request) -> web.StreamResponse:
    """The live feed, filtered, resumable; see the module docstring."""
    flt = _filter(request)
    after = _resume_from(request)
    store = request.app[STATE_KEY].store
    hub = request.app[FEED_KEY]
    async with hub.subscribe(flt, after=after) as sub:
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        _bound_send_buffer(request)
        await resp.prepare(request)
        writer = _Writer(resp, after)
        sending = asyncio.create_task(writer.send_all(sub, store))
        gone = asyncio.create_task(sub.gone.wait())
        try:
            await asyncio.wait({sending, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not sending.done():
                sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                # a client that went away (reset) is the normal end of a stream
                with contextlib.suppress(ConnectionError):
                    await sending
        if sub.dropped is not None:
            await writer.last_words(request, sub.dropped)
    return resp


def _bound_send_buffer(request: web.Request) -> None:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


class _Writer:
    """Writes a subscription to one response; knows the last event that was fully written."""

    def __init__(self, resp: web.StreamResponse, after: int | None) -> None:
        self.resp = resp
        self.written_id = after

    async def send_all(self, sub: Subscription, store: Store) -> None:
        await self.resp.write(f"retry: {RECONNECT_MS}\n\n".encode())
        if sub.reset is not None:
            await self.resp.write(frame({"reason": sub.reset}, event="reset"))
        try:
            async for event in sub.events(store, idle_s=KEEPALIVE_S):
                if event is None:
                    await self.resp.write(b": keep-alive\n\n")
                    continue
                write = self.resp.write(frame(event.as_json(), event_id=event.id))
                # aiohttp hands the bytes to the transport before its first await (the
                # drain), so even a write cancelled there reaches the client
                self.written_id = event.id
                await write
        except Dropped:
            return

    async def last_words(self, request: web.Request, dropped: Dropped) -> None:
        """Tell a dropped client why and where to resume, then end the connection without
        waiting for it to read (its unread bytes go out as it reads, for DROP_LINGER_S)."""
        log.info("live feed client %s dropped: %s", request.remote, dropped.message)
        data = {"reason": dropped.message, "resume_after": self.written_id}
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LAST_WRITE_S):
                await self.resp.write(frame(data, event_id=self.written_id, event="dropped"))
        transport = request.transport
        if transport is not None and not transport.is_closing():
            if request.version >= (1, 1):
                transport.write(b"0\r\n\r\n")  # the end of the chunked body
            transport.close()
            asyncio.get_running_loop().call_later(DROP_LINGER_S, transport.abort)
