"""The notification outbox: rows written in the job's own transaction, sent by the notifier."""

from __future__ import annotations

from typing import TYPE_CHECKING

from deployq.db import Connection
from deployq.models import Job, NotifyEvent

if TYPE_CHECKING:
    from deployq.store.base import Store


class NotificationStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def create_for_job(
        self,
        conn: Connection,
        job: Job,
        event: NotifyEvent,
        *,
        retry_scheduled: bool = False,
    ) -> list[int]:
        """Write the outbox rows for this event of this job (inside the caller's transaction).

        Returns the new notification ids.
        """
        # Filled in by the notifications work (issue 6): recipients per app and event.
        return []
