"""Read a checked-out repository as untrusted input.

Files are read only when they lie inside the repository (a symlink to /etc/passwd reads as
missing), only up to MAX_FILE_BYTES, and only as UTF-8; JSON and TOML that do not parse are
a PlanError naming the file.
"""

from __future__ import annotations

import functools
import json
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

from deployq.errors import PlanError

#: larger manifests are not read (a lockfile of a big monorepo stays well below this)
MAX_FILE_BYTES = 4 * 1024 * 1024


class Repo:
    """One directory of a repository (the app's build context)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _inside(self, name: str) -> Path | None:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            return None
        path = self.root / pure
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return None
        return resolved if resolved.is_relative_to(self.root) else None

    def is_file(self, name: str) -> bool:
        path = self._inside(name)
        return path is not None and path.is_file()

    def is_dir(self, name: str) -> bool:
        path = self._inside(name)
        return path is not None and path.is_dir()

    def exists(self, name: str) -> bool:
        return self.is_file(name) or self.is_dir(name)

    def first(self, *names: str) -> str | None:
        """The first of ``names`` that is a file."""
        return next((name for name in names if self.is_file(name)), None)

    @functools.cache  # noqa: B019 - one Repo per plan; the cache dies with it
    def text(self, name: str) -> str | None:
        """The file's text; None when missing, outside the repository, too big or binary."""
        path = self._inside(name)
        if path is None or not path.is_file():
            return None
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return None
            return path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def json(self, name: str) -> dict[str, Any] | None:
        """A JSON object file; PlanError when it is not one."""
        text = self.text(name)
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PlanError(
                f"{name} is not valid JSON ({exc}): fix it or add a Dockerfile"
            ) from exc
        if not isinstance(data, dict):
            raise PlanError(f"{name} must hold a JSON object: fix it or add a Dockerfile")
        return data

    def toml(self, name: str) -> dict[str, Any] | None:
        """A TOML file; PlanError when it does not parse."""
        text = self.text(name)
        if text is None:
            return None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PlanError(
                f"{name} is not valid TOML ({exc}): fix it or add a Dockerfile"
            ) from exc

    def glob(self, pattern: str) -> list[str]:
        """Names (relative, sorted) of files inside the repository matching ``pattern``."""
        names = []
        for path in sorted(self.root.glob(pattern)):
            name = path.relative_to(self.root).as_posix()
            if self.is_file(name):
                names.append(name)
        return names

    def subdirs(self, name: str) -> list[str]:
        """Names of the directories directly in ``name`` (sorted, hidden ones left out)."""
        path = self._inside(name)
        if path is None or not path.is_dir():
            return []
        return sorted(
            child.name
            for child in path.iterdir()
            if not child.name.startswith(".") and self.is_dir(f"{name}/{child.name}")
        )

    def local_path(self, name: str) -> str | None:
        """``name`` normalised (``./lib/`` -> ``lib``) when it stays in the repository."""
        pure = PurePosixPath(name.strip())
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            return None
        normal = pure.as_posix()
        return normal if self.exists(normal) else None


def first_line(text: str | None) -> str | None:
    """The first non-empty, non-comment line of a version file."""
    for line in (text or "").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    return None


def tool_version(repo: Repo, *tools: str) -> str | None:
    """The version a ``.tool-versions`` file (asdf, mise) gives for the first of ``tools``."""
    for line in (repo.text(".tool-versions") or "").splitlines():
        words = line.split("#")[0].split()
        if len(words) > 1 and words[0] in tools:
            return words[1]
    return None
