"""Checkout through the per-app bare mirror (deployq.worker.mirror), with real git repositories."""

from __future__ import annotations

import asyncio
import base64
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from deployq.errors import CheckoutError
from deployq.gitauth import GitAuth
from deployq.worker import mirror as mirror_module
from deployq.worker.checkout import checkout
from deployq.worker.mirror import mirror_path
from fixtures.git import GitRepoFactory, fetch_children, git, git_started


async def test_each_checkout_fetches_only_the_new_commit_into_the_mirror(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "first\n", "src/lib.py": "X = 1\n"}, message="first")
    first = repo.head
    mirror = mirror_path(tmp_path / "data", "web", repo.url)

    one = await checkout(
        repo.url, tmp_path / "ws1", ref="refs/heads/main", commit_sha=first, mirror=mirror,
        log=print,
    )  # fmt: skip
    second = repo.commit({"app.txt": "second\n"}, "second version\n\nwith a body")
    lines: list[str] = []
    two = await checkout(
        repo.url, tmp_path / "ws2", ref="refs/heads/main", commit_sha=second, mirror=mirror,
        log=lines.append,
    )  # fmt: skip

    assert (one.sha, two.sha) == (first, second)
    assert two.message == "second version\n\nwith a body"
    assert (two.author, two.author_email) == ("Ada Lovelace", "ada@example.com")
    assert (tmp_path / "ws1" / "app.txt").read_text() == "first\n"
    assert (tmp_path / "ws2" / "app.txt").read_text() == "second\n"
    assert (tmp_path / "ws2" / "src" / "lib.py").read_text() == "X = 1\n"
    # the workspace is a repository at the commit, with nothing changed
    assert git(tmp_path / "ws2", "rev-parse", "HEAD") == second
    assert git(tmp_path / "ws2", "status", "--porcelain") == ""
    # the mirror keeps both commits: the second fetch brought only what was new
    assert git(mirror, "rev-list", "--count", second) == "2"
    assert f"fetching refs/heads/main at {second[:7]} from {repo.url}" in lines


@pytest.mark.parametrize("server_filters", [False, True], ids=["plain-server", "filtering"])
async def test_the_fetch_skips_the_connectivity_walk_and_the_mirror_stays_whole(
    git_repo_factory: GitRepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server_filters: bool,
) -> None:
    repo = git_repo_factory({"app.txt": "first\n", "big.bin": "x" * 100_000})
    # GitHub and GitLab serve partial clones; a plain git server (the default) does not
    git(repo.path, "config", "uploadpack.allowFilter", str(server_filters).lower())
    mirror = mirror_path(tmp_path / "data", "web", repo.url)
    await checkout(
        repo.url, tmp_path / "ws1", ref="main", commit_sha=None, mirror=mirror, log=print
    )
    second = repo.commit({"app.txt": "second\n", "run.sh": "#!/bin/sh\n"}, "second")
    trace = tmp_path / "trace.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    lines: list[str] = []

    info = await checkout(
        repo.url, tmp_path / "ws2", ref="main", commit_sha=second, mirror=mirror,
        log=lines.append,
    )  # fmt: skip
    monkeypatch.delenv("GIT_TRACE2_EVENT")

    assert info.sha == second
    assert (tmp_path / "ws2" / "big.bin").read_text() == "x" * 100_000
    children = fetch_children(trace)
    # the fetch took a pack (index-pack) and did not walk it again (rev-list)
    assert any("index-pack" in argv for argv in children), children
    assert not any("rev-list" in argv for argv in children), children
    # ...and no other git fetched anything lazily
    assert sum("fetch" in argv for argv in git_started(trace)) == 1
    assert not any(line.startswith(("warning", "error", "fatal")) for line in lines), lines
    # the mirror is no partial clone: nothing of it in its config, and every object there
    # (git fsck without a promisor remote checks that each commit's tree and blobs are)
    config = (mirror / "config").read_text()
    assert "promisor" not in config and "deployq" not in config and "filter" not in config
    git(mirror, "fsck", "--connectivity-only", "--no-dangling")
    assert git(tmp_path / "ws2", "status", "--porcelain") == ""


async def test_the_repack_of_promisor_packs_keeps_every_object(
    git_repo_factory: GitRepoFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mirror_module, "MAX_PACKS", 2)
    repo = git_repo_factory({"app.txt": "0\n"})
    mirror = mirror_path(tmp_path / "data", "web", repo.url)
    lines: list[str] = []
    for index in range(1, 5):
        repo.commit({"app.txt": f"{index}\n", f"dir{index}/file": f"{index}\n"})
        info = await checkout(
            repo.url, tmp_path / f"ws{index}", ref="main", commit_sha=None, mirror=mirror,
            log=lines.append,
        )  # fmt: skip
        assert info.sha == repo.head

    assert any(line == f"repacking the mirror {mirror.name}" for line in lines), lines
    packs = sorted(path.name for path in (mirror / "objects" / "pack").iterdir())
    assert len([name for name in packs if name.endswith(".pack")]) <= 2, packs
    git(mirror, "fsck", "--connectivity-only", "--no-dangling")
    assert git(mirror, "rev-list", "--count", repo.head) == "5"
    assert (tmp_path / "ws4" / "dir4" / "file").read_text() == "4\n"


async def test_a_commit_in_the_mirror_needs_no_fetch(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "first\n"})
    first = repo.head
    repo.commit({"app.txt": "second\n"})
    mirror = mirror_path(tmp_path / "data", "web", repo.url)
    await checkout(
        repo.url, tmp_path / "ws1", ref="main", commit_sha=None, mirror=mirror, log=print
    )
    repo.path.rename(tmp_path / "gone")  # the remote is unreachable from now on
    lines: list[str] = []

    info = await checkout(
        repo.url, tmp_path / "ws2", ref="main", commit_sha=first, mirror=mirror,
        log=lines.append,
    )  # fmt: skip

    assert info.sha == first
    assert (tmp_path / "ws2" / "app.txt").read_text() == "first\n"
    assert f"commit {first[:7]} is in the mirror already: nothing to fetch" in lines


async def test_a_short_sha_and_a_force_pushed_commit_are_found(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "first\n"})
    first = repo.head
    mirror = mirror_path(tmp_path / "data", "web", repo.url)
    await checkout(
        repo.url, tmp_path / "ws0", ref="main", commit_sha=None, mirror=mirror, log=print
    )
    orphan = repo.commit({"app.txt": "pushed, then forced away\n"})
    git(repo.path, "branch", "keep", orphan)  # the server still has it, not on main
    git(repo.path, "reset", "--quiet", "--hard", first)

    short = await checkout(
        repo.url, tmp_path / "ws1", ref="main", commit_sha=first[:8], mirror=mirror, log=print
    )
    forced = await checkout(
        repo.url, tmp_path / "ws2", ref="main", commit_sha=orphan, mirror=mirror, log=print
    )

    assert short.sha == first
    assert forced.sha == orphan
    assert (tmp_path / "ws2" / "app.txt").read_text() == "pushed, then forced away\n"


async def test_missing_refs_and_commits_fail_for_good_and_keep_the_mirror(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "first\n"})
    git(repo.path, "tag", "--annotate", "--message", "release one", "v1")  # a tag object
    mirror = mirror_path(tmp_path / "data", "web", repo.url)
    await checkout(
        repo.url, tmp_path / "ws0", ref="main", commit_sha=None, mirror=mirror, log=print
    )
    lines: list[str] = []

    with pytest.raises(CheckoutError) as no_commit_named:
        await checkout(
            repo.url, tmp_path / "ws3", ref="refs/tags/v1", commit_sha=None, mirror=mirror,
            log=lines.append,
        )  # fmt: skip
    with pytest.raises(CheckoutError) as no_ref:
        await checkout(
            repo.url, tmp_path / "ws1", ref="refs/heads/nope", commit_sha=None, mirror=mirror,
            log=lines.append,
        )  # fmt: skip
    with pytest.raises(CheckoutError) as no_commit:
        await checkout(
            repo.url, tmp_path / "ws2", ref="main", commit_sha="ab" * 20, mirror=mirror,
            log=lines.append,
        )  # fmt: skip

    assert no_ref.value.message == f"ref 'refs/heads/nope' does not exist in {repo.url}"
    assert not no_ref.value.retryable
    assert no_commit.value.message == f"commit abababa does not exist in {repo.url} (main)"
    assert not no_commit.value.retryable
    tag = git(repo.path, "rev-parse", "v1")
    assert no_commit_named.value.message == f"{tag[:12]} is not a commit in {repo.url}"
    assert not no_commit_named.value.retryable
    assert not any("new mirror" in line for line in lines)


async def test_a_corrupted_mirror_is_replaced_by_a_new_one(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "first\n"})
    mirror = mirror_path(tmp_path / "data", "web", repo.url)
    await checkout(
        repo.url, tmp_path / "ws0", ref="main", commit_sha=None, mirror=mirror, log=print
    )
    for path in (mirror / "objects").rglob("*"):
        if path.is_file():
            path.chmod(0o644)
            path.write_bytes(b"garbage")
    head = repo.commit({"app.txt": "second\n"})
    lines: list[str] = []

    info = await checkout(
        repo.url, tmp_path / "ws1", ref="main", commit_sha=head, mirror=mirror, log=lines.append
    )

    assert info.sha == head
    assert (tmp_path / "ws1" / "app.txt").read_text() == "second\n"
    assert any(f"git failed in the mirror {mirror}" in line for line in lines), lines
    assert git(mirror, "cat-file", "-t", head) == "commit"  # the new mirror took its place
    assert git(tmp_path / "ws1", "rev-parse", "HEAD") == head
    assert not mirror.with_name(mirror.name + ".new").exists()


async def test_checkouts_of_one_mirror_take_turns_across_processes(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "first\n"})
    mirror = mirror_path(tmp_path / "data", "web", repo.url)
    mirror.parent.mkdir(parents=True)
    lock = mirror.with_name(mirror.name + ".lock")
    # another process holds the mirror's lock until its stdin closes
    holder = await asyncio.create_subprocess_exec(
        "flock", str(lock), "-c", "echo held; cat",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdin is not None
    assert await holder.stdout.readline() == b"held\n"
    lines: list[str] = []
    task = asyncio.create_task(
        checkout(repo.url, tmp_path / "ws", ref="main", commit_sha=None, mirror=mirror,
                 log=lines.append)
    )  # fmt: skip
    try:
        done, _ = await asyncio.wait({task}, timeout=1.0)  # bounded: it must not get through
        assert not done and not any("fetching" in line for line in lines)
    finally:
        holder.stdin.close()
        await holder.wait()

    info = await asyncio.wait_for(task, 60)
    assert info.sha == repo.head


class RefusingForge:
    """A loopback HTTP server standing in for a forge that refuses every request."""

    def __init__(self) -> None:
        self.authorizations: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization", ""))
        return web.Response(status=403, text="Forbidden\n")


async def test_the_token_reaches_the_mirror_fetch_and_a_refusal_keeps_its_message(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    forge = RefusingForge()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forge.handle)
    running = await aiohttp_server(app, host="127.0.0.1")
    url = f"http://127.0.0.1:{running.port}/team/app.git"
    token = f"glpat-{uuid.uuid4().hex}"
    mirror = mirror_path(tmp_path / "data", "web", url)
    lines: list[str] = []

    with pytest.raises(CheckoutError) as caught:
        await checkout(
            url, tmp_path / "ws", ref="main", commit_sha=None, auth=GitAuth(token=token),
            mirror=mirror, log=lines.append,
        )  # fmt: skip

    expected = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    assert f"Basic {expected}" in forge.authorizations
    assert caught.value.message.startswith(f"clone of {url} refused: ")
    assert token not in caught.value.message + "\n".join(lines)
    assert token not in (mirror / "config").read_text()
    # a refused credential is the remote's answer: no new mirror is tried
    assert not any("new mirror" in line for line in lines)
