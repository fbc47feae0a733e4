"""Named SQL: statements kept in ``queries/*.sql`` files, looked up by name.

A file holds blocks that each start with a ``-- name: NAME`` line, then comment lines that
say what the statement is for (not sent to the server); the block runs to the next such
line. Names are unique across a package's files. The store's statements live in
``store/queries/`` (``deployq.store._queries``), the migration runner's in ``db/queries/``
(``sql`` below); ``tests/unit/test_queries.py`` checks that every name is used and every
use exists.
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
        lines = body.strip().splitlines()
        while lines and lines[0].startswith("--"):  # the block's comment, not sent
            lines.pop(0)
        queries[name] = "\n".join(lines).strip().rstrip(";")
    return queries


def load(package: str) -> dict[str, str]:
    """Every named query of ``package``'s ``queries/*.sql`` files."""
    queries: dict[str, str] = {}
    folder = files(package) / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, text in parse(entry.read_text(encoding="utf-8"), entry.name).items():
            if name in queries:
                raise ValueError(f"{entry.name}: query {name!r} is defined in another file too")
            queries[name] = text
    return queries


QUERIES = load("deployq.db")


def sql(name: str) -> str:
    """The text of the migration runner's query called ``name`` (``db/queries/*.sql``)."""
    return QUERIES[name]
