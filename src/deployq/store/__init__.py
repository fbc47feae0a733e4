"""Everything deployq keeps in PostgreSQL, behind one surface.

Only this package (and ``deployq.db``, which opens connections and migrates) talks to the
driver: store methods take and return deployq's models and raise deployq's errors
(``DatabaseUnavailable``, ``Conflict``, ``InvalidInput``, ...; see ``store/_db.py``). The
modules inside are private: import the names below from ``deployq.store``, never a submodule.
Every SQL statement is a named query in ``store/queries/*.sql``.
"""

from deployq.store._channels import (
    ALL_CHANNELS,
    CHANNEL_CANCEL,
    CHANNEL_DELIVERIES,
    CHANNEL_JOBS,
    CHANNEL_LOGS,
    CHANNEL_NOTIFICATIONS,
    CHANNEL_SERVERS,
)
from deployq.store._console import HeaderStats
from deployq.store._deliveries import DeliveryRecord, StoredDelivery
from deployq.store._feed import Cursor, FeedEvent
from deployq.store._finisher import Finisher
from deployq.store._group_commit import GroupCommit
from deployq.store._job_common import (
    EnqueueResult,
    HeartbeatResult,
    Lease,
    Outcome,
    TakenAttempt,
)
from deployq.store._listen import Listener, Notice
from deployq.store._metrics import JobMetrics
from deployq.store._rescue import StopBuild, rescuer_component
from deployq.store._retention import Component, prune_component
from deployq.store._stats import Histogram, Timings
from deployq.store._store import Store

__all__ = [
    "ALL_CHANNELS",
    "CHANNEL_CANCEL",
    "CHANNEL_DELIVERIES",
    "CHANNEL_JOBS",
    "CHANNEL_LOGS",
    "CHANNEL_NOTIFICATIONS",
    "CHANNEL_SERVERS",
    "Component",
    "Cursor",
    "DeliveryRecord",
    "EnqueueResult",
    "FeedEvent",
    "Finisher",
    "GroupCommit",
    "HeaderStats",
    "HeartbeatResult",
    "Histogram",
    "JobMetrics",
    "Lease",
    "Listener",
    "Notice",
    "Outcome",
    "StopBuild",
    "Store",
    "StoredDelivery",
    "TakenAttempt",
    "Timings",
    "prune_component",
    "rescuer_component",
]
