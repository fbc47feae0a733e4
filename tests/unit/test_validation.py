"""One set of validation rules: what the API documents is what every front door checks."""

from __future__ import annotations

import re
from typing import Any

import pytest

from deployq.errors import InvalidInput
from deployq.manual import check_commit
from deployq.models import AppSpec
from deployq.validation import APP_NAME_RULE, COMMIT_SHA_PATTERN, MAX_PAGE_SIZE
from deployq.webhooks.openapi import openapi_document


def schemas_with(document: Any, key: str) -> list[Any]:
    """Every value of ``key`` anywhere in the document."""
    found: list[Any] = []
    if isinstance(document, dict):
        for name, value in document.items():
            if name == key:
                found.append(value)
            found += schemas_with(value, key)
    elif isinstance(document, list):
        for value in document:
            found += schemas_with(value, key)
    return found


def test_the_api_documents_the_rules_the_code_checks() -> None:
    document = openapi_document()
    assert COMMIT_SHA_PATTERN in schemas_with(document, "pattern")
    assert MAX_PAGE_SIZE in schemas_with(document, "maximum")


@pytest.mark.parametrize(
    ("commit", "ok"),
    [
        ("3f2a9c1", True),
        ("3F2A9C1", True),
        ("a" * 40, True),
        ("a" * 64, True),
        ("3f2a9c", False),
        ("a" * 65, False),
        ("main", False),
        ("3f2a9c1 ", True),
    ],
)
def test_commits_are_7_to_64_hex_digits_everywhere(commit: str, ok: bool) -> None:
    assert bool(re.match(COMMIT_SHA_PATTERN, commit.strip())) is ok
    if ok:
        assert check_commit(commit) == commit.strip().lower()
    else:
        with pytest.raises(InvalidInput, match="7 to 64 hex digits"):
            check_commit(commit)


@pytest.mark.parametrize("name", ["Web", "-web", "a" * 64, "web app", ""])
def test_bad_app_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ValueError, match=re.escape(APP_NAME_RULE)):
        AppSpec(name=name, repo_url="https://git.example.com/team/web.git")
