"""What the shipped systemd units and environment file promise, read from the files."""

from __future__ import annotations

import re

import pytest

from deployq.config import ENV_PREFIX, Settings
from systemd_support import (
    ENV_EXAMPLE,
    ROOT,
    SHIPPED_EXEC,
    UNITS,
    WORKER_UNITS,
    directives,
    seconds,
)

# -- what the units promise -------------------------------------------------------------------


@pytest.mark.parametrize("name", UNITS)
def test_units_restart_on_failure_and_stop_gracefully(name: str) -> None:
    service = directives(name)["Service"]

    assert service["Type"] in {"notify", "exec"}
    assert service["Restart"] == "on-failure"
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert service["EnvironmentFile"] == "/etc/deployq/deployq.env"
    assert service["User"] == service["Group"] == "deployq"
    assert service["ExecStart"].startswith(SHIPPED_EXEC + " ")
    assert directives(name)["Unit"]["PartOf"] == "deployq.target"
    assert directives(name)["Install"]["WantedBy"] == "deployq.target"


@pytest.mark.parametrize("name", UNITS)
def test_notify_units_have_a_watchdog_and_only_the_main_process_notifies(name: str) -> None:
    service = directives(name)["Service"]
    if service["Type"] != "notify":
        assert "WatchdogSec" not in service, "a watchdog needs Type=notify"
        return

    assert service["NotifyAccess"] == "main"
    assert seconds(service["WatchdogSec"]) >= 10


@pytest.mark.parametrize("name", WORKER_UNITS)
def test_workers_outlast_the_shutdown_grace_and_can_use_docker(name: str) -> None:
    service = directives(name)["Service"]
    grace = Settings.model_fields["shutdown_grace"].default

    assert service["ExecStart"] == f"{SHIPPED_EXEC} worker"
    assert service["Type"] == "notify"
    assert seconds(service["TimeoutStopSec"]) >= grace + 30
    assert service["SupplementaryGroups"] == "docker"
    assert "AF_UNIX" in service["RestrictAddressFamilies"].split()


@pytest.mark.parametrize("name", UNITS)
def test_units_are_hardened_but_keep_the_data_dir_writable(name: str) -> None:
    service = directives(name)["Service"]

    for option in (
        "NoNewPrivileges",
        "PrivateTmp",
        "ProtectHome",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "RestrictSUIDSGID",
        "LockPersonality",
    ):
        assert service[option] == "yes", option
    assert service["ProtectSystem"] == "strict"
    assert service["ReadWritePaths"] == "/var/lib/deployq"
    assert service["StateDirectory"] == "deployq"
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_templated_worker_is_the_worker_unit_with_an_instance_name() -> None:
    plain = directives("deployq-worker.service")
    template = directives("deployq-worker@.service")

    assert dict(plain["Service"]) == dict(template["Service"])
    assert template["Unit"]["Description"] == plain["Unit"]["Description"] + " %i"


def test_target_enables_web_and_worker() -> None:
    target = directives("deployq.target")

    assert target["Install"]["Also"].split() == ["deployq-web.service", "deployq-worker.service"]
    assert target["Install"]["WantedBy"] == "multi-user.target"


def test_worker_watchdog_pings_fit_the_units_watchdog() -> None:
    from deployq.worker.sdnotify import SdNotifier

    period = seconds(directives("deployq-worker.service")["Service"]["WatchdogSec"])
    notifier = SdNotifier("/run/notify", watchdog_usec=int(period * 1_000_000))

    assert notifier.watchdog_interval_s == period / 2


# -- the environment file ---------------------------------------------------------------------

_ASSIGNMENT = re.compile(r"^#?(DEPLOYQ_[A-Z0-9_]+)=(.*)$")


def example_assignments() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = _ASSIGNMENT.match(line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} is listed twice"
            found[match.group(1)] = match.group(2)
    return found


def test_env_example_lists_every_setting_and_nothing_else() -> None:
    expected = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    listed = set(example_assignments())

    missing = sorted(expected - listed)
    assert not missing, (
        f"add to {ENV_EXAMPLE.relative_to(ROOT)} (documented, default commented out): "
        + ", ".join(
            f"{n}={Settings.model_fields[n[len(ENV_PREFIX) :].lower()].default}" for n in missing
        )
    )
    assert not sorted(listed - expected), "settings that no longer exist"


def test_each_setting_is_documented_by_a_comment_above_it_or_its_group() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if _ASSIGNMENT.match(line):
            above = index - 1
            while above >= 0 and _ASSIGNMENT.match(lines[above]):
                above -= 1
            comment = lines[above] if above >= 0 else ""
            assert comment.startswith("# ") and len(comment) > 10, line
