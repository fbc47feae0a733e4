"""Real services for the benchmarks: a database, a registry with auth, a base image.

The registry and the base image come from tests/fixtures/_services.py (plain functions that
the pytest fixtures and scripts/demo use too); the benchmarks run as plain scripts.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DOCKER = "/usr/bin/docker"
BASE_IMAGE = "deployq-test/base:latest"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from fixtures import _services as _local  # noqa: E402


def docker(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run the BuildKit-capable docker CLI; raise with its output when it fails."""
    result = subprocess.run(
        [DOCKER, *args],
        env={**os.environ, "DOCKER_BUILDKIT": "1", **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def ensure_base_image() -> str:
    """``deployq-test/base:latest`` (busybox-static as a root file system), imported once."""
    return _local.ensure_base_image()


Registry = _local.LocalRegistry


@contextlib.contextmanager
def registry(workdir: Path) -> Iterator[Registry]:
    """A docker-registry with htpasswd auth on a free loopback port."""
    with _local.start_registry(workdir / "registry", "bench", "bench-registry-pw") as running:
        yield running


@contextlib.contextmanager
def database(name: str) -> Iterator[str]:
    """A fresh database ``name`` on DEPLOYQ_DATABASE_URL's server, else on the embedded
    server of the test suite (.pytest-data); dropped afterwards."""
    url = os.environ.get("DEPLOYQ_DATABASE_URL")
    if url:
        admin = url
    else:
        from deployq.db.embedded import embedded_dsn

        admin = embedded_dsn(ROOT / ".pytest-data", database="postgres")
    params = conninfo_to_dict(admin)
    params["dbname"] = name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
