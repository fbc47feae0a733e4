"""What a receiver makes of a delivery, whatever the forge: :class:`Parsed`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deployq.models import Trigger
from deployq.repos import repo_identity

ZERO_SHA = "0" * 40


class BadPayload(ValueError):
    """The payload does not have the shape its event promises."""


@dataclass
class Parsed:
    """A delivery, understood: the repository it names and what (if anything) to build."""

    event: str
    identities: list[str] = field(default_factory=list)
    """Normalised repository identities named by the payload (see deployq.repos)."""
    trigger: Trigger | None = None
    ignored: str | None = None
    """Why nothing is built (deletion, an action we do not build...)."""
    ping: bool = False
    ref: str | None = None

    @property
    def repo(self) -> str | None:
        return self.identities[0] if self.identities else None


def identities(*candidates: Any) -> list[str]:
    """Distinct normalised identities of the strings among ``candidates``, in order."""
    found: list[str] = []
    for value in candidates:
        if not isinstance(value, str) or not value.strip():
            continue
        try:
            identity = repo_identity(value)
        except ValueError:
            continue
        if identity not in found:
            found.append(identity)
    return found


def obj(value: Any, name: str) -> dict[str, Any]:
    """``value[name]`` as a dict, or BadPayload."""
    item = value.get(name) if isinstance(value, dict) else None
    if not isinstance(item, dict):
        raise BadPayload(f"the payload has no {name!r} object")
    return item


def sub(value: Any, name: str) -> dict[str, Any]:
    """``value[name]`` when it is an object, else {} (for optional parts of a payload)."""
    item = value.get(name) if isinstance(value, dict) else None
    return item if isinstance(item, dict) else {}


def text(value: Any, name: str, *, required: bool = False) -> str | None:
    item = value.get(name) if isinstance(value, dict) else None
    if item is None and not required:
        return None
    if not isinstance(item, str):
        raise BadPayload(f"the payload has no {name!r} string")
    return item


def sha(value: str | None) -> str | None:
    """A commit id, or None when absent, all zeros or not hexadecimal."""
    if not value or value == ZERO_SHA:
        return None
    lowered = value.lower()
    if not 7 <= len(lowered) <= 64 or any(c not in "0123456789abcdef" for c in lowered):
        raise BadPayload(f"{value!r} is not a commit id")
    return lowered


def changed_paths(commits: Any, *, complete: bool) -> list[str] | None:
    """Files added, modified or removed by ``commits``; None when the list is not complete."""
    if not complete or not isinstance(commits, list) or not commits:
        return None
    paths: set[str] = set()
    for commit in commits:
        if not isinstance(commit, dict):
            continue
        for key in ("added", "modified", "removed"):
            files = commit.get(key)
            if isinstance(files, list):
                paths.update(f for f in files if isinstance(f, str))
    return sorted(paths)
