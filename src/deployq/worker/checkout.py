"""Git checkout of exactly one commit into a fresh workspace.

``git init`` + a shallow ``git fetch`` of only what is needed: the commit itself when its sha
is known (falling back to the ref when the server refuses to serve a bare sha), then a
detached checkout of that exact commit. git runs as a subprocess in its own process group so a
cancel kills it at once; gitpython reads the commit's message and author.

Credentials never reach argv, the remote URL, log lines or errors: an HTTPS token (or the
user and password of a URL stored before those were refused) travels in an
``http.<url>.extraHeader`` scoped to the repository's host, set through git's GIT_CONFIG_*
environment; the global token goes only to DEPLOYQ_GIT_TOKEN_HOSTS. An SSH key goes through
GIT_SSH_COMMAND.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import git

from deployq.builders.base import LogSink
from deployq.builders.process import base_env, run_streaming
from deployq.errors import CheckoutError
from deployq.redact import Redactor, redact_urls
from deployq.validation import COMMIT_SHA_RE, FULL_SHA_RE

_DROP_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSH_COMMAND")
_MISSING_OBJECT = re.compile(
    r"not our ref|couldn't find remote ref|no such remote ref|unadvertised object|"
    r"bad object|did not match any|reference is not a tree",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CommitInfo:
    """The commit that was checked out."""

    sha: str
    message: str
    author: str
    author_email: str


@dataclass(frozen=True)
class _Remote:
    """The URL git is given (never with credentials) and the HTTP header that carries them."""

    url: str
    scope: str | None = None
    basic: str | None = None
    secrets: tuple[str, ...] = ()


def _remote(url: str, token: str | None, token_hosts: str | None) -> _Remote:
    """Credentials travel in an ``http.<url>.extraHeader`` scoped to the repository's host
    (a redirect elsewhere does not carry them): the URL's own user and password, else the
    global token when the host is one it may go to."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return _Remote(url, secrets=(token or "",))
    host = parts.hostname.lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    scope = f"{parts.scheme.lower()}://{netloc}/"
    if parts.username is not None or parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
        return _Remote(clean, scope, f"{user}:{password}", (password, parts.password or ""))
    if token and _token_may_go_to(host, netloc, token_hosts):
        return _Remote(clean, scope, f"x-access-token:{token}", (token,))
    return _Remote(clean, secrets=(token or "",))


def _token_may_go_to(host: str, netloc: str, token_hosts: str | None) -> bool:
    if token_hosts is None:
        return True  # the repository's own host (the header is scoped to it)
    allowed = {h.strip().lower() for h in token_hosts.split(",") if h.strip()}
    return host in allowed or netloc in allowed


def git_env(
    url: str, token: str | None, ssh_key: Path | None, token_hosts: str | None = None
) -> tuple[str, dict[str, str]]:
    """(the URL to give git, git's environment carrying the credentials), never prompting."""
    remote = _remote(url, token, token_hosts)
    return remote.url, _git_env(remote, ssh_key)


def _git_env(remote: _Remote, ssh_key: Path | None) -> dict[str, str]:
    extra = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "true",  # never prompt: fail with a message instead
        "LC_ALL": "C",  # error messages we recognise
    }
    configs: list[tuple[str, str]] = [
        # the workspace lives for one build: keep a fetched pack as one file instead of
        # writing each object loose (~40 ms for a small repository), and skip maintenance
        ("fetch.unpackLimit", "1"),
        ("maintenance.auto", "false"),
        ("gc.auto", "0"),
    ]
    if remote.basic is not None and remote.scope is not None:
        basic = base64.b64encode(remote.basic.encode()).decode()
        configs.append((f"http.{remote.scope}.extraHeader", f"Authorization: Basic {basic}"))
    for index, (key, value) in enumerate(configs):
        extra[f"GIT_CONFIG_KEY_{index}"] = key
        extra[f"GIT_CONFIG_VALUE_{index}"] = value
    extra["GIT_CONFIG_COUNT"] = str(len(configs))
    if ssh_key is not None:
        extra["GIT_SSH_COMMAND"] = (
            f"ssh -i {shlex.quote(str(ssh_key))} -o IdentitiesOnly=yes "
            "-o BatchMode=yes -o StrictHostKeyChecking=accept-new"
        )
    return base_env(extra, drop=_DROP_ENV)


async def checkout(
    repo_url: str,
    dest: Path,
    *,
    ref: str,
    commit_sha: str | None,
    token: str | None = None,
    token_hosts: str | None = None,
    ssh_key: Path | None = None,
    submodules: bool = False,
    log: LogSink,
) -> CommitInfo:
    """Check out ``commit_sha`` (or the head of ``ref``) of ``repo_url`` into ``dest``.

    Raises :class:`CheckoutError` when the repository refuses or the commit does not exist.
    """
    shown_url = redact_urls(repo_url)
    remote = _remote(repo_url, token, token_hosts)
    redact = Redactor(remote.secrets)
    env = _git_env(remote, ssh_key)
    sha = commit_sha.lower() if commit_sha else None
    if sha is not None and not COMMIT_SHA_RE.match(sha):
        raise _fail(CheckoutError(f"{commit_sha!r} is not a commit sha"))
    # a short sha (deploy --commit 3f2a9c1) is found in the ref's history, never fetched alone
    short = sha is not None and not FULL_SHA_RE.match(sha)

    async def git_cmd(*args: str, quiet: bool = False) -> tuple[int, str]:
        if not quiet:
            log(redact("$ git " + " ".join(args).replace(repo_url, shown_url)))
        result = await run_streaming(["git", *args], env=env, cwd=dest, on_line=log, redact=redact)
        return result.returncode, result.last_lines(3)

    os.makedirs(dest, exist_ok=True)
    # no template: a workspace needs no sample hooks, and copying them takes time
    await git_cmd("init", "--quiet", "--template=", quiet=True)
    await git_cmd("remote", "add", "origin", remote.url, quiet=True)
    log(f"fetching {ref}{f' at {sha[:7]}' if sha else ''} from {shown_url}")

    fetched = False
    if sha is not None and not short:
        rc, _ = await git_cmd("fetch", "--quiet", "--no-tags", "--depth", "1", "origin", sha)
        fetched = rc == 0
        if not fetched:
            log(f"the server does not serve commit {sha[:7]} directly: fetching {ref}")
    if not fetched:
        depth = [] if sha is not None else ["--depth", "1"]
        rc, tail = await git_cmd("fetch", "--quiet", "--no-tags", *depth, "origin", ref)
        if rc != 0:
            if _MISSING_OBJECT.search(tail):
                raise _fail(CheckoutError(f"ref {ref!r} does not exist in {shown_url}"))
            raise CheckoutError(f"clone of {shown_url} refused: {_reason(tail)}")
        if sha is not None and short:
            rc, out = await git_cmd("rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}")
            if rc != 0:
                raise _fail(
                    CheckoutError(
                        f"commit {sha} is not in the history of {ref} in {shown_url} "
                        "(or is ambiguous): give more of its sha, or the right --ref"
                    )
                )
            sha = out.strip().splitlines()[-1]
        elif sha is not None:
            rc, _ = await git_cmd("cat-file", "-e", f"{sha}^{{commit}}", quiet=True)
            if rc != 0:
                raise _fail(
                    CheckoutError(f"commit {sha[:7]} does not exist in {shown_url} ({ref})")
                )
    rc, tail = await git_cmd("checkout", "--quiet", "--detach", sha or "FETCH_HEAD")
    if rc != 0:
        raise CheckoutError(f"checkout of {(sha or ref)[:12]} failed: {_reason(tail)}")
    if submodules and (dest / ".gitmodules").is_file():
        rc, tail = await git_cmd(
            "-c", "protocol.file.allow=always", "submodule", "update", "--init",
            "--recursive", "--depth", "1",
        )  # fmt: skip
        if rc != 0:
            raise CheckoutError(f"submodules of {shown_url} failed: {_reason(tail)}")
    info = await asyncio.to_thread(_commit_info, dest)
    log(f"checked out {info.sha[:7]} ({info.message.splitlines()[0] if info.message else ''})")
    return info


def _commit_info(path: Path) -> CommitInfo:
    repo = git.Repo(path)
    try:
        commit = repo.head.commit
        message = commit.message
        text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
        return CommitInfo(
            sha=commit.hexsha,
            message=text.strip(),
            author=str(commit.author.name or ""),
            author_email=str(commit.author.email or ""),
        )
    finally:
        repo.close()


def _reason(tail: str) -> str:
    lines = [line.removeprefix("fatal: ").strip() for line in tail.splitlines() if line.strip()]
    return "; ".join(lines[-2:]) or "git failed without a message"


def _fail(exc: CheckoutError) -> CheckoutError:
    """A checkout error that another attempt cannot fix."""
    exc.retryable = False
    return exc
