"""This host's stable id: which ``unix://`` build servers are its own, and whose view of a
server's health a probe records.

``DEPLOYQ_HOST_ID`` when set (several "hosts" on one machine, e.g. in tests); else the id
kept in ``<data_dir>/host-id``, made at first use from the host name and a hash of
``/etc/machine-id`` (random when there is none) and never changed after, so a worker keeps
its id across restarts and host renames.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
from pathlib import Path

from deployq.config import HOST_ID_PATTERN, Settings
from deployq.errors import ConfigError

HOST_ID_FILE = "host-id"
MACHINE_ID = Path("/etc/machine-id")
_VALID = re.compile(HOST_ID_PATTERN)


def host_id(settings: Settings) -> str:
    """This host's id (see the module's docstring); ConfigError when it cannot be kept."""
    if settings.host_id:
        return settings.host_id
    return _kept(settings.data_dir / HOST_ID_FILE)


def is_host_local(docker_host: str) -> bool:
    """An engine only this host reaches (a socket path): the server belongs to the host that
    registers it."""
    return docker_host.startswith(("unix://", "npipe://"))


def make_host_id(hostname: str, machine_id: str | None) -> str:
    """``<short host name>-<8 hex>``: readable in `server list`, unique per machine."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", hostname.split(".")[0]).strip("-")[:40] or "host"
    if machine_id:  # an app-specific hash: the machine id itself is not published
        suffix = hashlib.sha256(f"deployq-host:{machine_id}".encode()).hexdigest()[:8]
    else:
        suffix = secrets.token_hex(4)
    return f"{name}-{suffix}"


def _machine_id() -> str | None:
    with contextlib.suppress(OSError):
        return MACHINE_ID.read_text(encoding="ascii").strip() or None
    return None


def _kept(path: Path) -> str:
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    made = make_host_id(socket.gethostname(), _machine_id())
    temp = path.with_name(f".{HOST_ID_FILE}.{os.getpid()}.{secrets.token_hex(3)}")
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp.write_text(made + "\n", encoding="ascii")
            # a link never replaces: of two processes starting at once, the first one's stays
            os.link(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    except FileExistsError:
        if path.is_file():
            return _read(path)
        raise _cannot_keep(path, "not a directory") from None
    except OSError as exc:
        raise _cannot_keep(path, exc.strerror or str(exc)) from None
    return made


def _cannot_keep(path: Path, why: str) -> ConfigError:
    return ConfigError(
        f"cannot keep this host's id in {path}: {why}; "
        "make the data directory writable or set DEPLOYQ_HOST_ID"
    )


def _read(path: Path) -> str:
    try:
        value = path.read_text(encoding="ascii").strip()
    except UnicodeDecodeError:
        value = ""
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(
            f"cannot read this host's id from {path}: {exc.strerror}; set DEPLOYQ_HOST_ID"
        ) from None
    if not value:
        raise ConfigError(
            f"{path} holds no host id: remove it (a new one is made) or set DEPLOYQ_HOST_ID"
        )
    if not _VALID.fullmatch(value):
        raise ConfigError(
            f"{path} holds {value!r}, not a host id (letters, digits, '.', '_', '-'); "
            "fix or remove it, or set DEPLOYQ_HOST_ID"
        )
    return value
