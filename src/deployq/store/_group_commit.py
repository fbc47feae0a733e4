"""Group commit: write what concurrent callers submit together, one transaction per batch.

Every commit that carries a NOTIFY serialises on PostgreSQL's notify-queue lock, so one
commit per item (a finished job, a webhook delivery) caps a busy process well below what the
database can do. A GroupCommit collects the items that arrive while the previous batch is
being written and writes them together. There is no timer: a lone item goes out at once, and
under load a batch is whatever arrived during the previous commit, up to ``max_batch``.

Each caller gets the answer for its own item once the transaction holding it committed.
When a batch fails otherwise (a deadlock, a constraint, a value PostgreSQL refuses), nothing
of it was written and its items are written one by one, so a bad item fails only its own
caller; when the database is unreachable (``unavailable``), every caller of the batch gets
that error at once.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Generic, TypeVar

from deployq.errors import DatabaseUnavailable, TransactionAborted

log = logging.getLogger(__name__)

I = TypeVar("I")  # noqa: E741 - the item type
R = TypeVar("R")

#: items per transaction at most
MAX_BATCH = 64


@dataclass
class _Pending(Generic[I, R]):
    item: I
    future: asyncio.Future[R]


class GroupCommit(ABC, Generic[I, R]):
    """Subclasses say how to write a batch in one transaction and one item alone."""

    #: name of the writing task (shows in asyncio debugging)
    task_name = "deployq-group-commit"

    def __init__(
        self,
        unavailable: tuple[type[BaseException], ...] = (DatabaseUnavailable,),
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.unavailable = unavailable
        self.max_batch = max_batch
        self._pending: list[_Pending[I, R]] = []
        self._task: asyncio.Task[None] | None = None
        #: batches committed, items in them, batches written one by one (tests read these)
        self.batches = 0
        self.written = 0
        self.fallbacks = 0

    @abstractmethod
    async def write_batch(self, items: list[I]) -> list[R | BaseException]:
        """Write ``items`` in one transaction; per item its answer, or an exception that is
        that item's alone (the others are committed). Raise when nothing was written."""

    @abstractmethod
    async def write_one(self, item: I) -> R:
        """Write one item on its own (the fallback); raise its own error."""

    async def submit(self, item: I) -> R:
        """Wait until ``item`` is committed as part of a batch; return its answer."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=self.task_name)
        return await future

    async def drain(self) -> None:
        """Write what is pending, then return (items submitted later start a new run)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait({self._task})

    async def cancel(self) -> None:
        """Stop writing; callers still waiting get CancelledError."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task})
        for pending in self._pending:
            pending.future.cancel()
        self._pending.clear()

    async def _run(self) -> None:
        while self._pending:
            batch = [p for p in self._pending[: self.max_batch] if not p.future.done()]
            del self._pending[: self.max_batch]
            try:
                if batch:
                    await self._flush(batch)
            except Exception as exc:  # a bug here must not leave callers waiting forever
                log.exception("%s failed", self.task_name)
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
            finally:  # cancelled: the callers of this batch learn it
                for pending in batch:
                    if not pending.future.done():
                        pending.future.cancel()

    async def _flush(self, batch: list[_Pending[I, R]]) -> None:
        try:
            answers = await self.write_batch([p.item for p in batch])
        except TransactionAborted:
            # a deadlock or serialisation failure against another transaction: nothing was
            # written; one by one cannot deadlock on this batch's order
            await self._one_by_one(batch)
            return
        except self.unavailable as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        except Exception:  # nothing was written: each item on its own finds the culprit
            log.debug("%s: a batch of %d failed; writing one by one", self.task_name, len(batch))
            await self._one_by_one(batch)
            return
        self.batches += 1
        self.written += len(batch)
        for pending, answer in zip(batch, answers, strict=True):
            if pending.future.done():
                continue
            if isinstance(answer, BaseException):
                pending.future.set_exception(answer)
            else:
                pending.future.set_result(answer)

    async def _one_by_one(self, batch: list[_Pending[I, R]]) -> None:
        self.fallbacks += 1
        for pending in batch:
            if pending.future.done():
                continue
            try:
                answer = await self.write_one(pending.item)
            except Exception as exc:  # this item's own error, for its caller
                if not pending.future.done():
                    pending.future.set_exception(exc)
                continue
            if not pending.future.done():
                pending.future.set_result(answer)
