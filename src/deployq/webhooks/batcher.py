"""Group commit of verified webhook deliveries.

Each delivery that reaches the database costs a commit, and commits that carry a NOTIFY
serialise on PostgreSQL's notify queue lock: one commit per delivery caps the receiver well
below what the database can insert. The batcher collects the deliveries that arrive while a
batch is being written and writes them together: their jobs (``store.queue.enqueue_many``)
and their webhook_deliveries rows in ONE transaction. A lone delivery is written at once
(no timer); under load a batch is whatever arrived during the previous commit, up to
max_batch (the mechanism is deployq.store.GroupCommit).

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
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from deployq.models import Trigger
from deployq.store import DeliveryRecord, EnqueueResult, GroupCommit, Store
from deployq.webhooks.recorder import DeliveryRecorder

log = logging.getLogger(__name__)

R = TypeVar("R")

#: how long the fallback waits to record one delivery before giving up on its record
RECORD_DEADLINE_S = 5.0


@dataclass
class Delivery:
    """One delivery waiting for its batch. ``build`` turns the results of its triggers
    into the caller's answer and the delivery's record."""

    triggers: list[Trigger]
    build: Callable[[list[EnqueueResult]], tuple[Any, DeliveryRecord]]
    outcome: Any = field(default=None)


class DeliveryBatcher(GroupCommit[Delivery, Any]):
    """``await batcher.submit_delivery(triggers, build)``: enqueue and record one delivery as
    part of a group commit (deployq.store.GroupCommit); returns what ``build`` made of its
    results, once committed."""

    task_name = "deployq-delivery-batcher"

    def __init__(
        self,
        store: Store,
        recorder: DeliveryRecorder,
        db_errors: tuple[type[BaseException], ...],
    ) -> None:
        """``db_errors``: what means "the database is down" (the receiver spools)."""
        super().__init__(db_errors)
        self.store = store
        self.recorder = recorder

    async def submit_delivery(
        self,
        triggers: list[Trigger],
        build: Callable[[list[EnqueueResult]], tuple[R, DeliveryRecord]],
    ) -> R:
        """Wait until the delivery is committed (its jobs and its record); return the
        outcome ``build`` made. Raises the database error when the database is down, or the
        error of this delivery alone (e.g. NotFound for an app that was removed)."""
        return cast(R, await self.submit(Delivery(triggers, build)))

    async def write_batch(self, items: list[Delivery]) -> list[Any]:
        """Every delivery's jobs (in arrival order) and records in one transaction."""
        triggers = [t for d in items for t in d.triggers]

        def records_for(results: list[EnqueueResult]) -> list[DeliveryRecord]:
            records: list[DeliveryRecord] = []
            start = 0
            for delivery in items:
                end = start + len(delivery.triggers)
                delivery.outcome, record = delivery.build(results[start:end])
                records.append(record)
                start = end
            return records

        await self.store.deliveries.enqueue_and_record(triggers, records_for)
        return [d.outcome for d in items]

    async def write_one(self, item: Delivery) -> Any:
        """The path without batching: the delivery's triggers with ``enqueue`` (a commit
        each), then its record; a failure only fails this delivery."""
        results = [await self.store.queue.enqueue(t) for t in item.triggers]
        outcome, record = item.build(results)
        try:  # its jobs are committed: losing the record beats failing the answer
            async with asyncio.timeout(RECORD_DEADLINE_S):
                await self.recorder.record(record)
        except self.unavailable as exc:
            log.warning("could not record a %s delivery: %s", record.provider, type(exc).__name__)
        return outcome

    async def close(self) -> None:
        """Stop writing (pending callers get CancelledError)."""
        await self.cancel()
