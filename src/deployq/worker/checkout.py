"""Git checkout of exactly one commit into a fresh workspace.

``git init`` + a shallow ``git fetch`` of only what is needed: the commit itself when its sha
is known (falling back to the ref when the server refuses to serve a bare sha), then a
detached checkout of that exact commit. git runs as a subprocess in its own process group so a
cancel kills it at once; gitpython reads the commit's message and author.

Credentials (the app's own or the global ones, :mod:`deployq.gitauth`) reach git through its
environment only, never argv, the remote URL, log lines or errors; a refused credential is
named in the error (``app web's git token``), never shown.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import git

from deployq.builders.base import LogSink
from deployq.builders.process import run_streaming
from deployq.errors import CheckoutError
from deployq.gitauth import GitAuth, refusal_line
from deployq.redact import redact_urls
from deployq.validation import COMMIT_SHA_RE, FULL_SHA_RE
from deployq.worker.commits import CommitInfo
from deployq.worker.mirror import MirrorCheckout

_MISSING_OBJECT = re.compile(
    r"not our ref|couldn't find remote ref|no such remote ref|unadvertised object|"
    r"bad object|did not match any|reference is not a tree",
    re.IGNORECASE,
)


async def checkout(
    repo_url: str,
    dest: Path,
    *,
    ref: str,
    commit_sha: str | None,
    auth: GitAuth | None = None,
    submodules: bool = False,
    mirror: Path | None = None,
    log: LogSink,
) -> CommitInfo:
    """Check out ``commit_sha`` (or the head of ``ref``) of ``repo_url`` into ``dest``; through
    the bare mirror ``mirror`` when given (deployq.worker.mirror), but with submodules.

    Raises :class:`CheckoutError` when the repository refuses or the commit does not exist.
    """
    shown_url = redact_urls(repo_url)
    auth = auth or GitAuth()
    git_url, env = auth.env(repo_url)
    redact = auth.redactor(repo_url)
    sha = commit_sha.lower() if commit_sha else None
    if sha is not None and not COMMIT_SHA_RE.match(sha):
        raise _fail(CheckoutError(f"{commit_sha!r} is not a commit sha"))
    # a short sha (deploy --commit 3f2a9c1) is found in the ref's history, never fetched alone
    short = sha is not None and not FULL_SHA_RE.match(sha)

    async def git_cmd(*args: str, quiet: bool = False) -> tuple[int, str]:
        if not quiet:
            log(redact("$ git " + " ".join(args).replace(repo_url, shown_url)))
        result = await run_streaming(["git", *args], env=env, cwd=dest, on_line=log, redact=redact)
        return result.returncode, result.last_lines(8)

    os.makedirs(dest, exist_ok=True)
    if mirror is not None and not submodules:
        through = MirrorCheckout(
            url=git_url,
            shown_url=shown_url,
            env=env,
            redact=redact,
            log=log,
            refused=lambda tail: _refused(shown_url, tail, auth.advice(repo_url, tail)),
            final=_fail,
            reason=_reason,
            refused_for_good=lambda tail: auth.advice(repo_url, tail) is not None,
        )
        info = await through.run(mirror, dest, ref=ref, sha=sha, short=short)
        log(f"checked out {info.sha[:7]} ({info.message.splitlines()[0] if info.message else ''})")
        return info
    # no template: a workspace needs no sample hooks, and copying them takes time
    await git_cmd("init", "--quiet", "--template=", quiet=True)
    await git_cmd("remote", "add", "origin", git_url, quiet=True)
    log(f"fetching {ref}{f' at {sha[:7]}' if sha else ''} from {shown_url}")

    fetched = False
    if sha is not None and not short:
        rc, tail = await git_cmd("fetch", "--quiet", "--no-tags", "--depth", "1", "origin", sha)
        fetched = rc == 0
        if not fetched and (advice := auth.advice(repo_url, tail)):
            raise _refused(shown_url, tail, advice)
        if not fetched:
            log(f"the server does not serve commit {sha[:7]} directly: fetching {ref}")
    if not fetched:
        depth = [] if sha is not None else ["--depth", "1"]
        rc, tail = await git_cmd("fetch", "--quiet", "--no-tags", *depth, "origin", ref)
        if rc != 0:
            if _MISSING_OBJECT.search(tail):
                raise _fail(CheckoutError(f"ref {ref!r} does not exist in {shown_url}"))
            raise _refused(shown_url, tail, auth.advice(repo_url, tail))
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


def _refused(shown_url: str, tail: str, advice: str | None) -> CheckoutError:
    """The repository refused: with ``advice``, a credential or host key to fix (so another
    attempt cannot help)."""
    if advice is None:
        return CheckoutError(f"clone of {shown_url} refused: {_reason(tail)}")
    reason = refusal_line(tail) or _reason(tail)
    return _fail(CheckoutError(f"clone of {shown_url} refused: {reason}; {advice}"))


def _fail(exc: CheckoutError) -> CheckoutError:
    """A checkout error that another attempt cannot fix."""
    exc.retryable = False
    return exc
