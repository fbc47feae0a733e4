"""Where an image goes: registry host, repository and the docker-valid tags of a commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from deployq.config import Settings
from deployq.errors import ConfigError, InvalidInput
from deployq.imageref import registry_host
from deployq.models import App
from deployq.worker.pipeline import docker_tag, image_names

SHA = "0123456789abcdef0123456789abcdef01234567"


def app(**fields: Any) -> App:
    now = datetime.now(UTC)
    values: dict[str, Any] = {
        "id": 1,
        "name": "shop",
        "repo_url": "https://git.example.com/team/shop.git",
        "repo_identity": "git.example.com/team/shop",
        "created_at": now,
        "updated_at": now,
    }
    values.update(fields)
    return App(**values)


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("main", "main"),
        ("feature/new-cart", "feature-new-cart"),
        (".hidden", "hidden"),
        ("v1.2.3", "v1.2.3"),
        ("a" * 200, "a" * 128),
        ("ünïcode", "n-code"),
        ("///", "unnamed"),
    ],
)
def test_branch_names_become_valid_docker_tags(name: str, tag: str) -> None:
    assert docker_tag(name) == tag


def test_registry_urls_lose_their_scheme_for_image_references() -> None:
    assert registry_host("http://127.0.0.1:5000/") == "127.0.0.1:5000"
    assert registry_host("harbor.example.com") == "harbor.example.com"


def test_tags_are_the_short_sha_and_the_branch_under_the_default_project() -> None:
    settings = Settings(registry_url="https://harbor.example.com", registry_project="apps")
    names = image_names(app(), settings, sha=SHA, branch="feature/x")
    assert names.refs == [
        "harbor.example.com/apps/shop:0123456",
        "harbor.example.com/apps/shop:feature-x",
    ]


def test_a_tag_push_is_tagged_with_the_git_tag_in_the_apps_own_repository() -> None:
    settings = Settings(registry_url="harbor.example.com")
    names = image_names(app(image="team/store"), settings, sha=SHA, branch="v2.0")
    assert names.refs == [
        "harbor.example.com/team/store:0123456",
        "harbor.example.com/team/store:v2.0",
    ]


def test_no_registry_is_a_configuration_error_that_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="DEPLOYQ_REGISTRY_URL"):
        image_names(app(), Settings(), sha=SHA, branch="main")


def test_an_image_that_names_the_configured_registry_is_not_prefixed_twice() -> None:
    settings = Settings(registry_url="127.0.0.1:5000")
    names = image_names(app(image="127.0.0.1:5000/team/demo"), settings, sha=SHA, branch="main")
    assert names.refs == ["127.0.0.1:5000/team/demo:0123456", "127.0.0.1:5000/team/demo:main"]
    assert (names.registry, names.repository) == ("127.0.0.1:5000", "team/demo")


def test_an_image_on_another_registry_is_refused_naming_the_configured_one() -> None:
    settings = Settings(registry_url="http://127.0.0.1:5000")
    with pytest.raises(InvalidInput, match=r"registry\.example\.com.*127\.0\.0\.1:5000"):
        image_names(app(image="registry.example.com/team/demo"), settings, sha=SHA, branch="x")
