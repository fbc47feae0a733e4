"""The registry tag retention plan (pure): what stays, what goes, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from deployq.models import PushedImage
from deployq.worker.tag_retention import plan_tags

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def build(job_id: int, branch: str, c: str, *, days_ago: int = 0) -> PushedImage:
    return PushedImage(
        job_id=job_id,
        branch=branch,
        commit_sha=c * 40,
        image_ref=f"r/x:{c * 7}",
        at=NOW - timedelta(days=days_ago),
    )


def test_the_newest_n_per_branch_stay_and_branch_tags_stay() -> None:
    pushed = [build(4, "main", "d"), build(3, "feature/x", "c"), build(2, "main", "b")]
    pushed.append(build(1, "main", "a"))
    tags = {t * 7: f"sha256:{t}" for t in "abcd"} | {"main": "sha256:d", "feature-x": "sha256:c"}

    plan = plan_tags(tags, pushed, keep=2, in_use_digests=set(), in_use_tags=set())

    assert plan.delete == {"sha256:a": ["aaaaaaa"]}
    assert plan.keep["ddddddd"] == "one of the newest 2 of main"
    assert plan.keep["ccccccc"] == "one of the newest 2 of feature/x"
    assert plan.keep["main"] == plan.keep["feature-x"] == "a branch's newest image"


def test_tags_not_pushed_by_deployq_and_images_in_use_stay() -> None:
    pushed = [build(3, "main", "c"), build(2, "main", "b"), build(1, "main", "a")]
    tags = {"ccccccc": "sha256:c", "bbbbbbb": "sha256:b", "aaaaaaa": "sha256:a"}
    tags |= {"latest": "sha256:latest", "v1": "sha256:v1"}

    plan = plan_tags(tags, pushed, keep=1, in_use_digests={"sha256:b"}, in_use_tags={"aaaaaaa"})

    assert plan.delete == {}
    assert plan.keep["latest"] == plan.keep["v1"] == "not pushed by deployq"
    assert plan.keep["aaaaaaa"] == "in use: a release, a rollback or a queued job"
    assert plan.spared == {"bbbbbbb": "its image is in use: a release, a rollback or a queued job"}


def test_an_image_a_kept_tag_names_stays_and_a_shared_digest_is_deleted_once() -> None:
    pushed = [build(4, "main", "d"), build(3, "main", "c")]
    pushed += [build(2, "main", "b"), build(1, "main", "a")]
    tags = {"ddddddd": "sha256:d", "ccccccc": "sha256:c", "latest": "sha256:c"}
    tags |= {"bbbbbbb": "sha256:ab", "aaaaaaa": "sha256:ab"}

    plan = plan_tags(tags, pushed, keep=1, in_use_digests=set(), in_use_tags=set())

    assert plan.delete == {"sha256:ab": ["aaaaaaa", "bbbbbbb"]}
    assert plan.spared == {"ccccccc": "its image is also tagged latest, which stays"}
    assert plan.deleted_tags == ["aaaaaaa", "bbbbbbb"]


def test_a_rebuilt_commit_counts_as_its_newest_build_and_missing_tags_do_not_count() -> None:
    # job 3 rebuilt commit a; job 2's tag b is gone from the registry already
    pushed = [build(3, "main", "a"), build(2, "main", "b"), build(1, "main", "a")]
    pushed.insert(0, build(4, "main", "c"))
    tags = {"ccccccc": "sha256:c", "aaaaaaa": "sha256:a"}

    plan = plan_tags(tags, pushed, keep=2, in_use_digests=set(), in_use_tags=set())

    assert plan.delete == {}
    assert set(plan.keep) == {"ccccccc", "aaaaaaa"}


def test_the_next_page_of_a_tag_list_is_followed_on_the_same_registry_only() -> None:
    from deployq.registry import _next_page

    base = "http://127.0.0.1:5000"
    link = '</v2/t/web/tags/list?last=b&n=2>; rel="next"'
    assert _next_page(link, base) == "/v2/t/web/tags/list?last=b&n=2"
    assert _next_page(f'<{base}/v2/t/web/tags/list?last=b>; rel="next"', base) == (
        "/v2/t/web/tags/list?last=b"
    )
    assert _next_page('<http://evil.example/v2/x>; rel="next"', base) is None
    assert _next_page("", base) is None


def test_build_cache_tags_go_with_their_idle_branch_but_never_the_default_branchs() -> None:
    pushed = [build(3, "main", "c", days_ago=90), build(2, "feature/new", "b", days_ago=1)]
    pushed.append(build(1, "feature/old", "a", days_ago=60))
    tags = {"ccccccc": "sha256:c", "bbbbbbb": "sha256:b", "aaaaaaa": "sha256:a"}
    tags |= {
        "cache-main--deps": "sha256:main-deps",
        "cache-feature-new--deps": "sha256:new-deps",
        "cache-feature-old--deps": "sha256:old-deps",
        "cache-feature-old--build": "sha256:old-build",
        # the old branch's deps stage is the same image as main's: it must stay
        "cache-feature-old--base": "sha256:main-deps",
        "cache-elsewhere--deps": "sha256:elsewhere",
    }

    plan = plan_tags(
        tags,
        pushed,
        keep=5,
        in_use_digests=set(),
        in_use_tags=set(),
        cache_idle_before=NOW - timedelta(days=30),
        default_branch="main",
    )

    assert plan.deleted_tags == ["cache-feature-old--build", "cache-feature-old--deps"]
    assert plan.keep["cache-main--deps"] == "the default branch's build cache"
    assert plan.keep["cache-feature-new--deps"] == "build cache of a branch built 2026-12-02"
    assert plan.keep["cache-elsewhere--deps"] == (
        "build cache of a branch no build of this app names"
    )
    assert plan.spared == {
        "cache-feature-old--base": "its image is also tagged cache-main--deps, which stays"
    }
    # without an idle cutoff every cache tag stays
    kept = plan_tags(tags, pushed, keep=5, in_use_digests=set(), in_use_tags=set())
    assert kept.delete == {}
