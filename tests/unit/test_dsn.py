"""Multi-host DSNs (a primary and its standbys): described host by host, never with the
password, and passed on unchanged (libpq chooses the server)."""

from __future__ import annotations

import pytest

from deployq.db.dsn import describe_dsn, dsn_password, dsn_servers, with_dbname
from deployq.redact import MASK, redact_urls

MULTI = "postgresql://deployq:pw-secret@h1:5432,h2:5433/deployq?target_session_attrs=read-write"


@pytest.mark.parametrize(
    ("dsn", "described"),
    [
        (MULTI, "h1:5432,h2:5433/deployq"),
        ("postgresql://h1,h2/deployq?target_session_attrs=read-write", "h1:5432,h2:5432/deployq"),
        ("postgresql://h1:6000,h2/x", "h1:6000,h2:5432/x"),
        ("host=h1,h2 port=7000 dbname=x", "h1:7000,h2:7000/x"),
        ("postgresql://u@[::1]:5432,h2:5/x", "[::1]:5432,h2:5/x"),
        ("postgresql://db.example.com/deployq", "db.example.com:5432/deployq"),
        ("postgresql:///deployq?host=/run/pg", "/run/pg/deployq"),
        ("dbname=x", "localhost:5432/x"),
        ("not a dsn = =", "(unparseable DSN)"),
    ],
)
def test_every_server_is_described(dsn: str, described: str) -> None:
    assert describe_dsn(dsn) == described


def test_the_servers_in_libpqs_order() -> None:
    assert dsn_servers(MULTI) == ["h1:5432", "h2:5433"]


def test_the_password_of_a_multi_host_dsn_is_known_and_masked() -> None:
    assert dsn_password(MULTI) == "pw-secret"
    assert "pw-secret" not in describe_dsn(MULTI)
    assert redact_urls(f"cannot use {MULTI}") == (
        f"cannot use postgresql://deployq:{MASK}@h1:5432,h2:5433/deployq"
        "?target_session_attrs=read-write"
    )


def test_another_database_keeps_every_server_and_the_session_attrs() -> None:
    other = with_dbname(MULTI, "deployq_test")
    assert describe_dsn(other) == "h1:5432,h2:5433/deployq_test"
    assert "target_session_attrs=read-write" in other
