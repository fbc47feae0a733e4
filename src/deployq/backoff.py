"""Exponential backoff with jitter: the delay before another attempt (jobs, notifications)."""

from __future__ import annotations

import random


def backoff_s(attempt: int, base_s: float, factor: float, cap_s: float) -> float:
    """Exponential backoff with equal jitter: between half and all of base·factor^(n-1)."""
    delay = min(cap_s, base_s * factor ** max(0, attempt - 1))
    return delay / 2 + random.uniform(0, delay / 2)
