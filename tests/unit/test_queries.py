"""Named SQL: every query is used, every use exists, and no SQL hides elsewhere in src/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from deployq.db import named_sql
from deployq.models import INTERRUPTIBLE_STEPS, AppSpec
from deployq.store import ALL_CHANNELS
from deployq.store import _queries as store_queries
from deployq.store._job_common import WORKER_FIELDS
from deployq.store._secrets import SPEC_SECRET_FIELDS
from deployq.testing import replication

SRC = Path(__file__).resolve().parents[2] / "src" / "deployq"
#: where SQL text may be: the named queries and the migrations
SQL_HOMES = (
    SRC / "store" / "queries",
    SRC / "db" / "queries",
    SRC / "testing" / "queries",
    SRC / "sql",
)
#: how a statement starts (case-sensitive: prose in docstrings says "select" or "an INSERT")
_STATEMENT = re.compile(
    r"^\s*(SELECT\s+[a-z0-9*(]|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
    r"WITH\s+\w+\s+AS\s*\(|CREATE\s+(TABLE|INDEX|DATABASE)\s|LISTEN\s+(\{|\w+\s*$)|SHOW\s+\w+\s*$)",
    re.DOTALL,
)
_USE = re.compile(r"""\b(?:sql|named)\(\s*["']([a-z_][a-z0-9_]*)["']""")


def _python_files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _uses(folder: Path) -> set[str]:
    """The names passed to ``sql("...")`` / ``named("...")`` in the modules under ``folder``."""
    found: set[str] = set()
    for path in folder.rglob("*.py"):
        found.update(_USE.findall(path.read_text(encoding="utf-8")))
    return found


@pytest.mark.parametrize(
    ("queries", "folder"),
    [
        (store_queries.QUERIES, SRC / "store"),
        (named_sql.QUERIES, SRC / "db"),
        (replication.QUERIES, SRC / "testing"),
    ],
    ids=["store", "db", "testing"],
)
def test_every_named_query_is_used_and_every_use_exists(
    queries: dict[str, str], folder: Path
) -> None:
    uses = _uses(folder)
    assert sorted(set(queries) - uses) == [], "named queries nothing runs"
    assert sorted(uses - set(queries)) == [], "sql() names no file defines"


def test_no_sql_text_outside_the_query_files_and_migrations() -> None:
    offenders = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _STATEMENT.match(node.value)
            ):
                offenders.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.value[:40]!r}")
    assert offenders == []


def test_the_channels_notified_in_sql_are_the_stores_channels() -> None:
    literal = re.compile(r"pg_notify\(\s*'([a-z_]+)'")
    named = {c for q in store_queries.QUERIES.values() for c in literal.findall(q)}
    assert named and named <= set(ALL_CHANNELS)


def test_enqueue_cancels_running_jobs_only_in_interruptible_steps() -> None:
    match = re.search(r"o\.step = ANY\(ARRAY\[([^\]]*)\]", store_queries.QUERIES["enqueue_job"])
    assert match is not None
    steps = {s.strip().strip("'") for s in match.group(1).split(",")}
    assert steps == {s.value for s in INTERRUPTIBLE_STEPS}


@pytest.mark.parametrize("name", ["app_add", "app_update"])
def test_app_statements_write_every_field_of_an_app_spec(name: str) -> None:
    params = set(re.findall(r"%\((\w+)\)s", store_queries.QUERIES[name]))
    # the secrets are not columns of apps: they live sealed in app_secrets
    # (forge_status: whether the sealed forge token is set)
    expected = {*AppSpec.model_fields, "repo_identity", "forge_status"} - set(SPEC_SECRET_FIELDS)
    assert params == expected


def test_progress_can_set_every_worker_field() -> None:
    params = set(re.findall(r"%\((\w+)\)s", store_queries.QUERIES["job_progress"]))
    for field in WORKER_FIELDS:
        assert {field, f"set_{field}"} <= params


def test_a_block_before_the_first_name_is_refused() -> None:
    with pytest.raises(ValueError, match="before the first"):
        named_sql.parse("SELECT 1\n-- name: one\nSELECT 1\n", "bad.sql")


def test_a_name_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        named_sql.parse("-- name: one\nSELECT 1\n-- name: one\nSELECT 2\n", "twice.sql")
