"""Webhook authenticity: GitHub's HMAC signature and GitLab's shared token."""

from __future__ import annotations

from deployq.webhooks.signatures import github_signature, verify_github, verify_gitlab

SECRET = "It's a Secret to Everybody"


def test_githubs_documented_test_vector_verifies() -> None:
    body = b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert github_signature(SECRET, body) == expected
    assert verify_github(expected, body, ["wrong", SECRET])
    assert not verify_github(expected, body + b" ", [SECRET])


def test_a_github_signature_without_its_prefix_or_under_no_secret_is_refused() -> None:
    body = b"{}"
    signature = github_signature(SECRET, body)
    assert not verify_github(signature.removeprefix("sha256="), body, [SECRET])
    assert not verify_github(None, body, [SECRET])
    assert not verify_github(signature, body, [])


def test_a_gitlab_token_must_equal_one_of_the_secrets() -> None:
    assert verify_gitlab("tok-2", ["tok-1", "tok-2"])
    assert not verify_gitlab("tok-3", ["tok-1", "tok-2"])
    assert not verify_gitlab("", ["tok-1"])
    assert not verify_gitlab(None, ["tok-1"])
