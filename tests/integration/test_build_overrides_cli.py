"""`deployq app add --install-cmd/--build-cmd/--start-cmd/--runtime-version`: stored with
the app, shown by `app show`, and refused with a clear line when a value is not one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def deployq(*args: str, database_url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env |= {"DEPLOYQ_DATA_DIR": str(data_dir), "DEPLOYQ_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "deployq", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_build_overrides_are_stored_with_the_app(database_url: str, tmp_path: Path) -> None:
    added = deployq(
        "app", "add", "--no-check", "api", "--repo", "https://github.com/acme/api.git",
        "--install-cmd", "pip install -r requirements/prod.txt",
        "--build-cmd", "python manage.py collectstatic --noinput",
        "--start-cmd", "gunicorn api.wsgi --bind 0.0.0.0:$PORT",
        "--runtime-version", "3.11",
        "--json",
        database_url=database_url, data_dir=tmp_path,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr

    shown = json.loads(
        deployq("app", "show", "api", "--json", database_url=database_url, data_dir=tmp_path).stdout
    )
    assert {k: shown[k] for k in ("install_cmd", "build_cmd", "start_cmd", "runtime_version")} == {
        "install_cmd": "pip install -r requirements/prod.txt",
        "build_cmd": "python manage.py collectstatic --noinput",
        "start_cmd": "gunicorn api.wsgi --bind 0.0.0.0:$PORT",
        "runtime_version": "3.11",
    }


def test_a_multi_line_start_command_is_refused(database_url: str, tmp_path: Path) -> None:
    result = deployq(
        "app", "add", "--no-check", "api", "--repo", "https://github.com/acme/api.git",
        "--start-cmd", "gunicorn api.wsgi\nRUN curl evil",
        database_url=database_url, data_dir=tmp_path,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid app: start_cmd:")
    assert "must be one line" in result.stderr


def test_a_runtime_version_that_is_not_a_version_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    result = deployq(
        "app", "add", "api", "--repo", "https://github.com/acme/api.git",
        "--runtime-version", "3.12 AS build",
        database_url=database_url, data_dir=tmp_path,
    )  # fmt: skip

    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid app: runtime_version:")
    assert "'3.12 AS build' is not a version" in result.stderr
