"""sd_notify settings from the environment systemd gives the worker."""

from __future__ import annotations

import os

from deployq.worker.sdnotify import SdNotifier


def test_the_watchdog_is_only_for_the_process_systemd_named() -> None:
    mine = SdNotifier.from_environ(
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}
    )
    other = SdNotifier.from_environ(
        {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}
    )
    assert mine.watchdog_interval_s == 1.0
    assert other.watchdog_interval_s is None
    assert SdNotifier.from_environ({}).notify("READY=1") is False
