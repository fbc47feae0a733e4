"""Per-app git credentials against real private repositories: ``git http-backend`` behind HTTP
basic auth and a loopback sshd with a deploy key (tests/fixtures/private_git.py).

The checkout, reconciliation's ``git ls-remote`` and ``app add``'s check use the app's own
token or key (else the global ones); a refusal names the app and the credential to fix, and
no output path shows the secret.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from deployq.config import Settings
from deployq.errors import CheckoutError
from deployq.gitauth import app_git_auth, ls_remote
from deployq.models import AppSpec, JobStatus
from deployq.reconcile import reconcile
from deployq.redact import MASK
from deployq.store import Store
from deployq.testing.git_http import serve_git_http
from deployq.testing.jobs import running_pool, wait_job
from deployq.testing.services import LocalRegistry, _keygen
from deployq.worker.checkout import checkout
from deployq.worker.mirror import mirror_path
from fixtures.git import GitRepoFactory, fetch_children, git, git_started
from fixtures.private_git import PrivateRepos
from worker_support import add_app, deploy, log_text, registry_settings


def git_settings(tmp_path: Path, repos: PrivateRepos, **overrides: Any) -> Settings:
    """Settings that trust the sshd's host key (DEPLOYQ_GIT_KNOWN_HOSTS)."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "git_known_hosts": repos.sshd.known_hosts,
    }
    values.update(overrides)
    return Settings(**values)


def other_key(tmp_path: Path) -> str:
    """A well-formed deploy key the sshd does not know."""
    path = tmp_path / f"stranger-{uuid.uuid4().hex[:6]}"
    _keygen(path)
    return path.read_text()


async def clone(spec: AppSpec, settings: Settings, dest: Path) -> str:
    with app_git_auth(spec, settings) as auth:
        info = await checkout(
            spec.repo_url, dest, ref="refs/heads/main", commit_sha=None, auth=auth, log=print
        )
    return info.sha


async def test_the_apps_token_clones_over_http_and_a_wrong_one_is_refused_by_name(
    private_repos: PrivateRepos, git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "private\n"})
    url = private_repos.publish(repo).http
    config = git_settings(tmp_path, private_repos)
    wrong = f"wrong-{uuid.uuid4().hex}"
    lines: list[str] = []

    good = AppSpec(name="web", repo_url=url, git_token=private_repos.password)
    assert await clone(good, config, tmp_path / "ws1") == repo.head
    assert (tmp_path / "ws1" / "app.txt").read_text() == "private\n"
    let_in = len(private_repos.http.requests)
    assert let_in and all(allowed for _, allowed in private_repos.http.requests)

    bad = AppSpec(name="web", repo_url=url, git_token=wrong)
    with pytest.raises(CheckoutError) as refused:
        with app_git_auth(bad, config) as auth:
            await checkout(
                url, tmp_path / "ws2", ref="main", commit_sha=None, auth=auth, log=lines.append
            )
    message = refused.value.message
    assert "the repository refused app web's git token" in message
    assert "deployq app credentials web --git-token" in message
    assert refused.value.retryable is False  # another attempt sends the same token
    assert wrong not in message + "\n".join(lines)
    refused_requests = private_repos.http.requests[let_in:]
    assert refused_requests and not any(allowed for _, allowed in refused_requests)


async def test_the_apps_deploy_key_clones_over_ssh_and_another_key_is_refused_by_name(
    private_repos: PrivateRepos, git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"app.txt": "over ssh\n"})
    url = private_repos.publish(repo).ssh
    config = git_settings(tmp_path, private_repos)
    stranger = other_key(tmp_path)
    lines: list[str] = []

    good = AppSpec(name="api", repo_url=url, git_ssh_key=private_repos.sshd.key.read_text())
    assert await clone(good, config, tmp_path / "ws1") == repo.head
    assert (tmp_path / "ws1" / "app.txt").read_text() == "over ssh\n"

    bad = AppSpec(name="api", repo_url=url, git_ssh_key=stranger)
    with pytest.raises(CheckoutError) as refused:
        with app_git_auth(bad, config) as auth:
            await checkout(
                url, tmp_path / "ws2", ref="main", commit_sha=None, auth=auth, log=lines.append
            )
    message = refused.value.message
    assert (
        "refused: root@127.0.0.1: Permission denied (publickey); "
        "the SSH server refused app api's deploy key"
    ) in message
    assert "deployq app credentials api --git-ssh-key FILE" in message
    assert refused.value.retryable is False
    key_lines = [line for line in stranger.splitlines() if "-----" not in line]
    shown = message + "\n".join(lines)
    assert not any(line in shown for line in key_lines)


@pytest.mark.parametrize("transport", ["http", "ssh"])
async def test_the_mirror_fetch_skips_the_walk_with_the_apps_credential_on_both_transports(
    private_repos: PrivateRepos,
    git_repo_factory: GitRepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    transport: str,
) -> None:
    repo = git_repo_factory({"app.txt": "one\n"})
    urls = private_repos.publish(repo)
    (bare,) = private_repos.root.glob(f"{repo.path.name}-*.git")
    git(bare, "config", "uploadpack.allowFilter", "true")  # a forge: it serves filters
    if transport == "http":
        spec = AppSpec(name="web", repo_url=urls.http, git_token=private_repos.password)
    else:
        key = private_repos.sshd.key.read_text()
        spec = AppSpec(name="api", repo_url=urls.ssh, git_ssh_key=key)
    config = git_settings(tmp_path, private_repos)
    mirror = mirror_path(tmp_path / "data", spec.name, spec.repo_url)
    lines: list[str] = []

    async def deploy_to(dest: Path) -> str:
        with app_git_auth(spec, config) as auth:
            info = await checkout(
                spec.repo_url, dest, ref="main", commit_sha=None, auth=auth, mirror=mirror,
                log=lines.append,
            )  # fmt: skip
        return info.sha

    assert await deploy_to(tmp_path / "ws1") == repo.head
    repo.commit({"app.txt": "two\n"})
    private_repos.push(repo)
    trace = tmp_path / "trace.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    assert await deploy_to(tmp_path / "ws2") == repo.head
    monkeypatch.delenv("GIT_TRACE2_EVENT")

    assert (tmp_path / "ws2" / "app.txt").read_text() == "two\n"
    children = fetch_children(trace)
    assert any("index-pack" in argv for argv in children), children
    assert not any("rev-list" in argv for argv in children), children
    assert sum("fetch" in argv for argv in git_started(trace)) == 1  # nothing fetched lazily
    assert not any(line.startswith(("warning", "error", "fatal")) for line in lines), lines
    assert list((mirror / "objects" / "pack").glob("pack-*.promisor"))
    git(mirror, "fsck", "--connectivity-only", "--no-dangling")


def argv_holding(secret: str) -> list[str]:
    """Command lines on this host that hold ``secret``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if secret.encode() in cmdline:
                found.append(cmdline.decode(errors="replace"))
    return found


async def test_a_token_given_as_user_and_token_is_sent_with_that_user(
    git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    root = tmp_path / "gitlab"
    root.mkdir()
    repo = git_repo_factory({"a": "1"})
    git(root, "clone", "--quiet", "--bare", str(repo.path), str(root / "team.git"))
    user, token = "gitlab+deploy-token-7", f"gldt-{uuid.uuid4().hex}"
    config = Settings(data_dir=tmp_path / "data")

    with serve_git_http(root, user, token) as gitlab:
        url = gitlab.repo_url("team.git")
        spec = AppSpec(name="web", repo_url=url, git_token=f"{user}:{token}")
        assert await clone(spec, config, tmp_path / "ws") == repo.head
        with pytest.raises(CheckoutError) as refused:
            await clone(spec.model_copy(update={"git_token": token}), config, tmp_path / "ws2")

    assert "the repository refused app web's git token" in refused.value.message
    assert token not in refused.value.message


async def test_the_apps_token_is_in_no_command_line_and_no_git_config(
    private_repos: PrivateRepos, git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"a": "1"})
    spec = AppSpec(
        name="web", repo_url=private_repos.publish(repo).http, git_token=private_repos.password
    )
    seen: list[str] = []

    async def watch() -> None:
        while True:
            seen.extend(argv_holding(private_repos.password))
            await asyncio.sleep(0.005)  # sampling other processes: there is no event

    watcher = asyncio.create_task(watch())
    try:
        assert await clone(spec, git_settings(tmp_path, private_repos), tmp_path / "ws")
    finally:
        watcher.cancel()

    assert seen == []
    assert private_repos.password not in (tmp_path / "ws" / ".git" / "config").read_text()


async def test_the_apps_key_lives_in_a_private_file_only_while_git_runs(
    private_repos: PrivateRepos,
    git_repo_factory: GitRepoFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # as a worker's scratch does
    repo = git_repo_factory({"app.txt": "x\n"})
    spec = AppSpec(
        name="api",
        repo_url=private_repos.publish(repo).ssh,
        git_ssh_key=private_repos.sshd.key.read_text(),
    )

    with app_git_auth(spec, git_settings(tmp_path, private_repos)) as auth:
        assert auth.ssh_key is not None and auth.ssh_key.parent.parent == scratch
        assert auth.ssh_key.stat().st_mode & 0o777 == 0o600
        assert auth.ssh_key.parent.stat().st_mode & 0o777 == 0o700
        assert "IdentitiesOnly=yes" in auth.ssh_command()
        assert "StrictHostKeyChecking=yes" in auth.ssh_command()
        heads = await ls_remote(spec.repo_url, auth=auth)

    assert heads == {"refs/heads/main": repo.head}
    assert list(scratch.iterdir()) == []


async def test_without_a_credential_each_transport_says_what_to_give_the_app(
    private_repos: PrivateRepos, git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    urls = private_repos.publish(git_repo_factory({"a": "1"}))
    config = git_settings(tmp_path, private_repos)

    for url, expected in (
        (urls.http, "the repository asks for credentials and app web has none for it"),
        (urls.ssh, "the SSH server refused the login and app web has no deploy key"),
    ):
        with pytest.raises(CheckoutError) as refused:
            with app_git_auth(AppSpec(name="web", repo_url=url), config) as auth:
                await ls_remote(url, auth=auth)
        assert expected in refused.value.message


async def test_an_unknown_ssh_host_key_is_refused_with_the_fix(
    private_repos: PrivateRepos, git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    url = private_repos.publish(git_repo_factory({"a": "1"})).ssh
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")  # exists, but does not know the sshd's key
    spec = AppSpec(name="api", repo_url=url, git_ssh_key=private_repos.sshd.key.read_text())
    config = git_settings(tmp_path, private_repos, git_known_hosts=known_hosts)

    with pytest.raises(CheckoutError) as refused:
        await clone(spec, config, tmp_path / "ws")

    port = private_repos.sshd.port
    assert (
        f"the SSH host key of 127.0.0.1:{port} is unknown or changed in {known_hosts} "
        f"(DEPLOYQ_GIT_KNOWN_HOSTS): check its fingerprint, then add it "
        f"(`ssh-keyscan -p {port} 127.0.0.1 >> {known_hosts}`)"
    ) in refused.value.message


async def test_the_global_credentials_stay_the_default_and_the_apps_own_win(
    private_repos: PrivateRepos, git_repo_factory: GitRepoFactory, tmp_path: Path
) -> None:
    repo = git_repo_factory({"a": "1"})
    url = private_repos.publish(repo).http
    password = private_repos.password

    global_only = git_settings(tmp_path, private_repos, git_token=password)
    assert await clone(AppSpec(name="web", repo_url=url), global_only, tmp_path / "ws1")

    wrong = f"wrong-{uuid.uuid4().hex}"
    wrong_global = git_settings(tmp_path, private_repos, git_token=wrong)
    own = AppSpec(name="web", repo_url=url, git_token=password)
    assert await clone(own, wrong_global, tmp_path / "ws2") == repo.head
    with pytest.raises(CheckoutError) as refused:
        await clone(AppSpec(name="web", repo_url=url), wrong_global, tmp_path / "ws3")
    assert "refused DEPLOYQ_GIT_TOKEN (app web has no token of its own)" in refused.value.message


def test_the_cli_sets_checks_and_masks_an_apps_credentials(
    database_url: str,
    tmp_path: Path,
    private_repos: PrivateRepos,
    git_repo_factory: GitRepoFactory,
) -> None:
    urls = private_repos.publish(git_repo_factory({"a": "1"}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update(
        DEPLOYQ_DATABASE_URL=database_url,
        DEPLOYQ_DATA_DIR=str(tmp_path / "data"),
        DEPLOYQ_GIT_KNOWN_HOSTS=str(private_repos.sshd.known_hosts),
    )
    outputs: list[str] = []

    def deployq(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "deployq", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
        )
        outputs.append(result.stdout + result.stderr)
        return result

    wrong = f"wrong-{uuid.uuid4().hex}"
    password = private_repos.password
    assert deployq("app", "add", "web", "--repo", urls.http, "--no-check").returncode == 0
    refused = deployq("app", "credentials", "web", "--git-token", "-", stdin=wrong + "\n")
    assert refused.returncode == 1
    assert "app web: credentials not changed: repository: git ls-remote" in refused.stderr
    assert "the repository refused app web's git token" in refused.stderr
    taken = deployq("app", "credentials", "web", "--git-token", "-", stdin=password + "\n")
    assert (taken.returncode, taken.stdout.strip()) == (0, "app web: git token set")
    replaced = deployq("app", "add", "web", "--repo", urls.http, "--no-check", "--replace")
    assert replaced.returncode == 0  # a --replace without credentials keeps them
    assert "  --git-token **********" in deployq("app", "show", "web").stdout
    assert json.loads(deployq("app", "show", "web", "--json").stdout)["git_token"] == MASK

    key = private_repos.sshd.key
    assert deployq("app", "add", "api", "--repo", urls.ssh, "--no-check").returncode == 0
    public = deployq("app", "credentials", "api", "--git-ssh-key", str(key.with_suffix(".pub")))
    assert public.returncode == 1 and "is not an SSH private key" in public.stderr
    stranger = tmp_path / "stranger"
    stranger.write_text(other_key(tmp_path))
    refused = deployq("app", "credentials", "api", "--git-ssh-key", str(stranger))
    assert refused.returncode == 1
    assert "the SSH server refused app api's deploy key" in refused.stderr
    taken = deployq("app", "credentials", "api", "--git-ssh-key", str(key))
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key)], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.startswith(f"app api: SSH deploy key set (ssh-ed25519 {fingerprint})")
    assert "  --git-ssh-key **********" in deployq("app", "show", "api").stdout
    listed = json.loads(deployq("app", "list", "--json").stdout)
    assert [a["git_ssh_key"] for a in listed if a["name"] == "api"] == [MASK]
    cleared = deployq("app", "credentials", "api", "--clear")
    assert cleared.returncode == 0 and "own git credentials cleared" in cleared.stdout
    assert "--git-ssh-key" not in deployq("app", "show", "api").stdout

    key_lines = [line for line in key.read_text().splitlines() if "-----" not in line]
    everything = "\n".join(outputs)
    assert password not in everything and wrong not in everything
    assert not any(line in everything for line in key_lines)


# -- whole jobs: checkout with the app's credential, build, push; reconciliation -------------

DOCKERFILE = "FROM deployq-test/base:latest\nCOPY app.txt /app.txt\n"


def credential(private_repos: PrivateRepos, transport: str) -> dict[str, str]:
    if transport == "http":
        return {"git_token": private_repos.password}
    return {"git_ssh_key": private_repos.sshd.key.read_text()}


async def job_texts(store: Store, job_id: int) -> str:
    """Everything kept about a job: its row, its timeline, its log."""
    job = await store.jobs.get(job_id)
    events = await store.jobs.events(job_id)
    return "\n".join(
        [
            job.model_dump_json(),
            *(e.model_dump_json() for e in events),
            await log_text(store, job_id),
        ]
    )


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("transport", ["http", "ssh"])
async def test_a_private_repository_builds_and_reconciles_with_the_apps_credential(
    transport: str,
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    base_image: str,
    private_repos: PrivateRepos,
    git_repo_factory: GitRepoFactory,
) -> None:
    repo = git_repo_factory({"Dockerfile": DOCKERFILE, "app.txt": "v1\n"})
    urls = private_repos.publish(repo)
    values = registry_settings(
        registry, docker_host, git_known_hosts=private_repos.sshd.known_hosts
    )
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    try:
        app = await add_app(
            store,
            getattr(urls, transport),
            build_tags=True,
            **credential(private_repos, transport),
        )
        async with running_pool(store):
            first = await wait_job(store, await deploy(store, app), lambda j: j.status.is_final)
            assert first.status is JobStatus.SUCCEEDED, await job_texts(store, first.id)
            assert first.commit_sha == repo.head
            [nothing_new] = await reconcile(store, app)
            assert (nothing_new.error, nothing_new.enqueued) == (None, [])

            second = repo.commit({"app.txt": "v2\n"}, "second")
            git(repo.path, "tag", "-a", "v2.0", "-m", "release 2.0")
            private_repos.push(repo)
            [result] = await reconcile(store, app)
            assert result.error is None
            jobs = [
                await wait_job(store, job_id, lambda j: j.status.is_final)
                for job_id in result.enqueued
            ]
    finally:
        await store.close()

    assert sorted((j.ref, j.commit_sha, j.status) for j in jobs) == [
        ("refs/heads/main", second, JobStatus.SUCCEEDED),
        ("refs/tags/v2.0", second, JobStatus.SUCCEEDED),
    ]


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("transport", ["http", "ssh"])
async def test_a_wrong_credential_fails_the_job_naming_the_app_never_the_secret(
    transport: str,
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    private_repos: PrivateRepos,
    git_repo_factory: GitRepoFactory,
    tmp_path: Path,
) -> None:
    urls = private_repos.publish(git_repo_factory({"Dockerfile": DOCKERFILE, "app.txt": "x"}))
    wrong = (
        {"git_token": f"wrong-{uuid.uuid4().hex}"}
        if transport == "http"
        else {"git_ssh_key": other_key(tmp_path)}
    )
    values = registry_settings(
        registry, docker_host, git_known_hosts=private_repos.sshd.known_hosts
    )
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    try:
        app = await add_app(store, getattr(urls, transport), **wrong)
        async with running_pool(store):
            job = await wait_job(store, await deploy(store, app), lambda j: j.status.is_final)
        texts = await job_texts(store, job.id)
        [reconciled] = await reconcile(store, app)
    finally:
        await store.close()

    credential_name = "git token" if transport == "http" else "deploy key"
    assert job.status is JobStatus.FAILED
    assert job.attempt == 1  # not retried: the same credential would be refused again
    assert f"refused app {app}'s {credential_name}" in (job.error or "")
    assert f"deployq app credentials {app}" in (job.error or "")
    assert reconciled.error is not None
    assert f"refused app {app}'s {credential_name}" in reconciled.error
    secret_parts = [
        part
        for value in wrong.values()
        for part in (value, *value.splitlines())
        if "-----" not in part
    ]
    shown = texts + reconciled.error
    assert not [part for part in secret_parts if part in shown]
