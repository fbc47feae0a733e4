"""Group commit for webhook_deliveries: the deliveries that arrive together are written in
one INSERT and one commit. Each caller still waits until its row is committed."""

from __future__ import annotations

import asyncio
import contextlib

from deployq.store import DeliveryRecord, Store

#: rows per INSERT at most
MAX_BATCH = 200


class DeliveryRecorder:
    """``await recorder.record(rec)`` returns the row id once committed (or raises)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[DeliveryRecord, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def record(self, record: DeliveryRecord) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="deployq-delivery-recorder")
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                try:
                    ids = await self.store.deliveries.record_many([r for r, _ in batch])
                except Exception as exc:  # every waiter learns why (usually the database)
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), row_id in zip(batch, ids, strict=True):
                    if not future.done():
                        future.set_result(row_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
