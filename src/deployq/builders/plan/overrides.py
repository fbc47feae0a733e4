"""What people say instead of detection: the app's options, deployq.toml, the Procfile.

Precedence, highest first: the app (``deployq app add --install-cmd/--build-cmd/--start-cmd
/--runtime-version``), the repository's ``deployq.toml``, a Procfile ``web:`` line (start
only), then what the provider detected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from deployq.builders.plan.repo import Repo
from deployq.errors import PlanError
from deployq.validation import check_command, check_version

REPO_CONFIG = "deployq.toml"
PROVIDERS = ("php", "go", "ruby", "python", "node", "static")
#: longest command line accepted (a Dockerfile RUN line, not a script)
_PROCFILE_WEB = re.compile(r"^web\s*:\s*(.+)$")


@dataclass(frozen=True)
class Overrides:
    """Values that replace detection; None means "detect it"."""

    provider: str | None = None
    version: str | None = None
    install: str | None = None
    build: str | None = None
    start: str | None = None
    port: int | None = None
    #: where the values came from, for the plan's reasons and error messages
    source: str = "the app"


def app_overrides(
    install: str | None = None,
    build: str | None = None,
    start: str | None = None,
    runtime_version: str | None = None,
) -> Overrides:
    """The app's own options, checked."""
    return Overrides(
        install=check_command(install, "--install-cmd") if install else None,
        build=check_command(build, "--build-cmd") if build else None,
        start=check_command(start, "--start-cmd") if start else None,
        version=check_version(runtime_version, "--runtime-version") if runtime_version else None,
        source="the app",
    )


_KEYS: dict[str, str] = {
    "provider": f"one of {', '.join(PROVIDERS)}",
    "version": 'the language version, e.g. "3.12" or "22"',
    "install": "a command line",
    "build": "a command line",
    "start": "a command line",
    "port": "a port number 1-65535",
}


def repo_overrides(repo: Repo) -> Overrides:
    """``deployq.toml`` of the repository (top-level keys of _KEYS), checked key by key."""
    data = repo.toml(REPO_CONFIG)
    if not data:
        return Overrides(source=REPO_CONFIG)
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in _KEYS:
            raise PlanError(f"{REPO_CONFIG}: unknown key {key!r}; the keys are {', '.join(_KEYS)}")
        values[key] = _repo_value(key, value)
    return Overrides(**values, source=REPO_CONFIG)


def _repo_value(key: str, value: Any) -> Any:
    wrong = PlanError(f"{REPO_CONFIG}: {key} = {value!r} is not {_KEYS[key]}")
    if key == "port":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise wrong
        return value
    if key == "version" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # version = 22 (a number in TOML) means "22"
    if not isinstance(value, str):
        raise wrong
    if key == "provider":
        if value not in PROVIDERS:
            raise wrong
        return value
    if key == "version":
        return check_version(value, f"{REPO_CONFIG} version")
    return check_command(value, f"{REPO_CONFIG} {key}")


def procfile_start(repo: Repo) -> str | None:
    """The command of the Procfile's ``web:`` process, if any."""
    for line in (repo.text("Procfile") or "").splitlines():
        match = _PROCFILE_WEB.match(line.strip())
        if match:
            return check_command(match.group(1), "Procfile web:")
    return None


def with_start(overrides: Overrides, start: str | None) -> Overrides:
    """``overrides`` with a start command when it has none."""
    return overrides if overrides.start or not start else replace(overrides, start=start)
