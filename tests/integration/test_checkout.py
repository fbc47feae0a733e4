"""Checkout of exact commits from real git repositories (file:// and a loopback HTTP server)."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from deployq.errors import CheckoutError
from deployq.gitauth import GitAuth
from deployq.redact import redact_urls
from deployq.worker.checkout import checkout
from fixtures.git import GitRepoFactory, git


async def test_checks_out_the_exact_commit_not_the_branch_head(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "first\n"}, message="first version\n\nwith a body")
    first = repo.head
    repo.commit({"app.txt": "second\n"}, "second version")
    lines: list[str] = []

    info = await checkout(
        repo.url, tmp_path / "ws", ref="refs/heads/main", commit_sha=first, log=lines.append
    )

    assert (tmp_path / "ws" / "app.txt").read_text() == "first\n"
    assert info.sha == first
    assert info.message == "first version\n\nwith a body"
    assert (info.author, info.author_email) == ("Ada Lovelace", "ada@example.com")
    assert git(tmp_path / "ws", "rev-parse", "HEAD") == first
    assert any(first[:7] in line for line in lines)
    # shallow: only the wanted commit came over
    assert git(tmp_path / "ws", "rev-list", "--count", "HEAD") == "1"


async def test_without_a_sha_the_head_of_the_ref_is_checked_out(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "first\n"})
    head = repo.commit({"app.txt": "second\n"}, "second")

    info = await checkout(repo.url, tmp_path / "ws", ref="main", commit_sha=None, log=print)

    assert info.sha == head
    assert (tmp_path / "ws" / "app.txt").read_text() == "second\n"


async def test_a_server_refusing_bare_shas_falls_back_to_the_ref(
    git_repo_factory: GitRepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = git_repo_factory({"app.txt": "first\n"})
    first = repo.head
    repo.commit({"app.txt": "second\n"}, "second")
    # an old-style server: protocol v0 without allowReachableSHA1InWant refuses bare shas
    git(repo.path, "config", "uploadpack.allowReachableSHA1InWant", "false")
    global_config = tmp_path / "gitconfig"
    global_config.write_text("[protocol]\n\tversion = 0\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(global_config))
    lines: list[str] = []

    info = await checkout(repo.url, tmp_path / "ws", ref="main", commit_sha=first, log=lines.append)

    assert info.sha == first
    assert (tmp_path / "ws" / "app.txt").read_text() == "first\n"
    assert any("does not serve commit" in line for line in lines), lines


async def test_a_short_sha_is_found_in_the_history_of_the_ref(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "first\n"})
    first = repo.head
    repo.commit({"app.txt": "second\n"}, "second")

    info = await checkout(
        repo.url, tmp_path / "ws", ref="refs/heads/main", commit_sha=first[:7].upper(), log=print
    )

    assert info.sha == first
    assert (tmp_path / "ws" / "app.txt").read_text() == "first\n"


async def test_a_short_sha_not_on_the_ref_fails_for_good(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "x"})

    with pytest.raises(CheckoutError) as caught:
        await checkout(repo.url, tmp_path / "ws", ref="main", commit_sha="abcdef1", log=print)

    assert caught.value.message.startswith(
        f"commit abcdef1 is not in the history of main in {repo.url}"
    )
    assert caught.value.retryable is False


async def test_a_missing_commit_is_a_checkout_error(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "x"})
    missing = "0123456789abcdef0123456789abcdef01234567"

    with pytest.raises(CheckoutError) as caught:
        await checkout(repo.url, tmp_path / "ws", ref="main", commit_sha=missing, log=print)

    assert caught.value.message == f"commit 0123456 does not exist in {repo.url} (main)"
    assert caught.value.retryable is False


async def test_a_missing_branch_is_a_checkout_error(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "x"})

    with pytest.raises(CheckoutError, match="ref 'nope' does not exist in"):
        await checkout(repo.url, tmp_path / "ws", ref="nope", commit_sha=None, log=print)


async def test_submodules_are_checked_out_when_asked(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    lib = git_repo_factory({"lib.txt": "library\n"})
    app = git_repo_factory({"app.txt": "app\n"})
    git(app.path, "-c", "protocol.file.allow=always", "submodule", "add", "--quiet", lib.url, "lib")
    sha = app.commit({}, "add lib")

    await checkout(app.url, tmp_path / "ws", ref="main", commit_sha=sha, submodules=True, log=print)

    assert (tmp_path / "ws" / "lib" / "lib.txt").read_text() == "library\n"


def processes_with(marker: str) -> list[str]:
    """Pids of processes on this host whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(entry.name)
            except OSError:
                continue
    return found


class GitHttpServer:
    """A loopback HTTP server standing in for a forge: records headers, refuses or hangs."""

    def __init__(self, *, hang: bool = False) -> None:
        self.hang = hang
        self.authorizations: list[str] = []
        self.reached = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization", ""))
        self.reached.set()
        if self.hang:
            await asyncio.Event().wait()
        return web.Response(status=403, text="Forbidden: this robot may not read the repo\n")


@pytest.fixture
async def forge(aiohttp_server: Any) -> tuple[GitHttpServer, str]:
    server = GitHttpServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    running = await aiohttp_server(app, host="127.0.0.1")
    return server, f"http://127.0.0.1:{running.port}"


async def test_a_token_is_sent_as_a_header_and_never_logged(
    forge: tuple[GitHttpServer, str], tmp_path: Path
) -> None:
    server, base = forge
    token = f"glpat-{uuid.uuid4().hex}"
    url = f"{base}/team/app.git"
    lines: list[str] = []

    with pytest.raises(CheckoutError) as caught:
        await checkout(
            url,
            tmp_path / "ws",
            ref="main",
            commit_sha=None,
            auth=GitAuth(token=token),
            log=lines.append,
        )

    expected = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert f"Basic {expected}" in server.authorizations
    assert caught.value.message.startswith(f"clone of {url} refused: ")
    assert token not in caught.value.message
    assert lines and not any(token in line for line in lines)


async def test_credentials_in_the_url_are_redacted_from_logs_and_errors(
    forge: tuple[GitHttpServer, str], tmp_path: Path
) -> None:
    _, base = forge
    secret = f"pw-{uuid.uuid4().hex}"
    url = base.replace("http://", f"http://robot:{secret}@") + "/team/app.git"
    lines: list[str] = []

    with pytest.raises(CheckoutError) as caught:
        await checkout(url, tmp_path / "ws", ref="main", commit_sha=None, log=lines.append)

    assert redact_urls(url) in caught.value.message
    assert secret not in caught.value.message + "\n".join(lines)


async def test_credentials_in_the_url_travel_in_a_header_not_in_argv_or_config(
    forge: tuple[GitHttpServer, str], tmp_path: Path
) -> None:
    server, base = forge
    secret = f"pw-{uuid.uuid4().hex}"
    url = base.replace("http://", f"http://robot:{secret}@") + "/team/app.git"
    seen_in_argv: list[str] = []

    async def watch() -> None:
        while True:
            seen_in_argv.extend(processes_with(secret))
            await asyncio.sleep(0.005)  # sampling other processes: there is no event

    watcher = asyncio.create_task(watch())
    try:
        with pytest.raises(CheckoutError):
            await checkout(url, tmp_path / "ws", ref="main", commit_sha=None, log=print)
    finally:
        watcher.cancel()

    expected = base64.b64encode(f"robot:{secret}".encode()).decode()
    assert f"Basic {expected}" in server.authorizations
    assert seen_in_argv == []
    assert secret not in (tmp_path / "ws" / ".git" / "config").read_text()


async def test_the_git_token_goes_only_to_the_hosts_it_is_meant_for(
    forge: tuple[GitHttpServer, str], tmp_path: Path
) -> None:
    server, base = forge
    token = f"ghp_{uuid.uuid4().hex}"

    with pytest.raises(CheckoutError):
        await checkout(
            f"{base}/team/app.git",
            tmp_path / "ws",
            ref="main",
            commit_sha=None,
            auth=GitAuth(token=token, token_hosts="github.com, git.example.com"),
            log=print,
        )

    assert server.authorizations and not any(server.authorizations)


async def test_cancel_kills_a_hanging_fetch_within_five_seconds(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    server = GitHttpServer(hang=True)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    running = await aiohttp_server(app, host="127.0.0.1")
    marker = uuid.uuid4().hex
    url = f"http://127.0.0.1:{running.port}/{marker}.git"
    task = asyncio.create_task(
        checkout(url, tmp_path / "ws", ref="main", commit_sha=None, log=print)
    )
    await asyncio.wait_for(server.reached.wait(), 30)

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert time.monotonic() - started < 5.0
    assert processes_with(marker) == []
