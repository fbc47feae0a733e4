"""Back-pressure: the database refuses a job beyond a queue limit; the store says QueueFull.

The limits (``apps.max_queued``, ``DEPLOYQ_MAX_QUEUED``) are enforced by the trigger
``deployq_queue_room`` (sql/004) on every insert of a job, whichever path enqueues it, with
SQLSTATE DQ429 and a JSON detail; ``_db.translate`` turns that into QueueFull here.
"""

from __future__ import annotations

import json

import psycopg

from deployq.errors import QueueFull

#: the SQLSTATE of deployq_queue_room()'s refusal
QUEUE_FULL_SQLSTATE = "DQ429"
#: Retry-After when the refusal carries none
DEFAULT_RETRY_AFTER_S = 30


def queue_full(exc: psycopg.Error) -> QueueFull:
    """The QueueFull of a DQ429 error: its message, and when to try again."""
    retry_after = DEFAULT_RETRY_AFTER_S
    try:
        detail = json.loads(exc.diag.message_detail or "{}")
        retry_after = int(detail.get("retry_after_s") or retry_after)
    except (ValueError, TypeError, AttributeError):
        pass
    reason = exc.diag.message_primary or "queue full"
    return QueueFull(
        f"{reason}; try again in {retry_after}s, once queued builds have started",
        retry_after_s=retry_after,
    )
