"""GitLab deliveries: Push Hook, Tag Push Hook, Merge Request Hook."""

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

PROVIDER = "gitlab"
EVENT_HEADER = "X-Gitlab-Event"
DELIVERY_HEADER = "X-Gitlab-Event-UUID"
TOKEN_HEADER = "X-Gitlab-Token"
CONTENT_TYPES = ("application/json",)
MR_ACTIONS = ("open", "reopen", "update")
#: GitLab's merge request actions, as the past tense a reason reads in
_PAST = {"close": "closed", "merge": "merged", "approval": "approved", "unapproval": "unapproved"}


def project_identities(payload: Any) -> list[str]:
    """Identities of ``project``: web host + path_with_namespace, and its URLs."""
    project = payload.get("project") if isinstance(payload, dict) else None
    if not isinstance(project, dict):
        return []
    web_url = project.get("web_url")
    named = None
    path = project.get("path_with_namespace")
    if isinstance(web_url, str) and web_url.startswith("http") and isinstance(path, str):
        host = urlsplit(web_url).hostname
        named = f"{host}/{path}" if host else None
    return identities(named, web_url, project.get("git_http_url"), project.get("git_ssh_url"))


def parse(event: str, payload: Any) -> Parsed:
    """Understand one GitLab event; BadPayload when its shape is wrong."""
    if not isinstance(payload, dict):
        raise BadPayload("the payload is not a JSON object")
    ids = project_identities(payload)
    if event in ("Push Hook", "Tag Push Hook"):
        return _push(event, payload, ids)
    if event == "Merge Request Hook":
        return _merge_request(payload, ids)
    return Parsed(
        event,
        ids,
        ignored=f"GitLab {event!r} events do not start builds; push, tag push and merge "
        "request events do",
    )


def _push(event: str, payload: dict[str, Any], ids: list[str]) -> Parsed:
    ref = text(payload, "ref", required=True)
    assert ref is not None
    after = sha(text(payload, "after"))
    checkout = sha(text(payload, "checkout_sha"))
    if after is None or checkout is None:
        return Parsed(event, ids, ref=ref, ignored=deleted_reason(ref))
    tag = event == "Tag Push Hook"
    if tag != ref.startswith("refs/tags/") or not ref.startswith(("refs/tags/", "refs/heads/")):
        raise BadPayload(f"{event} with ref {ref!r}")
    commits = payload.get("commits")
    commits = commits if isinstance(commits, list) else []
    head: dict[str, Any] = next(
        (c for c in commits if isinstance(c, dict) and c.get("id") == checkout), {}
    )
    total = payload.get("total_commits_count")
    complete = isinstance(total, int) and total == len(commits)
    author = sub(head, "author")
    trigger = Trigger(
        kind=TriggerKind.WEBHOOK,
        provider=PROVIDER,
        ref=ref,
        ref_type=RefType.TAG if tag else RefType.BRANCH,
        commit_sha=checkout,
        commit_message=text(head, "message"),
        commit_author=_str(author.get("name")),
        pusher=_str(payload.get("user_username")) or _str(payload.get("user_name")),
        pusher_email=_str(payload.get("user_email")),
        changed_paths=changed_paths(commits, complete=complete and not tag),
        actor=_str(payload.get("user_username")) or PROVIDER,
    )
    return Parsed(event, ids, trigger=trigger, ref=ref)


def _merge_request(payload: dict[str, Any], ids: list[str]) -> Parsed:
    attrs = obj(payload, "object_attributes")
    iid = attrs.get("iid")
    if not isinstance(iid, int) or isinstance(iid, bool) or iid <= 0:
        raise BadPayload("the merge request has no iid")
    ref = f"refs/merge-requests/{iid}/head"
    action = attrs.get("action")
    event = "Merge Request Hook"
    if action not in MR_ACTIONS:
        return Parsed(
            event,
            ids,
            ref=ref,
            ignored=f"merge request !{iid} was {_PAST.get(str(action), action or 'changed')}: only "
            "opened, reopened and updated merge requests are built",
        )
    if action == "update" and not attrs.get("oldrev"):
        return Parsed(event, ids, ref=ref, ignored="the merge request update has no new commits")
    last = obj(attrs, "last_commit")
    commit = sha(text(last, "id", required=True))
    if commit is None:
        raise BadPayload("the merge request has no last commit")
    author = sub(last, "author")
    user = sub(payload, "user")
    trigger = Trigger(
        kind=TriggerKind.WEBHOOK,
        provider=PROVIDER,
        ref=ref,
        ref_type=RefType.PULL_REQUEST,
        commit_sha=commit,
        commit_message=text(last, "message") or text(attrs, "title"),
        commit_author=_str(author.get("name")),
        pusher=_str(user.get("username")),
        pusher_email=_str(user.get("email")),
        actor=_str(user.get("username")) or PROVIDER,
    )
    return Parsed(event, ids, trigger=trigger, ref=ref)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
