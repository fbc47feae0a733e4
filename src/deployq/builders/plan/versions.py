"""Pick a language version family from what a repository asks for.

A version *family* is what base image tags are made of: ``3.12`` for Python, ``22`` for
Node.js. A request is either a version (``3.11.4``, ``v18.17.0``) or a constraint
(``>=3.10,<3.13``, ``^18``, ``~> 3.2``, ``18.x``); for a constraint the default family wins
when it satisfies it, else the newest known family that does, else the lowest version named.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deployq.errors import PlanError
from deployq.validation import SAFE_VERSION

_NUMBER = re.compile(r"(\d+)(?:\.(\d+|[x*]))?(?:\.(\d+|[x*]))?")
_CLAUSE = re.compile(r"(\^|~>|~=|~|>=|<=|==|!=|>|<|=)?\s*v?(\d+(?:\.(?:\d+|[x*])){0,2})")
#: what may stand in an image tag; anything else in a version is refused


@dataclass(frozen=True)
class Language:
    """How one language's versions look: family length, known families, the default."""

    name: str
    parts: int
    default: str
    known: tuple[str, ...]
    """Families newest first."""


PYTHON = Language("python", 2, "3.12", ("3.13", "3.12", "3.11", "3.10", "3.9", "3.8"))
NODE = Language("node", 1, "22", ("24", "22", "20", "18", "16"))
BUN = Language("bun", 1, "1", ("1",))
GO = Language("go", 2, "1.23", ("1.24", "1.23", "1.22", "1.21", "1.20", "1.19", "1.18"))
PHP = Language("php", 2, "8.3", ("8.4", "8.3", "8.2", "8.1", "8.0", "7.4"))
RUBY = Language("ruby", 2, "3.3", ("3.4", "3.3", "3.2", "3.1", "3.0", "2.7"))


@dataclass(frozen=True)
class Version:
    """A chosen family and the file (or setting) it came from."""

    family: str
    source: str
    request: str | None = None

    def reason(self) -> str:
        if self.request is None:
            return f"{self.source}: version {self.family}"
        return f"version {self.family} from {self.source} ({self.request!r})"


def _tuple(text: str, parts: int) -> tuple[int, ...] | None:
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    numbers = [int(g) for g in match.groups() if g is not None and g.isdigit()]
    return tuple(numbers[:parts])


def _fmt(numbers: tuple[int, ...]) -> str:
    return ".".join(str(n) for n in numbers)


def exact(language: Language, request: str) -> str | None:
    """The family of a plain version (``3.11.4`` -> ``3.11``, ``v18.2.0`` -> ``18``)."""
    match = re.match(r"^\s*v?(\d+(?:\.\d+){0,2})", request)
    if match is None:
        return None
    numbers = tuple(int(n) for n in match.group(1).split("."))
    if len(numbers) < language.parts:
        return None
    return _fmt(numbers[: language.parts])


def _satisfies(family: tuple[int, ...], op: str, wanted: str) -> bool:
    """Whether some version of ``family`` may satisfy ``op wanted`` (``18.x``: ``18``)."""
    numbers: list[int] = []
    for part in wanted.split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    size = min(len(family), len(numbers))
    mine, theirs = family[:size], tuple(numbers[:size])
    finer = len(numbers) > len(family)  # >3.11.4 asks about versions inside family 3.11
    if op in ("", "=", "=="):
        return mine == theirs
    if op == "!=":
        return finer or mine != theirs
    if op == ">=":
        return mine >= theirs
    if op == ">":
        return mine >= theirs if finer else mine > theirs
    if op == "<=":
        return mine <= theirs
    if op == "<":
        return mine <= theirs if finer else mine < theirs
    if op == "^":  # same major, not lower
        return family[0] == numbers[0] and mine >= theirs
    # ~1.2 (npm, poetry) fixes major.minor; ~> 3.2 (bundler) and ~=3.10 (PEP 440) let the
    # last given part grow
    fixed = min(len(numbers), 2) if op == "~" else max(1, len(numbers) - 1)
    return family[:fixed] == tuple(numbers[:fixed]) and mine >= theirs


def from_constraint(language: Language, request: str) -> str | None:
    """The family chosen for a constraint, or None when it names no version."""
    groups = [g for g in re.split(r"\|\|?", request) if g.strip()]  # composer: | and ||
    alternatives: list[list[tuple[str, str]]] = []
    for group in groups:
        clauses = [(op or "", ver) for op, ver in _CLAUSE.findall(group)]
        if clauses:
            alternatives.append(clauses)
    if not alternatives:
        return None

    def allowed(family: str) -> bool:
        numbers = tuple(int(n) for n in family.split("."))
        return any(all(_satisfies(numbers, op, v) for op, v in alt) for alt in alternatives)

    for family in (language.default, *language.known):
        if allowed(family):
            return family
    lowest = min(
        (_tuple(v, language.parts) or (0,) for alt in alternatives for _, v in alt),
    )
    if len(lowest) < language.parts:
        lowest = lowest + (0,) * (language.parts - len(lowest))
    return _fmt(lowest)


def check(language: Language, value: str, source: str) -> str:
    """An explicit version (override): must be safe in an image tag."""
    value = value.strip()
    if not SAFE_VERSION.match(value):
        raise PlanError(
            f"{source}: {value!r} is not a {language.name} version (digits, letters, '.', '-', "
            "'+'; e.g. " + language.default + ")"
        )
    return value


def pick(
    language: Language,
    override: tuple[str, str] | None,
    candidates: list[tuple[str, str | None]],
) -> Version:
    """The family: ``override`` (value, source) first, then each (source, request) in order.

    A request that names no usable version is skipped; with none left, the default.
    """
    if override is not None:
        value, source = override
        return Version(check(language, value, source), source, value)
    for source, request in candidates:
        if not request:
            continue
        family = exact(language, request) if _looks_exact(request) else None
        family = family or from_constraint(language, request)
        if family is not None:
            return Version(family, source, request.strip())
    return Version(language.default, "default")


def _looks_exact(request: str) -> bool:
    return re.fullmatch(r"\s*v?\d+(\.\d+){0,2}\s*", request) is not None
