"""Group commit of finished attempts: ``await finisher.finish(lease, outcome)``.

The finishes that arrive while the previous write is in flight are written together, in one
transaction (``store.leases.finish_many``); a lone finish goes out at once as
``store.leases.finish`` (see deployq.store._group_commit). Each caller gets exactly what
``store.leases.finish`` would give it, once committed: the finished Job, or LostJob for its job
alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployq.models import Job
from deployq.store._group_commit import GroupCommit
from deployq.store._job_common import Lease, Outcome

if TYPE_CHECKING:
    from deployq.store._store import Store

Finish = tuple[Lease, Outcome]


class Finisher(GroupCommit[Finish, Job]):
    """Coalesces concurrent ``finish`` calls of one process into group commits."""

    task_name = "deployq-finisher"

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    async def finish(self, lease: Lease, outcome: Outcome) -> Job:
        """``store.leases.finish(lease, outcome)`` as part of a group commit: the finished
        job once committed; LostJob when the job is no longer ours; the database's error."""
        return await self.submit((lease, outcome))

    async def write_batch(self, items: list[Finish]) -> list[Job | BaseException]:
        if len(items) == 1:  # one statement needs no transaction around it
            try:
                return [await self.write_one(items[0])]
            except self.unavailable:
                raise
            except Exception as exc:  # its own error (LostJob...): nothing else to retry
                return [exc]
        return list(await self.store.leases.finish_many(items))

    async def write_one(self, item: Finish) -> Job:
        return await self.store.leases.finish(*item)

    @property
    def transactions(self) -> int:
        """Transactions that committed finishes."""
        return self.batches

    @property
    def finished(self) -> int:
        """Finishes committed in group commits."""
        return self.written

    async def close(self) -> None:
        """Write what is pending, then stop (finishes submitted later start a new run)."""
        await self.drain()
