"""`deployq server add | list | drain | undrain | rm`, run as the real command."""

from __future__ import annotations

import json

from fixtures.cli import Cli


def test_a_server_is_added_listed_drained_and_removed(cli: Cli) -> None:
    added = cli(
        "server", "add", "arm1", "--docker-host", "ssh://builder@arm1", "--capacity", "3",
        "--arch", "arm64", "--label", "gpu", "--label", "big", "--no-check",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert "added build server arm1" in added.stdout

    listed = json.loads(cli("server", "list", "--json").stdout)
    assert [(s["name"], s["capacity"], s["arch"], s["labels"]) for s in listed] == [
        ("arm1", 3, "arm64", ["gpu", "big"])
    ]
    table = cli("server", "list").stdout
    assert "arm1" in table and "0/3" in table and "gpu,big" in table

    assert json.loads(cli("server", "drain", "arm1", "--json").stdout)["draining"] is True
    assert "draining" in cli("server", "list").stdout
    assert json.loads(cli("server", "undrain", "arm1", "--json").stdout)["draining"] is False

    removed = cli("server", "rm", "arm1", "--yes")
    assert removed.returncode == 0, removed.stderr
    assert "no build servers yet" in cli("server", "list").stdout


def test_errors_are_one_line_that_says_what_to_do(cli: Cli) -> None:
    assert cli("server", "add", "a", "--docker-host", "unix:///x.sock").returncode == 0
    again = cli("server", "add", "a", "--docker-host", "unix:///x.sock")
    assert again.returncode == 1
    assert again.stderr.strip() == "error: a build server named 'a' exists already"
    missing = cli("server", "drain", "nope")
    assert missing.returncode == 1
    assert "`deployq server list` shows them" in missing.stderr
