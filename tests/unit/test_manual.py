"""One manual trigger: every way a person names what to build, and what it becomes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deployq.errors import InvalidInput
from deployq.manual import ManualRef, manual_trigger, resolve_ref
from deployq.models import AppSpec, Priority, RefType, TriggerKind

BRANCH, TAG, REVIEW = RefType.BRANCH, RefType.TAG, RefType.PULL_REQUEST


def app(*branches: str) -> AppSpec:
    return AppSpec(
        name="web", repo_url="https://git.example.com/t/web.git", branches=list(branches)
    )


@pytest.mark.parametrize(
    ("branches", "ref", "expected"),
    [
        # no ref: the app's first branch that is not a glob
        (["main"], None, ("refs/heads/main", "main", BRANCH)),
        (["release/*", "develop"], None, ("refs/heads/develop", "develop", BRANCH)),
        # branches, as typed and in full
        (["main"], "main", ("refs/heads/main", "main", BRANCH)),
        (
            ["main"],
            " feature/new-cart ",
            ("refs/heads/feature/new-cart", "feature/new-cart", BRANCH),
        ),
        (["main"], "refs/heads/main", ("refs/heads/main", "main", BRANCH)),
        (["release/*"], "release/1.2", ("refs/heads/release/1.2", "release/1.2", BRANCH)),
        # a branch the app does not list is still built: the operator asked for it
        (["main"], "hotfix", ("refs/heads/hotfix", "hotfix", BRANCH)),
        # tags
        (["main"], "tags/v1.2", ("refs/tags/v1.2", "v1.2", TAG)),
        (["main"], "refs/tags/v1.2", ("refs/tags/v1.2", "v1.2", TAG)),
        # pull and merge requests, named as webhooks name them
        (["main"], "refs/pull/7/head", ("refs/pull/7/head", "pr-7", REVIEW)),
        (["main"], "refs/pull/7/merge", ("refs/pull/7/merge", "pr-7", REVIEW)),
        (["main"], "refs/merge-requests/12/head", ("refs/merge-requests/12/head", "mr-12", REVIEW)),
    ],
)
def test_a_ref_resolves_to_the_full_ref_the_branch_shown_and_its_kind(
    branches: list[str], ref: str | None, expected: tuple[str, str, RefType]
) -> None:
    assert resolve_ref(app(*branches), ref) == ManualRef(*expected)


@pytest.mark.parametrize(
    ("branches", "ref", "reason"),
    [
        (["release/*"], None, "builds branches matching release/*, none of them one branch"),
        ([], None, "builds branches matching (none)"),
        (["main"], "", "the ref is empty"),
        (["main"], "   ", "the ref is empty"),
        (["main"], "release/*", "is a pattern: say which branch"),
        (["main"], "feat?", "is a pattern"),
        (["main"], "a b", "contains ' '"),
        (["main"], "a~1", "contains '~'"),
        (["main"], "main^", "contains '^'"),
        (["main"], "a:b", "contains ':'"),
        (["main"], "a\\b", "contains '\\\\'"),
        (["main"], "a\x00b", "contains '\\x00'"),
        (["main"], "a..b", "contains '..'"),
        (["main"], "main@{1}", "contains '..' or '@{'"),
        (["main"], "@", "contains '..' or '@{'"),
        (["main"], "feature/", "empty path component"),
        (["main"], "a//b", "empty path component"),
        (["main"], "/main", "empty path component"),
        (["main"], ".hidden", "component '.hidden' starts with '.'"),
        (["main"], "x/main.lock", "component 'main.lock'"),
        (["main"], "main.", "ends with '.'"),
        (["main"], "refs/remotes/origin/main", "is not a branch, a tag"),
        (["main"], "refs/pull/x/head", "is not a branch, a tag"),
        (["main"], "refs/pull/7", "is not a branch, a tag"),
        (["main"], "refs/pull/0/head", "is not a branch, a tag"),
    ],
)
def test_a_ref_git_would_refuse_is_refused_with_the_rule(
    branches: list[str], ref: str | None, reason: str
) -> None:
    with pytest.raises(InvalidInput, match=re.escape(reason)):
        resolve_ref(app(*branches), ref)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {"ref": "refs/heads/main", "commit_sha": None, "priority": None}),
        ({"commit": "3F2A9C1"}, {"commit_sha": "3f2a9c1"}),
        ({"commit": "a" * 40}, {"commit_sha": "a" * 40}),
        ({"commit": "b" * 64}, {"commit_sha": "b" * 64}),
        ({"priority": "high"}, {"priority": Priority.HIGH}),
        ({"priority": "HIGH"}, {"priority": Priority.HIGH}),
        ({"priority": 3}, {"priority": Priority.CRITICAL}),
        ({"priority": Priority.LOW}, {"priority": Priority.LOW}),
        ({"ref": "tags/v1"}, {"ref": "refs/tags/v1", "ref_type": TAG}),
    ],
)
def test_the_trigger_carries_what_was_asked_and_who_asked(
    options: dict[str, Any], expected: dict[str, Any]
) -> None:
    trigger = manual_trigger(app("main"), actor="alice", **options)
    assert (trigger.kind, trigger.provider, trigger.app) == (TriggerKind.MANUAL, "manual", "web")
    assert trigger.actor == trigger.pusher == "alice"
    for key, value in expected.items():
        assert getattr(trigger, key) == value, key


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"commit": "3f2a9c"}, "is not a commit sha (7 to 64 hex digits)"),
        ({"commit": "xyz1234"}, "is not a commit sha"),
        ({"commit": "a" * 65}, "is not a commit sha"),
        ({"priority": "urgent"}, "unknown priority 'urgent'"),
        ({"priority": 9}, "9 is not a valid Priority"),
        ({"priority": True}, "priority is low, normal, high or critical"),
    ],
)
def test_a_bad_commit_or_priority_is_refused(options: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(reason)):
        manual_trigger(app("main"), actor="alice", **options)
