"""Group commit of finished attempts: ``await finisher.finish(lease, outcome)``.

Every commit that carries a NOTIFY serialises on PostgreSQL's notify-queue lock, so one
commit per finished job caps a busy worker below what the database can do. The finisher
writes the finishes that arrive while the previous write is in flight together, in one
transaction (``store.jobs.finish_many``). A lone finish goes out at once (no timer), as
``store.jobs.finish``; under load a batch is whatever arrived during the previous commit, up
to MAX_BATCH.

Each caller gets exactly what ``store.jobs.finish`` would give it, once its transaction has
committed: the finished Job, or LostJob for its job alone. Should the batch fail otherwise
(a deadlock, a constraint, a value PostgreSQL refuses), nothing of it was written and its
finishes are written one by one, each caller getting its own job's answer or error; when the
database is unreachable, every caller of the batch gets that error at once.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psycopg

from deployq.errors import LostJob
from deployq.models import Job
from deployq.store.job_common import Lease, Outcome

if TYPE_CHECKING:
    from deployq.store.base import Store

log = logging.getLogger(__name__)

#: finishes per transaction at most
MAX_BATCH = 64


@dataclass
class _Pending:
    lease: Lease
    outcome: Outcome
    future: asyncio.Future[Job]


class Finisher:
    """Coalesces concurrent ``finish`` calls of one process into group commits."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[_Pending] = []
        self._task: asyncio.Task[None] | None = None
        #: transactions written, finishes in them, batches written one by one (tests read these)
        self.transactions = 0
        self.finished = 0
        self.fallbacks = 0

    async def finish(self, lease: Lease, outcome: Outcome) -> Job:
        """``store.jobs.finish(lease, outcome)`` as part of a group commit: the finished
        job once committed; LostJob when the job is no longer ours; the database's error."""
        future: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(lease, outcome, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="deployq-finisher")
        return await future

    async def _run(self) -> None:
        while self._pending:
            batch = [p for p in self._pending[:MAX_BATCH] if not p.future.done()]
            del self._pending[:MAX_BATCH]
            try:
                if len(batch) == 1:
                    await self._one(batch[0])  # no transaction needed around one statement
                elif batch:
                    await self._flush(batch)
            except Exception as exc:  # a bug here must not leave callers waiting forever
                log.exception("the finisher failed")
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            finally:  # cancelled (close): the callers of this batch learn it
                for pending in batch:
                    if not pending.future.done():
                        pending.future.cancel()

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            answers = await self.store.jobs.finish_many([(p.lease, p.outcome) for p in batch])
        except psycopg.errors.TransactionRollback:
            # a deadlock or serialisation failure: nothing was written; one by one cannot
            # deadlock on this batch's order
            await self._one_by_one(batch)
            return
        except psycopg.OperationalError as exc:  # the database is unreachable: all fail
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        except Exception:  # nothing was written: each finish on its own finds the culprit
            log.debug("a batch of %d finishes failed; writing them one by one", len(batch))
            await self._one_by_one(batch)
            return
        self.transactions += 1
        self.finished += len(batch)
        for pending, answer in zip(batch, answers, strict=True):
            if pending.future.done():
                continue
            if isinstance(answer, LostJob):
                pending.future.set_exception(answer)
            else:
                pending.future.set_result(answer)

    async def _one_by_one(self, batch: list[_Pending]) -> None:
        self.fallbacks += 1
        for pending in batch:
            await self._one(pending)

    async def _one(self, pending: _Pending) -> None:
        if pending.future.done():
            return
        try:
            job = await self.store.jobs.finish(pending.lease, pending.outcome)
        except Exception as exc:  # this job's own error, for its caller
            if not pending.future.done():
                pending.future.set_exception(exc)
            return
        self.transactions += 1
        self.finished += 1
        if not pending.future.done():
            pending.future.set_result(job)

    async def close(self) -> None:
        """Write what is pending, then stop (finishes submitted later start a new run)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})
