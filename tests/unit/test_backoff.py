"""The delay before another attempt: exponential, capped, with jitter."""

from __future__ import annotations

import pytest

from deployq.backoff import backoff_s


@pytest.mark.parametrize(("attempt", "full_s"), [(0, 30), (1, 30), (2, 60), (3, 120), (6, 600)])
def test_the_delay_doubles_per_attempt_up_to_the_cap_with_equal_jitter(
    attempt: int, full_s: float
) -> None:
    delays = [backoff_s(attempt, 30, 2, 600) for _ in range(200)]
    assert all(full_s / 2 <= delay <= full_s for delay in delays)
    assert len(set(delays)) > 1  # jittered: workers that failed together do not retry together
