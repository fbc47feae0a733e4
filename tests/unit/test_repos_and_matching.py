import pytest

from deployq.matching import glob_match, skip_reason
from deployq.models import AppSpec, RefType, Trigger, TriggerKind
from deployq.repos import repo_identity


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Org/App.git",
        "https://user@GitHub.com/org/app",
        "git@github.com:org/app.git",
        "ssh://git@github.com:22/org/app",
        "github.com/org/app",
    ],
)
def test_repository_urls_normalise_to_one_identity(url: str) -> None:
    assert repo_identity(url) == "github.com/org/app"


def test_local_paths_keep_their_path() -> None:
    assert repo_identity("/srv/git/app.git") == "file:/srv/git/app"
    assert repo_identity("file:///srv/git/app") == "file:/srv/git/app"


def test_garbage_is_not_a_repository() -> None:
    with pytest.raises(ValueError, match="not a repository URL"):
        repo_identity("no repository here")


@pytest.mark.parametrize(
    ("pattern", "value", "matches"),
    [
        ("main", "main", True),
        ("main", "mainline", False),
        ("release/*", "release/1.2", True),
        ("release/*", "release/1/2", False),
        ("release/**", "release/1/2", True),
        ("**/*.py", "a.py", True),
        ("**/*.py", "src/pkg/a.py", True),
        ("services/api/**", "services/web/a.py", False),
    ],
)
def test_globs(pattern: str, value: str, matches: bool) -> None:
    assert glob_match(pattern, value) is matches


def push(ref: str = "refs/heads/main", **kw: object) -> Trigger:
    ref_type = RefType.TAG if ref.startswith("refs/tags/") else RefType.BRANCH
    return Trigger(kind=TriggerKind.WEBHOOK, provider="github", ref=ref, ref_type=ref_type, **kw)  # type: ignore[arg-type]


def test_matching_rules() -> None:
    app = AppSpec(name="api", repo_url="https://x/o/r", branches=["main", "release/*"])
    assert skip_reason(app, push()) is None
    assert skip_reason(app, push("refs/heads/release/2")) is None
    assert skip_reason(app, push("refs/heads/dev")) == (
        "branch dev is not one that app api builds (main, release/*)"
    )
    assert "app api does not build tags" in (skip_reason(app, push("refs/tags/v1")) or "")
    assert "skip CI" in (skip_reason(app, push(commit_message="fix [skip ci]")) or "")
    monorepo = app.model_copy(update={"paths": ["services/api/**"]})
    assert skip_reason(monorepo, push(changed_paths=["services/api/main.py"])) is None
    assert "no file changed under services/api/**" in (
        skip_reason(monorepo, push(changed_paths=["docs/x.md"])) or ""
    )
    assert skip_reason(monorepo, push(changed_paths=None)) is None


def test_manual_triggers_ignore_branch_rules() -> None:
    app = AppSpec(name="api", repo_url="https://x/o/r")
    manual = Trigger(kind=TriggerKind.MANUAL, app="api", ref="refs/heads/hotfix")
    assert skip_reason(app, manual) is None
