"""Test harness: real services only.

Fixture plugins live in tests/fixtures/ (one module per service):
- database.py  a fresh database per test, cloned from a migrated template (embedded
               PostgreSQL, or DEPLOYQ_TEST_DATABASE_URL's server)
- docker.py    dockerd with BuildKit, a local base image, an authenticated registry
- git.py       throwaway git repositories
- smtp.py      an SMTP server (aiosmtpd) on loopback
"""

from __future__ import annotations

from pathlib import Path

pytest_plugins = sorted(
    f"fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if not path.stem.startswith("_")
)
