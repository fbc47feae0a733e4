"""Commit statuses against a fake forge that follows GitHub's and GitLab's published APIs
(deployq.testing.fake_forge): the requests deployq sends, and each refusal it meets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from deployq.errors import NotifyError
from deployq.forge_status import CommitStatus, Forge, Phase, post_status
from deployq.testing.fake_forge import FakeForge

TOKEN = "forge-token-1"
SHA = "a" * 40


@pytest.fixture
def forge() -> FakeForge:
    return FakeForge(tokens={TOKEN}, projects={"octo-org/octo-repo", "group/sub/diaspora"})


@pytest.fixture
async def base(forge: FakeForge, aiohttp_server: Any) -> str:
    server = await aiohttp_server(forge.web_app())
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def _status(forge: Forge, phase: Phase, *, project: str | None = None, **kw: Any) -> CommitStatus:
    values: dict[str, Any] = {
        "forge": forge,
        "project": project
        or ("octo-org/octo-repo" if forge is Forge.GITHUB else "group/sub/diaspora"),
        "sha": SHA,
        "phase": phase,
        "app": "web",
        "target_url": "https://deployq.example.com/api/v1/jobs/7",
        "description": f"job 7: {phase.value}",
    }
    values.update(kw)
    return CommitStatus(**values)


async def _send(
    session: aiohttp.ClientSession, status: CommitStatus, base: str, token: str = TOKEN
) -> None:
    await post_status(session, status, api_base=base, token=token, timeout_s=10)


async def test_github_gets_pending_then_success_with_context_url_and_description(
    forge: FakeForge, base: str, session: aiohttp.ClientSession
) -> None:
    for phase in (Phase.QUEUED, Phase.STARTED, Phase.SUCCEEDED):
        await _send(session, _status(Forge.GITHUB, phase), base)
    await _send(session, _status(Forge.GITHUB, Phase.FAILED), base + "/api/v3")  # Enterprise

    assert [(s.state, s.context) for s in forge.statuses] == [
        ("pending", "deployq/web"),
        ("pending", "deployq/web"),
        ("success", "deployq/web"),
        ("failure", "deployq/web"),
    ]
    assert forge.statuses[0].target_url == "https://deployq.example.com/api/v1/jobs/7"
    assert forge.statuses[2].description == "job 7: succeeded"


async def test_gitlab_gets_pending_running_and_failed_for_a_nested_group(
    forge: FakeForge, base: str, session: aiohttp.ClientSession
) -> None:
    for phase in (Phase.QUEUED, Phase.STARTED, Phase.FAILED, Phase.CANCELLED):
        await _send(session, _status(Forge.GITLAB, phase), base)

    assert [(s.project, s.state, s.context) for s in forge.statuses] == [
        ("group/sub/diaspora", "pending", "deployq/web"),
        ("group/sub/diaspora", "running", "deployq/web"),
        ("group/sub/diaspora", "failed", "deployq/web"),
        ("group/sub/diaspora", "canceled", "deployq/web"),
    ]


async def test_a_long_description_is_cut_to_what_github_takes(
    forge: FakeForge, base: str, session: aiohttp.ClientSession
) -> None:
    long = "build failed: " + "x" * 500 + "\nsecond line"
    await _send(session, _status(Forge.GITHUB, Phase.FAILED, description=long), base)

    [status] = forge.statuses
    assert status.description is not None and len(status.description) == 140


@pytest.mark.parametrize("forge_kind", [Forge.GITHUB, Forge.GITLAB])
async def test_a_refused_token_is_permanent_and_the_message_holds_no_token(
    forge_kind: Forge, base: str, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(NotifyError) as caught:
        await _send(session, _status(forge_kind, Phase.QUEUED), base, token="wrong-token-xyz")

    assert caught.value.permanent and "401" in caught.value.message
    assert "wrong-token-xyz" not in caught.value.message


@pytest.mark.parametrize("forge_kind", [Forge.GITHUB, Forge.GITLAB])
async def test_an_unknown_repository_is_a_permanent_404(
    forge_kind: Forge, base: str, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(NotifyError) as caught:
        await _send(session, _status(forge_kind, Phase.QUEUED, project="nobody/nothing"), base)

    assert caught.value.permanent and "404" in caught.value.message
    assert "nobody/nothing" in caught.value.message


async def test_an_unknown_commit_on_github_is_a_permanent_422(
    base: str, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(NotifyError) as caught:
        await _send(session, _status(Forge.GITHUB, Phase.QUEUED, sha="abc"), base)

    assert caught.value.permanent and "422" in caught.value.message


async def test_rate_limits_say_when_to_try_again(
    forge: FakeForge, base: str, session: aiohttp.ClientSession
) -> None:
    reset = int(time.time()) + 120
    forge.scripted += [
        (429, {"Retry-After": "7"}),  # GitHub's secondary limit, GitLab
        (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}),  # GitHub
        (429, {"RateLimit-Remaining": "0", "RateLimit-Reset": str(reset)}),  # GitLab
    ]
    waits = []
    for kind in (Forge.GITHUB, Forge.GITHUB, Forge.GITLAB):
        with pytest.raises(NotifyError) as caught:
            await _send(session, _status(kind, Phase.QUEUED), base)
        assert not caught.value.permanent and "rate limited" in caught.value.message
        waits.append(caught.value.retry_after_s)

    assert waits[0] == 7
    assert waits[1] is not None and 100 < waits[1] <= 120
    assert waits[2] is not None and 100 < waits[2] <= 120
    await _send(session, _status(Forge.GITHUB, Phase.QUEUED), base)  # then it goes through
    assert len(forge.statuses) == 1


async def test_a_forge_that_does_not_answer_is_retried_later(
    session: aiohttp.ClientSession, unused_tcp_port: int
) -> None:
    with pytest.raises(NotifyError) as caught:
        await _send(
            session, _status(Forge.GITHUB, Phase.QUEUED), f"http://127.0.0.1:{unused_tcp_port}"
        )

    assert not caught.value.permanent and caught.value.retry_after_s is None
    assert "does not answer" in caught.value.message
