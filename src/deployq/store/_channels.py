"""The NOTIFY channels of deployq and how their payloads are written (small JSON objects)."""

from __future__ import annotations

import json
from typing import Any

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
    """A NOTIFY payload: compact JSON."""
    return json.dumps(payload, separators=(",", ":"), default=str)
