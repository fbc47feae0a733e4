"""The address that names an attempt's builds on the engine (deployq.builders.attempts)."""

from __future__ import annotations

import ipaddress

from deployq.builders.attempts import ATTEMPT_BITS, MARKER_NAME, attempt_marker


def test_each_attempt_has_its_own_loopback_address_under_one_name() -> None:
    markers = {attempt_marker(job, attempt) for job in range(1, 300) for attempt in range(1, 4)}
    assert len(markers) == 299 * 3
    for marker in markers:
        address = ipaddress.IPv4Address(marker)
        assert address.is_loopback and marker != "127.0.0.1"
    assert attempt_marker(12, 3) == "127.0.0.195"
    assert int(attempt_marker(12, 3).rsplit(".", 1)[1]) % 2**ATTEMPT_BITS == 3
    # one name for every build: BuildKit keeps extra host names in RUN steps' cache keys
    assert MARKER_NAME == "deployq-attempt.invalid"
