"""The Store: one object per process that owns the pool and hands out the stores by area."""

from __future__ import annotations

from deployq.config import Settings
from deployq.db import DatabaseHealth, Pool, open_pool, resolve_dsn
from deployq.db.migrate import pending_on
from deployq.store._apps import AppStore
from deployq.store._console import ConsoleStore
from deployq.store._db import Database, _Connection
from deployq.store._deliveries import DeliveryStore
from deployq.store._deploy import DeployStore
from deployq.store._estimates import EstimateStore
from deployq.store._feed import FeedStore
from deployq.store._jobs import Jobs
from deployq.store._leases import Leases
from deployq.store._logs import LogStore
from deployq.store._metrics import MetricsStore
from deployq.store._notifications import NotificationStore
from deployq.store._queries import sql
from deployq.store._queue import Queue
from deployq.store._reconcile import ReconcileStore
from deployq.store._retention import Retention
from deployq.store._scans import ScanStore
from deployq.store._secrets import SecretStore
from deployq.store._servers import ServerStore
from deployq.store._stats import StatsStore
from deployq.store._tokens import TokenStore
from deployq.store._waits import Waits
from deployq.store._workers import WorkerStore


class Store:
    """Everything deployq keeps in PostgreSQL, grouped by area: ``store.leases.claim(...)``."""

    def __init__(self, pool: Pool, settings: Settings, dsn: str) -> None:
        self.pool = pool
        self.settings = settings
        self.dsn = dsn
        self.db = Database(pool, dsn)
        self.secrets = SecretStore(self)
        self.apps = AppStore(self)
        self.queue = Queue(self)
        self.leases = Leases(self)
        self.jobs = Jobs(self)
        self.waits = Waits(self)
        self.retention = Retention(self)
        self.logs = LogStore(self)
        self.servers = ServerStore(self)
        self.tokens = TokenStore(self)
        self.deliveries = DeliveryStore(self)
        self.notifications = NotificationStore(self)
        self.console = ConsoleStore(self)
        self.workers = WorkerStore(self)
        self.metrics = MetricsStore(self)
        self.reconcile = ReconcileStore(self)
        self.deploy = DeployStore(self)
        self.stats = StatsStore(self)
        self.feed = FeedStore(self)
        self.estimates = EstimateStore(self)
        self.scans = ScanStore(self)

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
            session=_session(settings),
        )
        return cls(pool, settings, dsn)

    @property
    def health(self) -> DatabaseHealth:
        """Up or down; wait for it, or hook the reconnect (see ``deployq.db.health``)."""
        return self.pool.health

    def connection(self, timeout: float | None = None) -> _Connection:
        """A pooled connection whose driver errors become deployq's (see ``_db``)."""
        return self.db.connection(timeout)

    async def close(self) -> None:
        await self.pool.close()

    async def pending_migrations(self) -> list[str]:
        """Migrations not applied yet, asked on a pooled connection (for /readyz)."""
        async with self.connection(timeout=self.settings.db_connect_timeout) as conn:
            return await pending_on(conn)

    async def ping(self) -> None:
        """Raise DatabaseUnavailable unless a query answers."""
        async with self.connection(timeout=self.settings.db_connect_timeout) as conn:
            await conn.execute(sql("ping"))


def _session(settings: Settings) -> dict[str, str]:
    """Settings the database enforces, per connection (sql/004: deployq_queue_room)."""
    if settings.max_queued is None:
        return {}
    return {"deployq.max_queued": str(settings.max_queued)}
