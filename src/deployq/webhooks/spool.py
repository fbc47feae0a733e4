"""The webhook spool: verified deliveries kept on disk while PostgreSQL is unreachable.

Layout, under ``settings.spool_dir``:

- ``current.jsonl``: one JSON record per line, appended and fsync'd before the forge gets its
  202 (the directory is fsync'd when the file is created).
- ``replay-<ns>.jsonl``: a batch being replayed. Replay first renames ``current.jsonl`` (an
  atomic rename, so new deliveries go to a fresh file), processes every record, then deletes
  the batch. A crash mid-replay leaves the batch for the next replay; records processed twice
  cannot create jobs twice, because each record carries a delivery id (one is generated when
  the forge sent none) and enqueue dedupes on it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CURRENT = "current.jsonl"
BATCH_GLOB = "replay-*.jsonl"


@dataclass
class SpoolRecord:
    """A verified delivery, as received."""

    provider: str
    event: str
    delivery_id: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    apps: list[str] | None = None
    """Build only these apps (those whose secret signed it); None: every matching app."""

    def to_line(self) -> bytes:
        data = {
            "provider": self.provider,
            "event": self.event,
            "delivery_id": self.delivery_id,
            "headers": self.headers,
            "body": base64.b64encode(self.body).decode(),
            "received_at": self.received_at.isoformat(),
            "apps": self.apps,
        }
        return json.dumps(data, separators=(",", ":")).encode() + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> SpoolRecord:
        data: dict[str, Any] = json.loads(line)
        return cls(
            provider=str(data["provider"]),
            event=str(data["event"]),
            delivery_id=str(data["delivery_id"]),
            headers={str(k): str(v) for k, v in dict(data["headers"]).items()},
            body=base64.b64decode(data["body"]),
            received_at=datetime.fromisoformat(data["received_at"]),
            apps=[str(a) for a in data["apps"]] if data.get("apps") is not None else None,
        )


def generated_delivery_id() -> str:
    """For deliveries the forge sent without an id: unique, and kept through replays."""
    return f"spool-{uuid.uuid4()}"


class Spool:
    """Append-only, fsync'd; replayed in batches (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = asyncio.Lock()
        self._replay_lock = asyncio.Lock()
        #: set whenever a record is appended, so the replayer wakes up
        self.appended = asyncio.Event()

    async def append(self, record: SpoolRecord) -> None:
        """Write the record durably; return only once it is on disk."""
        async with self._lock:
            await asyncio.to_thread(self._append_sync, record.to_line())
        self.appended.set()

    def _append_sync(self, line: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / CURRENT
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and not _ends_with_newline(path, size):
                line = b"\n" + line  # a torn line from a crash stays on a line of its own
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(self.directory)

    def pending(self) -> bool:
        """Whether anything waits to be replayed."""
        if not self.directory.is_dir():
            return False
        current = self.directory / CURRENT
        return (current.exists() and current.stat().st_size > 0) or any(
            self.directory.glob(BATCH_GLOB)
        )

    async def replay(self, process: Callable[[SpoolRecord], Awaitable[None]]) -> int:
        """Hand every spooled record to ``process``, oldest first (the records of a batch
        file concurrently, started in order); return how many.

        A record whose processing raises stops the replay; its batch stays for the next one
        (a record processed twice becomes its job once: jobs dedupe on the delivery id).
        """
        async with self._replay_lock:
            async with self._lock:
                await asyncio.to_thread(self._rotate)
            done = 0
            for batch in sorted(self.directory.glob(BATCH_GLOB)):
                records = await asyncio.to_thread(_read_batch, batch)
                # all at once, in order: they share group commits instead of one commit each
                await asyncio.gather(*(process(record) for record in records))
                done += len(records)
                await asyncio.to_thread(_unlink, batch, self.directory)
            return done

    def _rotate(self) -> None:
        current = self.directory / CURRENT
        if current.exists() and current.stat().st_size > 0:
            os.rename(current, self.directory / f"replay-{time.time_ns():020d}.jsonl")
            _fsync_dir(self.directory)


def _read_batch(path: Path) -> list[SpoolRecord]:
    records = []
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(SpoolRecord.from_line(line))
        except (ValueError, KeyError, TypeError) as exc:
            # only a write torn by a crash: its delivery was never acknowledged to the forge
            log.warning("spool %s line %d is unreadable (%s); skipped", path.name, number, exc)
    return records


def _ends_with_newline(path: Path, size: int) -> bool:
    with path.open("rb") as handle:
        handle.seek(size - 1)
        return handle.read(1) == b"\n"


def _unlink(path: Path, directory: Path) -> None:
    path.unlink()
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
