"""The rules of per-app git credentials that need no server (deployq.gitauth, AppSpec)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from deployq.config import Settings
from deployq.gitauth import GitAuth, git_auth, parse_ls_remote
from deployq.models import AppSpec


def test_credentials_must_fit_the_transport() -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    with pytest.raises(ValueError, match="a git token is sent over HTTP"):
        AppSpec(name="web", repo_url="ssh://git@example.com/x.git", git_token="t0ken")
    with pytest.raises(ValueError, match="an SSH deploy key is used over ssh only"):
        AppSpec(name="web", repo_url="https://example.com/x.git", git_ssh_key=key)
    with pytest.raises(ValueError, match="must be a private key"):
        AppSpec(name="web", repo_url="ssh://git@example.com/x.git", git_ssh_key="ssh-ed25519 AAA")


def test_an_apps_credential_wins_over_the_global_one_of_its_kind() -> None:
    settings = Settings(
        git_token="global-token",
        git_token_hosts="github.com",
        git_ssh_key=Path("/keys/global"),
        ssh_known_hosts=Path("/keys/known_hosts"),
    )
    url = "https://git.example.com/team/web.git"

    own = git_auth(AppSpec(name="web", repo_url=url, git_token="own-token"), settings)
    assert (own.token, own.token_is_apps, own.token_hosts) == ("own-token", True, None)
    # the app's token goes to its repository's host, whatever DEPLOYQ_GIT_TOKEN_HOSTS says
    assert "GIT_CONFIG_VALUE_3" in own.env(url)[1]
    default = git_auth(AppSpec(name="web", repo_url=url), settings)
    assert (default.token, default.token_is_apps) == ("global-token", False)
    assert "GIT_CONFIG_VALUE_3" not in default.env(url)[1]  # not one of the token's hosts
    assert default.ssh_key == Path("/keys/global") and not default.ssh_key_is_apps
    assert default.known_hosts == Path("/keys/known_hosts")  # DEPLOYQ_SSH_KNOWN_HOSTS


def test_ssh_runs_strictly_with_only_the_given_key() -> None:
    auth = GitAuth(app="web", ssh_key=Path("/tmp/k ey"), known_hosts=Path("/etc/kh"))
    assert shlex.split(auth.ssh_command()) == [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", "UserKnownHostsFile=/etc/kh", "-i", "/tmp/k ey", "-o", "IdentitiesOnly=yes",
    ]  # fmt: skip
    env = auth.env("ssh://git@example.com/x.git")[1]
    assert env["GIT_SSH_COMMAND"] == auth.ssh_command() and env["GIT_TERMINAL_PROMPT"] == "0"


@pytest.mark.parametrize(
    ("output", "auth", "expected"),
    [
        (
            "fatal: Authentication failed for 'https://x/'",
            GitAuth(app="web", token="t0ken", token_is_apps=True),
            "the repository refused app web's git token",
        ),
        (
            "remote: HTTP Basic: Access denied\nfatal: Authentication failed for 'https://x/'",
            GitAuth(app="web", token="t0ken"),
            "the repository refused DEPLOYQ_GIT_TOKEN (app web has no token of its own)",
        ),
        (
            "fatal: could not read Username for 'https://x': terminal prompts disabled",
            GitAuth(app="web"),
            "the repository asks for credentials and app web has none for it",
        ),
        (
            "git@x: Permission denied (publickey).\nfatal: Could not read from remote repository.",
            GitAuth(app="api", ssh_key=Path("/k"), ssh_key_is_apps=True),
            "the SSH server refused app api's deploy key",
        ),
        (
            "Host key verification failed.\nfatal: Could not read from remote repository.",
            GitAuth(app="api", known_hosts=Path("/kh")),
            "the SSH host key of example.com is unknown or changed in /kh",
        ),
        ("fatal: repository 'https://x/' not found", GitAuth(app="web"), None),
    ],
)
def test_a_refusal_names_the_app_and_the_credential_to_fix(
    output: str, auth: GitAuth, expected: str | None
) -> None:
    url = "https://example.com/x.git" if "https" in output else "git@example.com:x.git"
    advice = auth.advice(url, output)
    assert (advice is None) if expected is None else (expected in (advice or ""))
    assert "t0ken" not in (advice or "")


def test_ls_remote_output_gives_each_ref_its_commit() -> None:
    tag_object, commit, head = "a" * 40, "b" * 40, "c" * 40
    text = (
        f"{head}\tHEAD\n{head}\trefs/heads/main\n{tag_object}\trefs/tags/v1\n"
        f"{commit}\trefs/tags/v1^{{}}\n{head}\trefs/tags/light\n{head}\trefs/pull/1/head\n"
    )
    assert parse_ls_remote(text) == {"refs/heads/main": head}
    assert parse_ls_remote(text, tags=True) == {
        "refs/heads/main": head,
        "refs/tags/v1": commit,  # the commit an annotated tag points to
        "refs/tags/light": head,
    }
    assert parse_ls_remote(text, ["refs/tags/v1"]) == {"refs/tags/v1": commit}
