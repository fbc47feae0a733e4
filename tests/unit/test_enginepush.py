"""The login a push through the Engine API sends: the one the CLI would send
(deployq.builders.enginepush.stored_login)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from deployq.builders.enginepush import client_context, speaks_api, stored_login
from deployq.builders.tls import EngineTLS
from deployq.testing.services import make_tls_files

SERVER = "registry.example.com:5000"


def config(path: Path, content: object) -> str:
    (path / "config.json").write_text(json.dumps(content))
    return str(path)


def test_the_stored_login_is_sent_as_the_cli_sends_it(tmp_path: Path) -> None:
    auth = base64.b64encode(b"deployq:pa:ss").decode()
    directory = config(tmp_path, {"auths": {SERVER: {"auth": auth}, "other:1": {"auth": "eA=="}}})

    assert stored_login(directory, SERVER) == {
        "username": "deployq",
        "password": "pa:ss",
        "serveraddress": SERVER,
    }


def test_no_stored_login_pushes_anonymously_as_the_cli_would(tmp_path: Path) -> None:
    assert stored_login(str(tmp_path), SERVER) == {}  # no config.json: removed by a cleaner
    assert stored_login(config(tmp_path, {"auths": {}}), SERVER) == {}


def test_a_login_the_cli_keeps_elsewhere_leaves_the_push_to_the_cli(tmp_path: Path) -> None:
    assert (
        stored_login(config(tmp_path, {"credsStore": "pass", "auths": {SERVER: {}}}), SERVER)
        is None
    )
    assert stored_login(config(tmp_path, {"credHelpers": {SERVER: "ecr-login"}}), SERVER) is None
    assert (
        stored_login(config(tmp_path, {"auths": {SERVER: {"auth": "bm9jb2xvbg=="}}}), SERVER)
        is None
    )
    (tmp_path / "config.json").write_text("{not json")
    assert stored_login(str(tmp_path), SERVER) is None


def test_only_unix_and_tcp_engines_are_spoken_to_directly() -> None:
    assert speaks_api("unix:///var/run/docker.sock")
    assert speaks_api("tcp://10.0.0.5:2376")
    assert not speaks_api("ssh://builder@10.0.0.5")


def test_a_tls_context_is_made_once_per_version_of_the_engines_tls_files(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "first")
    tls = EngineTLS(str(files.ca), str(files.client_cert), str(files.client_key))
    first = client_context(tls)

    assert client_context(tls) is first  # not read again for every push and prefetch

    renewed = make_tls_files(tmp_path / "renewed")  # a renewed client certificate and key
    os.replace(renewed.client_cert, files.client_cert)
    os.replace(renewed.client_key, files.client_key)
    again = client_context(tls)

    assert again is not first
    assert client_context(tls) is again
