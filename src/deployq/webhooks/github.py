"""GitHub deliveries: ping, push (branches and tags), pull_request."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from deployq.matching import deleted_reason
from deployq.models import RefType, Trigger, TriggerKind
from deployq.webhooks.events import (
    BadPayload,
    Parsed,
    changed_paths,
    identities,
    obj,
    sha,
    sub,
    text,
)

PROVIDER = "github"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
SIGNATURE_HEADER = "X-Hub-Signature-256"
CONTENT_TYPES = ("application/json", "application/x-www-form-urlencoded")
#: GitHub lists at most this many commits in a push payload; beyond, the changed files are
#: unknown and every app of the repository builds
MAX_LISTED_COMMITS = 2048
PR_ACTIONS = ("opened", "synchronize", "reopened")


def repository_identities(payload: Any) -> list[str]:
    """Identities of ``repository``: host/full_name and its URLs (never used to clone)."""
    repo = payload.get("repository") if isinstance(payload, dict) else None
    if not isinstance(repo, dict):
        return []
    html_url = repo.get("html_url")
    host = "github.com"
    if isinstance(html_url, str) and html_url.startswith("http"):
        host = urlsplit(html_url).hostname or host
    full_name = repo.get("full_name")
    named = f"{host}/{full_name}" if isinstance(full_name, str) and "/" in full_name else None
    return identities(
        named, html_url, repo.get("clone_url"), repo.get("ssh_url"), repo.get("git_url")
    )


def parse(event: str, payload: Any) -> Parsed:
    """Understand one GitHub event; BadPayload when its shape is wrong."""
    if not isinstance(payload, dict):
        raise BadPayload("the payload is not a JSON object")
    ids = repository_identities(payload)
    if event == "ping":
        return Parsed(event, ids, ping=True)
    if event == "push":
        return _push(payload, ids)
    if event == "pull_request":
        return _pull_request(payload, ids)
    return Parsed(
        event, ids, ignored=f"GitHub {event!r} events do not start builds; push and pull_request do"
    )


def _push(payload: dict[str, Any], ids: list[str]) -> Parsed:
    ref = text(payload, "ref", required=True)
    assert ref is not None
    if payload.get("deleted") is True:
        return Parsed("push", ids, ref=ref, ignored=deleted_reason(ref))
    head = sub(payload, "head_commit")
    commit = sha(text(head, "id")) or sha(text(payload, "after"))
    if commit is None:
        return Parsed("push", ids, ref=ref, ignored="the push has no commit to build")
    if ref.startswith("refs/tags/"):
        ref_type = RefType.TAG
    elif ref.startswith("refs/heads/"):
        ref_type = RefType.BRANCH
    else:
        return Parsed(
            "push", ids, ref=ref, ignored=f"{ref} is neither a branch nor a tag, so it is not built"
        )
    commits = payload.get("commits")
    listed = len(commits) if isinstance(commits, list) else 0
    author = sub(head, "author")
    pusher = sub(payload, "pusher")
    trigger = Trigger(
        kind=TriggerKind.WEBHOOK,
        provider=PROVIDER,
        ref=ref,
        ref_type=ref_type,
        commit_sha=commit,
        commit_message=text(head, "message"),
        commit_author=_str(author.get("name")),
        pusher=_str(pusher.get("name")),
        pusher_email=_str(pusher.get("email")),
        changed_paths=changed_paths(
            commits, complete=ref_type is RefType.BRANCH and listed < MAX_LISTED_COMMITS
        ),
        actor=_str(pusher.get("name")) or PROVIDER,
    )
    return Parsed("push", ids, trigger=trigger, ref=ref)


def _pull_request(payload: dict[str, Any], ids: list[str]) -> Parsed:
    action = text(payload, "action", required=True)
    pr = obj(payload, "pull_request")
    number = pr.get("number", payload.get("number"))
    if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
        raise BadPayload("the pull_request has no number")
    ref = f"refs/pull/{number}/head"
    if action not in PR_ACTIONS:
        return Parsed(
            "pull_request",
            ids,
            ref=ref,
            ignored=f"pull request #{number} was {action}: only opened, reopened and updated "
            "pull requests are built",
        )
    head = obj(pr, "head")
    commit = sha(text(head, "sha", required=True))
    if commit is None:
        raise BadPayload("the pull request head has no commit")
    user = sub(pr, "user")
    sender = sub(payload, "sender")
    trigger = Trigger(
        kind=TriggerKind.WEBHOOK,
        provider=PROVIDER,
        ref=ref,
        ref_type=RefType.PULL_REQUEST,
        commit_sha=commit,
        commit_message=text(pr, "title"),
        commit_author=_str(user.get("login")),
        pusher=_str(sender.get("login")),
        actor=_str(sender.get("login")) or PROVIDER,
    )
    return Parsed("pull_request", ids, trigger=trigger, ref=ref)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
