"""Registry logins of the docker CLI, kept in private DOCKER_CONFIG directories.

One :class:`RegistryLogins` holds one login per (registry, user): a DOCKER_CONFIG directory
that ``docker login --password-stdin`` filled, under a temporary directory of mode 0700. The
builders of one worker share it (builders.buildkit): the config is read by the CLI on this
host, whatever engine it then talks to, so a login made through server A's engine serves the
builds and pushes on server B too, and B's first job does not log in again.

A login is made again when the password changes (told apart by an HMAC of it, the password
itself is never kept) or when a user reports it refused (``stale``: the next user of that
(registry, user), on any server, logs in anew). Concurrent users wait for one login. The
directories are removed by :meth:`RegistryLogins.close` or, at the latest, when the process
exits.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import shutil
import tempfile
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from deployq.builders.base import LogSink, RegistryAuth

#: logs in to ``auth.server`` into the DOCKER_CONFIG directory given (``docker login``)
LoginCommand = Callable[[str, RegistryAuth, LogSink], Awaitable[None]]


@dataclass(frozen=True)
class Login:
    """A DOCKER_CONFIG directory logged in to one registry as one user."""

    config: str
    #: HMAC of the password under a per-instance random key: tells a changed password apart
    #: without keeping the password itself
    fingerprint: bytes
    #: which login this is: a user that saw it refused names it as ``stale``
    generation: int


class RegistryLogins:
    """The DOCKER_CONFIG logins of one process (or one builder), per (registry, user)."""

    def __init__(self) -> None:
        self._root: Path | None = None
        self._cleanup: weakref.finalize[..., RegistryLogins] | None = None
        self._logins: dict[tuple[str, str], Login] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._fingerprint_key = os.urandom(32)
        self._generation = 0

    @property
    def root(self) -> Path | None:
        """The directory holding the DOCKER_CONFIGs (None before the first login)."""
        return self._root

    def close(self) -> None:
        """Forget every login and remove the credentials they left on disk. Still usable:
        the next user logs in again."""
        self._logins.clear()
        cleanup, self._cleanup, self._root = self._cleanup, None, None
        if cleanup is not None:
            cleanup()

    async def get(
        self,
        auth: RegistryAuth | None,
        log: LogSink,
        login: LoginCommand,
        *,
        stale: int | None = None,
    ) -> Login | None:
        """The login for ``auth`` (None without credentials): the one kept from before,
        unless the password changed or ``stale`` names it as refused; else a new one, made
        by ``login`` (the caller's ``docker login``, through the caller's engine)."""
        if auth is None or not auth.username:
            return None
        key = (auth.server, auth.username)
        fingerprint = hmac.digest(
            self._fingerprint_key, (auth.password or "").encode(), hashlib.sha256
        )
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # concurrent jobs wait for one login instead of racing
            known = self._logins.get(key)
            if (
                known is not None
                and hmac.compare_digest(known.fingerprint, fingerprint)
                and known.generation != stale
            ):
                return known
            self._logins.pop(key, None)
            config = self._config_dir(key)
            await login(config, auth, log)
            self._generation += 1
            made = Login(config, fingerprint, self._generation)
            self._logins[key] = made
            return made

    def _config_dir(self, key: tuple[str, str]) -> str:
        """The DOCKER_CONFIG for (registry, user), created with mode 0700."""
        if self._root is None:
            root = Path(tempfile.mkdtemp(prefix="deployq-docker-config-"))  # mode 0700
            self._cleanup = weakref.finalize(self, shutil.rmtree, root, True)
            self._root = root
        name = hashlib.sha256("\0".join(key).encode()).hexdigest()[:16]
        config = self._root / name
        config.mkdir(mode=0o700, exist_ok=True)
        return str(config)
