"""CLI tables fit the terminal: the widest columns shrink first, cut cells end in '…'."""

from __future__ import annotations

from deployq.cli.common import table

HEADERS = ["ID", "APP", "NOTE"]
ROWS = [["#1", "web", "build failed on local: docker build exited with 1"], ["#22", "api", ""]]


def test_a_table_that_fits_is_printed_whole() -> None:
    assert table(HEADERS, ROWS, width=200).splitlines() == [
        "ID   APP  NOTE",
        "#1   web  build failed on local: docker build exited with 1",
        "#22  api",
    ]


def test_a_narrow_terminal_cuts_the_widest_column_with_an_ellipsis() -> None:
    lines = table(HEADERS, ROWS, width=30).splitlines()
    assert max(len(line) for line in lines) <= 30
    assert lines[1] == "#1   web  build failed on loc…"
    assert lines[0].startswith("ID   APP  NOTE")


def test_columns_never_shrink_below_their_header() -> None:
    text = table(["NAME", "DOCKER HOST"], [["local", "unix:///var/run/docker.sock"]], width=10)
    assert text.splitlines() == ["NAME  DOCKER HOST", "loc…  unix:///va…"]


def test_newlines_in_a_cell_do_not_break_the_row() -> None:
    assert table(["A"], [["one\ntwo"]], width=80).splitlines() == ["A", "one two"]
