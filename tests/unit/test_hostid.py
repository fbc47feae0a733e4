"""This host's id: DEPLOYQ_HOST_ID, else one made once and kept in the data directory."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deployq import hostid
from deployq.config import Settings
from deployq.errors import ConfigError


def settings(data_dir: Path, **values: str) -> Settings:
    return Settings(data_dir=data_dir, **values)


def test_the_setting_wins_and_nothing_is_written(tmp_path: Path) -> None:
    assert hostid.host_id(settings(tmp_path, host_id="build-7")) == "build-7"
    assert not (tmp_path / "host-id").exists()


def test_a_bad_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="host_id"):
        Settings(host_id="a b")


def test_an_empty_setting_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the env file's example line `DEPLOYQ_HOST_ID=` uncommented as it is
    monkeypatch.setenv("DEPLOYQ_HOST_ID", "")
    kept = hostid.host_id(Settings(data_dir=tmp_path))
    assert kept == (tmp_path / "host-id").read_text().strip()


def test_made_once_and_kept_across_restarts(tmp_path: Path) -> None:
    first = hostid.host_id(settings(tmp_path))
    assert (tmp_path / "host-id").read_text() == first + "\n"
    assert hostid.host_id(settings(tmp_path)) == first
    # another data directory on the same machine derives the same id from the machine id
    if hostid._machine_id():
        assert hostid.host_id(settings(tmp_path / "other")) == first


def test_processes_starting_at_once_agree(tmp_path: Path) -> None:
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: hostid.host_id(settings(tmp_path)), range(32)))
    assert len(ids) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["host-id"]  # no temporary files left


def test_made_from_the_host_name_and_a_hash_of_the_machine_id() -> None:
    made = hostid.make_host_id("build1.example.com", "0123456789abcdef")
    assert made.startswith("build1-") and len(made) == len("build1-") + 8
    assert made == hostid.make_host_id("build1.example.com", "0123456789abcdef")
    assert "0123456789abcdef" not in made
    assert hostid.make_host_id("build1", "another machine") != made
    # no machine id: random, so two such hosts differ
    assert hostid.make_host_id("x", None) != hostid.make_host_id("x", None)
    assert hostid.make_host_id("___", None).startswith("host-")


def test_a_damaged_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "host-id").write_text("not an id!\n")
    with pytest.raises(ConfigError, match=r"not a host id .* fix or remove it"):
        hostid.host_id(settings(tmp_path))
    (tmp_path / "host-id").write_text("\n")
    with pytest.raises(ConfigError, match="holds no host id: remove it"):
        hostid.host_id(settings(tmp_path))


def test_a_data_directory_that_cannot_hold_it_says_to_set_the_id(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    with pytest.raises(ConfigError, match=r"host's id .*Not a directory; set DEPLOYQ_HOST_ID"):
        hostid.host_id(settings(not_a_directory / "data"))


def test_only_socket_engines_belong_to_a_host() -> None:
    assert hostid.is_host_local("unix:///var/run/docker.sock")
    assert not hostid.is_host_local("tcp://10.0.0.2:2376")
    assert not hostid.is_host_local("ssh://builder@b3")
