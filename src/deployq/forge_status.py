"""Commit statuses on the forge: one POST per status, to GitHub's or GitLab's published API.

GitHub: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}`` with ``state`` (pending, success,
failure, error), ``target_url``, ``description`` (at most 140 characters) and ``context``.
GitLab: ``POST {base}/api/v4/projects/{url-encoded path}/statuses/{sha}`` with ``state``
(pending, running, success, failed, canceled), ``name``, ``target_url``, ``description``.

Errors are :class:`NotifyError`: permanent for a refused token (401), an unknown repository
or commit (404) and an invalid status (422); a rate limit (403/429 with ``Retry-After`` or
``X-RateLimit-Remaining: 0`` and ``X-RateLimit-Reset``) carries when to try again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import quote

import aiohttp

from deployq.errors import NotifyError

#: GitHub refuses longer descriptions (422)
MAX_DESCRIPTION = 140
#: wait after a rate limit that says nothing of when it ends
DEFAULT_RATE_LIMIT_WAIT_S = 60.0


class Forge(StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"


class Phase(StrEnum):
    """Where a job is, as the forge is told."""

    QUEUED = "queued"
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ERRORED = "errored"  # timed out, or deployq could not run it
    CANCELLED = "cancelled"


_GITHUB_STATE = {
    Phase.QUEUED: "pending",
    Phase.STARTED: "pending",
    Phase.SUCCEEDED: "success",
    Phase.FAILED: "failure",
    Phase.ERRORED: "error",
    Phase.CANCELLED: "error",
}
_GITLAB_STATE = {
    Phase.QUEUED: "pending",
    Phase.STARTED: "running",
    Phase.SUCCEEDED: "success",
    Phase.FAILED: "failed",
    Phase.ERRORED: "failed",
    Phase.CANCELLED: "canceled",
}


@dataclass(frozen=True)
class CommitStatus:
    forge: Forge
    project: str
    """``owner/name`` on GitHub, ``group/subgroup/name`` on GitLab."""
    sha: str
    phase: Phase
    app: str
    target_url: str
    description: str

    @property
    def state(self) -> str:
        table = _GITHUB_STATE if self.forge is Forge.GITHUB else _GITLAB_STATE
        return table[self.phase]

    @property
    def context(self) -> str:
        return f"deployq/{self.app}"


_PHASES = {
    "queued": Phase.QUEUED,
    "started": Phase.STARTED,
    "succeeded": Phase.SUCCEEDED,
    "failed": Phase.FAILED,
    "timed_out": Phase.ERRORED,
    "cancelled": Phase.CANCELLED,
}


def commit_status(target: str, event: str, payload: dict[str, Any]) -> CommitStatus:
    """The status a notification of the outbox stands for: ``target`` is ``KIND:HOST/PROJECT``
    (store.notifications.forge_target), ``payload`` the notification's (notify.render)."""
    kind, _, identity = target.partition(":")
    job: dict[str, Any] = payload["job"]
    phase = _PHASES[event]
    if phase is Phase.FAILED and job.get("retry_scheduled"):
        phase = Phase.QUEUED  # attempt N failed, N+1 is queued: not the end yet
    description = {
        Phase.QUEUED: f"job {job['id']} queued",
        Phase.STARTED: f"job {job['id']} building",
        Phase.SUCCEEDED: f"job {job['id']} succeeded",
        Phase.FAILED: f"job {job['id']} failed: {job.get('error') or 'see the log'}",
        Phase.ERRORED: f"job {job['id']} {event.replace('_', ' ')}",
        Phase.CANCELLED: f"job {job['id']} cancelled",
    }[phase]
    if job.get("retry_scheduled"):
        description = f"job {job['id']} attempt {job['attempt']} failed; retrying"
    return CommitStatus(
        forge=Forge(kind),
        project=identity.split("/", 1)[1],
        sha=str(job["commit_sha"]),
        phase=phase,
        app=str(payload["app"]["name"]),
        target_url=str(job["url"]),
        description=description,
    )


def status_request(
    status: CommitStatus, *, api_base: str, token: str
) -> tuple[str, dict[str, str], dict[str, str]]:
    """The URL, headers and JSON body of the POST for ``status``.

    ``api_base`` is GitHub's API root (``https://api.github.com`` or ``https://HOST/api/v3``)
    or GitLab's base URL (``https://gitlab.example.com``).
    """
    base = api_base.rstrip("/")
    description = status.description.replace("\n", " ").strip()
    if len(description) > MAX_DESCRIPTION:
        description = description[: MAX_DESCRIPTION - 1] + "…"
    if status.forge is Forge.GITHUB:
        url = f"{base}/repos/{status.project}/statuses/{status.sha}"
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        body = {"context": status.context}
    else:
        url = f"{base}/api/v4/projects/{quote(status.project, safe='')}/statuses/{status.sha}"
        headers = {"PRIVATE-TOKEN": token}
        body = {"name": status.context}
    body.update(state=status.state, target_url=status.target_url, description=description)
    return url, headers, body


async def post_status(
    session: aiohttp.ClientSession,
    status: CommitStatus,
    *,
    api_base: str,
    token: str,
    timeout_s: float,
) -> None:
    """Send one status; raise NotifyError saying what the forge answered."""
    url, headers, body = status_request(status, api_base=api_base, token=token)
    where = f"{status.forge.value} commit status for {status.project}@{status.sha[:12]}"
    try:
        async with session.post(
            url, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            if 200 <= resp.status < 300:
                return
            text = (await resp.text())[:300]
            raise _refusal(where, resp.status, resp.headers, text)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NotifyError(f"{where}: the forge at {api_base} does not answer ({exc!r})") from exc


def _refusal(where: str, code: int, headers: Mapping[str, str], text: str) -> NotifyError:
    wait = _rate_limit_wait(code, headers)
    if wait is not None:
        return NotifyError(
            f"{where}: rate limited by the forge (HTTP {code}); again in {wait:.0f}s",
            retry_after_s=wait,
        )
    if code == 401:
        return NotifyError(
            f"{where}: the forge refused the app's forge token (HTTP 401); give it a valid one",
            permanent=True,
        )
    if code in (403, 404):
        return NotifyError(
            f"{where}: the repository or commit is unknown to the forge, or the token may not "
            f"see it (HTTP {code}); check the token's access to the repository",
            permanent=True,
        )
    if code == 422:
        return NotifyError(
            f"{where}: the forge refused the status (HTTP 422): {text}", permanent=True
        )
    return NotifyError(f"{where}: the forge answered HTTP {code}: {text}")


def _seconds(value: str, *, until: bool) -> float:
    try:
        number = float(value)
    except ValueError:
        return DEFAULT_RATE_LIMIT_WAIT_S
    return max(1.0, number - time.time() if until else number)


def _rate_limit_wait(code: int, headers: Mapping[str, str]) -> float | None:
    """Seconds the forge asks us to wait, for a 403/429 that is a rate limit; else None.

    ``Retry-After`` (seconds; GitHub's secondary limits, GitLab) comes first; then GitHub's
    ``X-RateLimit-Remaining: 0`` with ``X-RateLimit-Reset`` (epoch seconds), or GitLab's
    ``RateLimit-Remaining``/``RateLimit-Reset``.
    """
    if code not in (403, 429):
        return None
    retry_after = headers.get("Retry-After")
    if retry_after is not None:
        return _seconds(retry_after, until=False)
    remaining = headers.get("X-RateLimit-Remaining", headers.get("RateLimit-Remaining"))
    reset = headers.get("X-RateLimit-Reset", headers.get("RateLimit-Reset"))
    if remaining == "0" and reset is not None:
        return _seconds(reset, until=True)
    return DEFAULT_RATE_LIMIT_WAIT_S if code == 429 else None
