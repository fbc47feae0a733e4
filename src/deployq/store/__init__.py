"""All SQL of deployq lives in this package. Front doors and the worker go through Store."""

from deployq.store.base import ALL_CHANNELS, Store
from deployq.store.jobs import EnqueueResult, HeartbeatResult, Lease, Outcome

__all__ = ["ALL_CHANNELS", "EnqueueResult", "HeartbeatResult", "Lease", "Outcome", "Store"]
