"""The Store: one object per process that owns the pool and hands out the stores by area."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import psycopg

from deployq.config import Settings
from deployq.db import Pool, describe_dsn, open_pool, resolve_dsn
from deployq.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from deployq.store.apps import AppStore
    from deployq.store.deliveries import DeliveryStore
    from deployq.store.deploy import DeployStore
    from deployq.store.jobs import JobStore
    from deployq.store.logs import LogStore
    from deployq.store.notifications import NotificationStore
    from deployq.store.servers import ServerStore
    from deployq.store.tokens import TokenStore

#: NOTIFY channels. Payloads are small JSON objects.
CHANNEL_JOBS = "deployq_jobs"  # {"id", "app", "status", "kind"}: any job change
CHANNEL_LOGS = "deployq_logs"  # {"job", "seq"}: new log lines up to seq
CHANNEL_CANCEL = "deployq_cancel"  # {"id", "force"}: stop this running job
CHANNEL_SERVERS = "deployq_servers"  # {"id", "name"}: a server changed (drain, health)
CHANNEL_NOTIFICATIONS = "deployq_notifications"  # {"id"}: outbox rows to send
CHANNEL_DELIVERIES = "deployq_deliveries"  # {"id"}: a webhook delivery was recorded
ALL_CHANNELS = (
    CHANNEL_JOBS,
    CHANNEL_LOGS,
    CHANNEL_CANCEL,
    CHANNEL_SERVERS,
    CHANNEL_NOTIFICATIONS,
    CHANNEL_DELIVERIES,
)


def dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), default=str)


class Store:
    """Everything deployq keeps in PostgreSQL, grouped by area: ``store.jobs.claim(...)``."""

    def __init__(self, pool: Pool, settings: Settings, dsn: str) -> None:
        from deployq.store.apps import AppStore
        from deployq.store.deliveries import DeliveryStore
        from deployq.store.deploy import DeployStore
        from deployq.store.jobs import JobStore
        from deployq.store.logs import LogStore
        from deployq.store.notifications import NotificationStore
        from deployq.store.servers import ServerStore
        from deployq.store.tokens import TokenStore
        from deployq.store.workers import WorkerStore

        self.pool = pool
        self.settings = settings
        self.dsn = dsn
        self.apps: AppStore = AppStore(self)
        self.jobs: JobStore = JobStore(self)
        self.logs: LogStore = LogStore(self)
        self.servers: ServerStore = ServerStore(self)
        self.tokens: TokenStore = TokenStore(self)
        self.deliveries: DeliveryStore = DeliveryStore(self)
        self.notifications: NotificationStore = NotificationStore(self)
        from deployq.store.console import ConsoleStore

        self.console: ConsoleStore = ConsoleStore(self)
        self.workers: WorkerStore = WorkerStore(self)
        self.deploy: DeployStore = DeployStore(self)

    @classmethod
    async def open(
        cls, settings: Settings, dsn: str | None = None, *, min_size: int | None = None
    ) -> Store:
        """Resolve the DSN (starting the embedded server if needed) and open the pool."""
        dsn = dsn or resolve_dsn(settings)
        pool = await open_pool(
            dsn,
            min_size=min_size or settings.db_pool_min,
            max_size=max(settings.db_pool_max, min_size or 1),
            timeout_s=settings.db_connect_timeout,
        )
        return cls(pool, settings, dsn)

    async def close(self) -> None:
        await self.pool.close()

    async def ping(self) -> None:
        """Raise DatabaseUnavailable unless a query answers."""
        try:
            async with self.pool.connection(timeout=self.settings.db_connect_timeout) as conn:
                await conn.execute("SELECT 1")
        except (psycopg.Error, TimeoutError) as exc:
            raise DatabaseUnavailable(
                f"PostgreSQL at {describe_dsn(self.dsn)} does not answer: {exc}"
            ) from exc
