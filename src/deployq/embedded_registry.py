"""The embedded registry: Debian's ``docker-registry`` (distribution) on loopback.

With no ``DEPLOYQ_REGISTRY_URL``, deployq runs its own OCI registry the way it runs its own
PostgreSQL: started on first use, left running, and shared by every deployq process on the
host. Everything lives in ``<data_dir>/registry``: ``config.yml``, ``htpasswd`` (bcrypt),
``credentials.json`` (generated user, password and port; mode 0600), the image ``data/`` and
``registry.log``. A file lock makes concurrent starters agree on one server, and the port
stays the same across restarts (it is in ``credentials.json``) so image references stay valid.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from pydantic import SecretStr

from deployq.config import Settings
from deployq.errors import ConfigError

log = logging.getLogger(__name__)

#: the realm the embedded registry answers with: how deployq recognises its own server
REALM = "deployq-embedded"
USERNAME = "deployq"
HOST = "127.0.0.1"
#: seconds to wait for a freshly started registry to accept connections
START_TIMEOUT_S = 15.0
#: seconds one health probe may take
PROBE_TIMEOUT_S = 2.0
#: between two probes while the registry starts
PROBE_INTERVAL_S = 0.05
BINARY = "docker-registry"
#: registries still running that this process started (kept so none is collected early)
_STARTED: list[subprocess.Popen[bytes]] = []


@dataclass(frozen=True)
class EmbeddedRegistry:
    """Where the embedded registry listens, and its generated credentials."""

    root: Path
    port: int
    username: str
    password: str = ""

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``: the registry part of image references."""
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"


def registry_dir(data_dir: Path) -> Path:
    return data_dir / "registry"


def with_registry(settings: Settings) -> Settings:
    """``settings`` with the registry to push to: the configured one, or else the embedded
    registry (started on first use) with its generated credentials."""
    if settings.registry_url:
        return settings
    registry = ensure_registry(settings.data_dir)
    return settings.model_copy(
        update={
            "registry_url": registry.url,
            "registry_username": registry.username,
            "registry_password": SecretStr(registry.password),
            "registry_insecure": True,
        }
    )


def ensure_registry(data_dir: Path) -> EmbeddedRegistry:
    """Find the embedded registry running, or start it; raise ConfigError when it cannot run."""
    root = registry_dir(data_dir)
    try:
        return _ensure(root)
    except OSError as exc:
        raise ConfigError(
            f"cannot run the embedded registry in {root}: {exc}; or set DEPLOYQ_REGISTRY_URL"
        ) from exc


def _ensure(root: Path) -> EmbeddedRegistry:
    with _locked(root):
        registry = _credentials(root)
        if _answers(registry):
            return registry
        if not _port_free(registry.port):  # someone else took our port while we were down
            registry = _save(root, registry, port=_free_port())
        _write_config(root, registry)
        _start(root, registry)
        return registry


def stop_registry(data_dir: Path) -> bool:
    """Stop the embedded registry of ``data_dir`` (tests, uninstall); True if it ran."""
    pid_file = registry_dir(data_dir) / "registry.pid"
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return False
    with contextlib.suppress(OSError):
        pid_file.unlink()
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return False
    for proc in list(_STARTED):
        if proc.pid == pid:
            proc.wait(10)
            _STARTED.remove(proc)
    return True


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _credentials(root: Path) -> EmbeddedRegistry:
    """Read credentials.json, or generate it (and the htpasswd file) the first time."""
    path = root / "credentials.json"
    try:
        data = json.loads(path.read_text())
        found = EmbeddedRegistry(root, int(data["port"]), str(data["username"]), data["password"])
        if not (root / "htpasswd").exists():
            found = _save(root, found, port=found.port)
        return found
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is damaged ({exc}): remove {root} to make a new embedded registry "
            "(its images are lost), or set DEPLOYQ_REGISTRY_URL"
        ) from exc
    fresh = EmbeddedRegistry(root, _free_port(), USERNAME, secrets.token_urlsafe(24))
    return _save(root, fresh, port=fresh.port)


def _save(root: Path, registry: EmbeddedRegistry, *, port: int) -> EmbeddedRegistry:
    registry = EmbeddedRegistry(root, port, registry.username, registry.password)
    data = {
        "url": registry.url,
        "port": port,
        "username": registry.username,
        "password": registry.password,
    }
    _write_private(root / "credentials.json", json.dumps(data, indent=2) + "\n")
    hashed = bcrypt.hashpw(registry.password.encode(), bcrypt.gensalt()).decode()
    _write_private(root / "htpasswd", f"{registry.username}:{hashed}\n")
    return registry


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, atomically."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def _write_config(root: Path, registry: EmbeddedRegistry) -> None:
    config = (
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: true\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {registry.host}\n  secret: {_http_secret(root)}\n"
        f"auth:\n  htpasswd:\n    realm: {REALM}\n    path: {root / 'htpasswd'}\n"
    )
    _write_private(root / "config.yml", config)


def _http_secret(root: Path) -> str:
    path = root / "http-secret"
    if not path.exists():
        _write_private(path, secrets.token_hex(16))
    return path.read_text().strip()


def _binary() -> str:
    found = shutil.which(BINARY) or shutil.which(BINARY, path="/usr/bin:/usr/sbin")
    if found is None:
        raise ConfigError(
            "the embedded registry needs Debian's docker-registry package "
            "(apt-get install docker-registry), or set DEPLOYQ_REGISTRY_URL to your registry"
        )
    return found


def _start(root: Path, registry: EmbeddedRegistry) -> None:
    log.info("starting the embedded registry on %s (%s)", registry.host, root)
    with open(root / "registry.log", "ab") as out:
        proc = subprocess.Popen(
            [_binary(), "serve", str(root / "config.yml")],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # left running after this process ends, like PostgreSQL
        )
    _STARTED.append(proc)
    (root / "registry.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(registry):
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = _tail(root / "registry.log")
            raise ConfigError(
                f"the embedded registry did not start on {registry.host}: {tail} "
                f"(see {root / 'registry.log'}); or set DEPLOYQ_REGISTRY_URL"
            )
        time.sleep(PROBE_INTERVAL_S)


def _answers(registry: EmbeddedRegistry) -> bool:
    """True when our registry (its realm) answers on its port."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(f"{registry.url}/v2/", timeout=PROBE_TIMEOUT_S):
            return False  # a registry without auth is not ours
    except urllib.error.HTTPError as exc:
        return exc.code == 401 and REALM in exc.headers.get("WWW-Authenticate", "")
    except (OSError, ValueError):
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        # as the registry binds (Go sets SO_REUSEADDR): closed connections do not count
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1][:300] if lines else "no output"
