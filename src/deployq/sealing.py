"""Secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key
from ``DEPLOYQ_SECRET_KEY`` or ``<data_dir>/secret.key``.

Several keys may be given (comma-separated, or one per line in the file): the first seals,
every one unseals, so ``deployq secrets rotate-key`` can re-encrypt while other processes
still run with the old key. A process that meets a token its keys cannot open reads the key
file again once (another process rotated it) before it gives up with one line naming the
setting.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from deployq.config import Settings
from deployq.errors import ConfigError

#: a sealed value starts with this (Fernet tokens are URL-safe base64 of version byte 0x80)
SEALED_PREFIX = "gAAAAA"


def _parse_keys(text: str, where: str) -> list[Fernet]:
    keys = [k.strip() for k in text.replace(",", "\n").splitlines() if k.strip()]
    if not keys:
        raise ConfigError(f"{where} holds no key; set DEPLOYQ_SECRET_KEY to a Fernet key")
    try:
        return [Fernet(k.encode()) for k in keys]
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{where} is not a Fernet key (32 url-safe base64 bytes, as "
            "`deployq secrets new-key` prints); fix DEPLOYQ_SECRET_KEY"
        ) from exc


def new_key() -> str:
    return Fernet.generate_key().decode()


def write_key_file(path: Path, keys: list[str]) -> None:
    """Write keys (newest first) atomically, mode 0600 from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("".join(f"{k}\n" for k in keys))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class SecretBox:
    """Seal and unseal strings; keys are read on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._fernet: MultiFernet | None = None

    @property
    def source(self) -> str:
        """The setting the keys come from, for messages."""
        if self.settings.secret_key is not None:
            return "DEPLOYQ_SECRET_KEY"
        return f"the key file {self.settings.secret_key_file} (or DEPLOYQ_SECRET_KEY)"

    def key_texts(self) -> list[str]:
        """The keys, newest first; a missing key file is generated (mode 0600)."""
        if self.settings.secret_key is not None:
            text = self.settings.secret_key.get_secret_value()
        else:
            path = self.settings.secret_key_file
            if not path.exists():
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    pass  # another process made it first
                except OSError as exc:
                    raise ConfigError(
                        f"cannot create the key file {path} ({exc.strerror}); "
                        "set DEPLOYQ_SECRET_KEY or DEPLOYQ_DATA_DIR"
                    ) from exc
                else:
                    with os.fdopen(fd, "w") as out:
                        out.write(new_key() + "\n")
            text = path.read_text()
        return [k.strip() for k in text.replace(",", "\n").splitlines() if k.strip()]

    def _load(self) -> MultiFernet:
        with self._lock:
            if self._fernet is None:
                self.settings.data_dir.mkdir(parents=True, exist_ok=True)
                self._fernet = MultiFernet(_parse_keys("\n".join(self.key_texts()), self.source))
            return self._fernet

    def reload(self) -> None:
        with self._lock:
            self._fernet = None

    def seal(self, plain: str) -> str:
        return self._load().encrypt(plain.encode()).decode()

    def unseal(self, token: str) -> str:
        try:
            return self._load().decrypt(token.encode()).decode()
        except InvalidToken:
            self.reload()  # another process may have rotated the key file
        try:
            return self._load().decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ConfigError(
                f"the secrets in the database were sealed with another key than {self.source}; "
                "set DEPLOYQ_SECRET_KEY to the key they were sealed with"
            ) from exc

    def reseal(self, token: str) -> str:
        """The token re-encrypted under the first key."""
        self.unseal(token)  # a clear error if no key opens it
        return self._load().rotate(token.encode()).decode()
