"""Group commit of verified webhook deliveries.

Each delivery that reaches the database costs a commit, and commits that carry a NOTIFY
serialise on PostgreSQL's notify queue lock: one commit per delivery caps the receiver well
below what the database can insert. The batcher collects the deliveries that arrive while a
batch is being written and writes them together: their jobs (``store.jobs.enqueue_many``)
and their webhook_deliveries rows in ONE transaction. A lone delivery is written at once
(no timer); under load a batch is whatever arrived during the previous commit, up to
MAX_BATCH.

Semantics kept from the one-by-one path:
- each caller gets its answer only after the transaction holding its jobs committed;
- deliveries of a batch are enqueued in arrival order, so a later push supersedes an
  earlier one and a redelivery in the same batch returns the job of its original;
- a failure of one delivery (an unknown app, a constraint) does not fail the others: the
  batch is rolled back and its deliveries are written one by one, each on its own;
- the database being unreachable fails every delivery of the batch with the database error,
  so each receiver spools its delivery as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import psycopg

from deployq.models import Trigger
from deployq.store import Store
from deployq.store.deliveries import DeliveryRecord
from deployq.store.job_common import EnqueueResult
from deployq.webhooks.recorder import DeliveryRecorder

log = logging.getLogger(__name__)

R = TypeVar("R")

#: deliveries per transaction at most
MAX_BATCH = 64
#: how long the fallback waits to record one delivery before giving up on its record
RECORD_DEADLINE_S = 5.0


@dataclass
class _Pending:
    """One delivery waiting for its batch. ``build`` turns the results of its triggers
    into the caller's answer and the delivery's record."""

    triggers: list[Trigger]
    build: Callable[[list[EnqueueResult]], tuple[Any, DeliveryRecord]]
    future: asyncio.Future[Any]
    outcome: Any = field(default=None)


class DeliveryBatcher:
    """``await batcher.submit(triggers, build)``: enqueue and record one delivery as part
    of a group commit; returns what ``build`` made of its results, once committed."""

    def __init__(
        self,
        store: Store,
        recorder: DeliveryRecorder,
        db_errors: tuple[type[BaseException], ...],
    ) -> None:
        """``db_errors``: what means "the database is down" (the receiver spools)."""
        self.store = store
        self.recorder = recorder
        self.db_errors = db_errors
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        #: batches committed, deliveries in them, batches written one by one (tests read these)
        self.batches = 0
        self.written = 0
        self.fallbacks = 0

    async def submit(
        self,
        triggers: list[Trigger],
        build: Callable[[list[EnqueueResult]], tuple[R, DeliveryRecord]],
    ) -> R:
        """Wait until the delivery is committed (its jobs and its record); return the
        outcome ``build`` made. Raises the database error when the database is down, or the
        error of this delivery alone (e.g. NotFound for an app that was removed)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(triggers, build, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="deployq-delivery-batcher")
        return cast(R, await future)

    async def _run(self) -> None:
        # no timer: a batch is what arrived while the previous one was being written, so a
        # lone delivery goes at once and a busy receiver writes bigger batches
        while self._pending:
            batch = [p for p in self._pending[:MAX_BATCH] if not p.future.done()]
            del self._pending[:MAX_BATCH]
            try:
                if batch:
                    await self._flush(batch)
            except Exception as exc:  # a bug here must not leave callers waiting forever
                log.exception("the delivery batcher failed")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            finally:  # cancelled (close): the callers of this batch learn it
                for pending in batch:
                    if not pending.future.done():
                        pending.future.cancel()

    async def _flush(self, batch: list[_Pending]) -> None:
        triggers = [t for p in batch for t in p.triggers]

        def records_for(results: list[EnqueueResult]) -> list[DeliveryRecord]:
            records: list[DeliveryRecord] = []
            start = 0
            for pending in batch:
                end = start + len(pending.triggers)
                pending.outcome, record = pending.build(results[start:end])
                records.append(record)
                start = end
            return records

        try:
            await self.store.deliveries.enqueue_and_record(triggers, records_for)
        except psycopg.errors.TransactionRollback:
            # a deadlock or serialisation failure against another process's transaction:
            # nothing was written; one by one cannot deadlock on this batch's order
            await self._one_by_one(batch)
            return
        except self.db_errors as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        except Exception:  # one bad delivery: nothing was written, find it by going singly
            log.debug("a batch of %d deliveries failed; writing them one by one", len(batch))
            await self._one_by_one(batch)
            return
        self.batches += 1
        self.written += len(batch)
        for pending in batch:
            if not pending.future.done():
                pending.future.set_result(pending.outcome)

    async def _one_by_one(self, batch: list[_Pending]) -> None:
        """The path without batching: each delivery's triggers with ``enqueue`` (a commit
        each), then its record; a failure only fails its own delivery."""
        self.fallbacks += 1
        for pending in batch:
            if pending.future.done():
                continue
            try:
                results = [await self.store.jobs.enqueue(t) for t in pending.triggers]
                outcome, record = pending.build(results)
            except Exception as exc:  # this delivery's own error, for its caller to handle
                if not pending.future.done():
                    pending.future.set_exception(exc)
                continue
            try:  # its jobs are committed: losing the record beats failing the answer
                async with asyncio.timeout(RECORD_DEADLINE_S):
                    await self.recorder.record(record)
            except self.db_errors as exc:
                log.warning(
                    "could not record a %s delivery: %s", record.provider, type(exc).__name__
                )
            if not pending.future.done():
                pending.future.set_result(outcome)

    async def close(self) -> None:
        """Stop writing (pending callers get CancelledError)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pending in self._pending:
            pending.future.cancel()
        self._pending.clear()
