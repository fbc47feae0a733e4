"""The address that names an attempt's builds on the engine (deployq.builders.attempts)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta, timezone

from deployq.builders.attempts import MARKER_NAME, attempt_marker

AT = datetime(2026, 12, 3, 14, 0, tzinfo=UTC)


def test_each_attempt_has_its_own_local_address_under_one_name() -> None:
    markers = {attempt_marker(job, n, AT) for job in range(1, 300) for n in range(1, 4)}
    assert len(markers) == 299 * 3
    for marker in markers:
        address = ipaddress.IPv6Address(marker)
        assert address.is_private and marker == address.compressed  # fd00::/8, as BuildKit
    address = ipaddress.IPv6Address(attempt_marker(12, 3, AT))
    assert address.exploded.split(":")[-3:] == ["000c", "0000", "0003"]  # job 12, attempt 3
    assert attempt_marker(12, 3, AT).endswith(":c:0:3")
    # one name for every build: BuildKit keeps extra host names in RUN steps' cache keys
    assert MARKER_NAME == "deployq-attempt.invalid"


def test_the_same_job_of_another_database_has_another_address() -> None:
    # job #1 of two test databases (or installations) sharing one engine
    first = attempt_marker(1, 1, AT)
    assert attempt_marker(1, 1, AT + timedelta(microseconds=1)) != first
    assert attempt_marker(1, 1, AT) == first  # the same job: the same address, every time
    # as every process reads the time: aware, in any zone
    assert attempt_marker(1, 1, AT.astimezone(timezone(timedelta(hours=5)))) == first
