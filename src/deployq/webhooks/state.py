"""What the web application shares between requests: the store, the spool, known secrets."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from deployq.config import Settings
from deployq.errors import DatabaseUnavailable
from deployq.models import App
from deployq.store import Store
from deployq.webhooks.batcher import DeliveryBatcher
from deployq.webhooks.bodies import BodyBudget
from deployq.webhooks.metrics import Metrics
from deployq.webhooks.recorder import DeliveryRecorder
from deployq.webhooks.spool import Spool

#: what counts as "the database is down" (rather than a bug): spool and retry later
DB_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    OSError,
    TimeoutError,
)


@dataclass(frozen=True)
class KnownApp:
    """An app as the receiver needs it when the database may be gone: name and secret."""

    name: str
    identity: str
    secret: str | None


#: how long apps read from the database are trusted without reading them again. A delivery
#: that the cached secrets do not verify, or whose repository the cache does not know, is
#: always checked against the database, so the staleness only means that a secret that was
#: just replaced still verifies for this long.
APP_CACHE_TTL_S = 5.0


@dataclass
class AppCache:
    """The last apps seen per repository identity: spares a query per delivery, and lets
    deliveries be verified (and spooled) while PostgreSQL is unreachable."""

    by_identity: dict[str, list[KnownApp]] = field(default_factory=dict)
    seen_at: dict[str, float] = field(default_factory=dict)
    #: reads under way, by the identities they read
    _reads: dict[tuple[str, ...], asyncio.Future[list[KnownApp]]] = field(
        default_factory=dict, init=False, repr=False
    )

    def remember(self, identities: list[str], apps: list[App]) -> None:
        now = time.monotonic()
        for identity in identities:
            self.by_identity[identity] = [
                KnownApp(a.name, a.repo_identity, a.webhook_secret)
                for a in apps
                if a.repo_identity == identity
            ]
            self.seen_at[identity] = now

    def load(self, apps: list[App]) -> None:
        now = time.monotonic()
        self.by_identity = {}
        for app in apps:
            self.by_identity.setdefault(app.repo_identity, []).append(
                KnownApp(app.name, app.repo_identity, app.webhook_secret)
            )
        self.seen_at = dict.fromkeys(self.by_identity, now)

    def lookup(self, identities: list[str]) -> list[KnownApp]:
        return [app for identity in identities for app in self.by_identity.get(identity, [])]

    def fresh(self, identities: list[str]) -> list[KnownApp] | None:
        """The cached apps when every identity was read within the TTL, else None."""
        now = time.monotonic()
        for identity in identities:
            seen = self.seen_at.get(identity)
            if seen is None or now - seen >= APP_CACHE_TTL_S:
                return None
        return self.lookup(identities)

    async def read(
        self,
        identities: list[str],
        fetch: Callable[[list[str]], Awaitable[list[App]]],
        deadline_s: float,
    ) -> list[KnownApp]:
        """The apps of these identities as ``fetch`` reads them from the database now, and
        remembered. Deliveries that need the same identities while a read is under way wait
        for that read instead of starting their own: when the TTL ran out under load, every
        delivery in flight missed at once (~120 reads of the apps and their sealed secrets per
        2,500 deliveries in the webhook bench, each holding a pooled connection). The read ends
        within ``deadline_s``; its error (TimeoutError too) reaches every delivery waiting."""
        key = tuple(identities)
        pending = self._reads.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read(identities, fetch(identities), deadline_s))
            self._reads[key] = pending
            pending.add_done_callback(functools.partial(self._read_done, key))
        return await asyncio.shield(pending)

    def _read_done(self, key: tuple[str, ...], read: asyncio.Future[list[KnownApp]]) -> None:
        del self._reads[key]
        if not read.cancelled():
            read.exception()  # raised to the deliveries that waited, if any still did

    async def _read(
        self, identities: list[str], reading: Awaitable[list[App]], deadline_s: float
    ) -> list[KnownApp]:
        async with asyncio.timeout(deadline_s):
            apps = await reading
        self.remember(identities, apps)
        return [KnownApp(a.name, a.repo_identity, a.webhook_secret) for a in apps]


@dataclass
class WebState:
    """Per web application: shared by every handler through ``request.app[STATE_KEY]``."""

    store: Store
    spool: Spool
    metrics: Metrics
    recorder: DeliveryRecorder
    apps: AppCache = field(default_factory=AppCache)
    #: set after a database failure; deliveries go straight to the spool until it is replayed
    db_down: bool = False
    #: set after each replay of the spool (tests and the bench wait on it)
    replayed: asyncio.Event = field(default_factory=asyncio.Event)
    #: group commit of verified deliveries (deployq.webhooks.batcher)
    batcher: DeliveryBatcher = field(init=False)
    #: request bodies in memory, all requests together (deployq.webhooks.bodies)
    bodies: BodyBudget = field(init=False)

    def __post_init__(self) -> None:
        self.batcher = DeliveryBatcher(self.store, self.recorder, DB_ERRORS)
        self.bodies = BodyBudget(self.store.settings.body_memory_bytes)

    @property
    def settings(self) -> Settings:
        return self.store.settings


STATE_KEY = web.AppKey("deployq_state", WebState)
