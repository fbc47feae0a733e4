"""Every SQL statement of deployq, by name, loaded once from ``store/queries/*.sql``.

A file holds blocks that each start with a ``-- name: NAME`` line; the block runs to the next
such line. Names are unique across all files. Code in the store runs ``sql("claim_jobs")``;
``tests/unit/test_queries.py`` checks that every name is used and every use exists.
"""

from __future__ import annotations

import re
from importlib.resources import files

_NAME_LINE = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse(text: str, source: str) -> dict[str, str]:
    """The named blocks of one file's ``text``; ``source`` names the file in errors."""
    queries: dict[str, str] = {}
    parts = _NAME_LINE.split(text)
    if parts[0].strip() and not all(
        line.startswith("--") or not line.strip() for line in parts[0].splitlines()
    ):
        raise ValueError(f"{source}: SQL before the first '-- name:' line")
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"{source}: query {name!r} is defined twice")
        queries[name] = body.strip().rstrip(";")
    return queries


def load() -> dict[str, str]:
    """Every named query of the package's ``queries/*.sql`` files."""
    queries: dict[str, str] = {}
    folder = files("deployq.store") / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, text in parse(entry.read_text(encoding="utf-8"), entry.name).items():
            if name in queries:
                raise ValueError(f"{entry.name}: query {name!r} is defined in another file too")
            queries[name] = text
    return queries


QUERIES = load()


def sql(name: str) -> str:
    """The text of the query called ``name``."""
    return QUERIES[name]
