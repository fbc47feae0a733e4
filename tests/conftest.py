"""Test harness: real services only, in tiers.

- tests/unit/         pure functions: no service, the whole tier runs in seconds
                      (``scripts/test --unit``)
- tests/integration/  against real services (PostgreSQL, dockerd, the registry, SMTP, git)
- tests/e2e/          the real commands as subprocesses; tests/tui/ the console (Pilot)

Fixture plugins live in tests/fixtures/ (one module per service):
- database.py  a fresh database per test, cloned from a migrated template (embedded
               PostgreSQL, or DEPLOYQ_TEST_DATABASE_URL's server)
- docker.py    dockerd with BuildKit, a local base image, an authenticated registry
- git.py       throwaway git repositories
- smtp.py      an SMTP server (aiosmtpd) on loopback
- cli.py       the real `deployq` command against the test's database (``cli`` fixture)

A unit test that asks for one of these fixtures (directly or through another fixture) is
refused at collection, so the fast tier never starts a service by accident.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
UNIT_DIR = HERE / "unit"
#: fixtures of pytest-aiohttp that serve on a loopback port: integration tests only
SERVER_FIXTURES = frozenset({"aiohttp_server", "aiohttp_client", "aiohttp_raw_server"})

pytest_plugins = [
    "pytester",
    *sorted(
        f"fixtures.{path.stem}"
        for path in (HERE / "fixtures").glob("*.py")
        if not path.stem.startswith("_")
    ),
]


def _services(item: pytest.Item) -> list[str]:
    """The service fixtures ``item`` uses: those of tests/fixtures/ and the servers."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    used = set()
    for name in item.fixturenames:
        for fixturedef in info.name2fixturedefs.get(name, ()):
            if name in SERVER_FIXTURES or fixturedef.func.__module__.startswith("fixtures."):
                used.add(name)
    return sorted(used)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse unit tests that use services: they belong in tests/integration/."""
    misplaced = []
    for item in items:
        if UNIT_DIR in item.path.parents:
            services = _services(item)
            if services:
                misplaced.append(f"{item.nodeid} uses {', '.join(services)}")
    if misplaced:
        raise pytest.UsageError(
            "unit tests run without services; move these to tests/integration/:\n  "
            + "\n  ".join(misplaced)
        )
