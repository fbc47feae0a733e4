"""Real services for the pipeline benchmark: a database, a registry with auth, a base image.

Small standalone versions of tests/fixtures (which are pytest fixtures): the benchmark runs
as a plain script.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

DOCKER = "/usr/bin/docker"
BASE_IMAGE = "deployq-test/base:latest"
ROOT = Path(__file__).resolve().parents[1]
REGISTRY_START_TIMEOUT_S = 30.0


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
    with contextlib.suppress(RuntimeError):
        docker("image", "inspect", BASE_IMAGE)
        return BASE_IMAGE
    busybox = shutil.which("busybox") or "/bin/busybox"
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "rootfs"
        (root / "bin").mkdir(parents=True)
        for name in ("tmp", "etc", "root"):
            (root / name).mkdir()
        shutil.copy2(busybox, root / "bin" / "busybox")
        for applet in applets.stdout.split():
            if applet != "busybox":
                (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        tar = Path(tmp) / "rootfs.tar"
        with tarfile.open(tar, "w") as archive:
            archive.add(root, arcname=".")
        docker("import", "--change", 'CMD ["/bin/sh"]', str(tar), BASE_IMAGE)
    return BASE_IMAGE


@dataclass(frozen=True)
class Registry:
    url: str
    username: str
    password: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def registry(workdir: Path) -> Iterator[Registry]:
    """A docker-registry with htpasswd auth on a free loopback port."""
    username, password = "bench", "bench-registry-pw"
    entry = subprocess.run(
        ["htpasswd", "-Bbn", username, password], capture_output=True, text=True, check=True
    )
    (workdir / "htpasswd").write_text(entry.stdout.strip() + "\n")
    port = _free_port()
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'registry-data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"auth:\n  htpasswd:\n    realm: bench\n    path: {workdir / 'htpasswd'}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + REGISTRY_START_TIMEOUT_S
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("docker-registry did not start")
            time.sleep(0.05)  # the registry offers no readiness signal when its log is off
        yield Registry(f"127.0.0.1:{port}", username, password)
    finally:
        proc.terminate()
        proc.wait(10)


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
