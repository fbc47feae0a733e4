"""Cache image names and the Dockerfile stages that get one (deployq.buildcache), and the
cache plan of a build (deployq.worker.cache.plan_cache)."""

from __future__ import annotations

import pytest

from deployq.buildcache import CacheTag, cache_stages, cache_tag, parse_cache_tag
from deployq.imageref import MAX_TAG_CHARS, parse
from deployq.worker.cache import plan_cache

MULTI = """\
# syntax=docker/dockerfile:1
FROM base:1 AS deps
RUN make deps

FROM deps AS build
COPY . /src
RUN --mount=type=cache,target=/root/.cache \\
    make build

FROM base:1 AS unused
RUN echo never needed by the final stage

FROM base:1 AS assets
RUN make assets

FROM base:1
COPY --from=build /out /app
COPY --from=assets /assets /app/assets
"""


def test_the_final_stage_needs_its_named_stages_in_build_order() -> None:
    assert cache_stages(MULTI) == ["deps", "build", "assets"]


def test_a_target_needs_only_what_it_reads() -> None:
    assert cache_stages(MULTI, target="build") == ["deps"]
    assert cache_stages(MULTI, target="deps") == []
    assert cache_stages(MULTI, target="no-such-stage") == []


def test_one_stage_dockerfiles_have_no_cache_stages() -> None:
    assert cache_stages("FROM base:1\nRUN echo hi\n") == []
    assert cache_stages("") == []


def test_stages_are_found_by_index_by_mount_and_across_comments_and_continuations() -> None:
    text = (
        "FROM --platform=$BUILDPLATFORM golang:1 As Builder\n"
        "RUN go build \\\n"
        "# a comment inside the continuation\n"
        "  -o /app\n"
        "FROM base AS tools\n"
        "FROM base AS cfg\n"
        "FROM scratch\n"
        "COPY --from=0 /app /app\n"
        "RUN --mount=type=bind,from=tools,target=/t cp /t/x /x\n"
    )
    assert cache_stages(text) == ["builder", "tools"]


def test_an_image_named_like_a_later_stage_is_an_image() -> None:
    text = "FROM later AS first\nFROM base AS later\nFROM first\n"
    assert cache_stages(text) == ["first"]


def test_heredoc_bodies_are_not_instructions() -> None:
    text = "FROM base AS gen\nRUN <<EOF\nFROM evil AS fake\nEOF\nFROM base\nCOPY --from=gen /x /x\n"
    assert cache_stages(text) == ["gen"]


@pytest.mark.parametrize(
    ("branch", "stage", "tag"),
    [
        ("main", "deps", "cache-main--deps"),
        ("feature/login", "build", "cache-feature-login--build"),
        ("a--b---c", "Build", "cache-a-b-c--build"),
        ("refs//weird", "x-y", "cache-refs-weird--x-y"),
    ],
)
def test_cache_tags_name_branch_and_stage(branch: str, stage: str, tag: str) -> None:
    assert cache_tag(branch, stage) == tag
    parsed = parse_cache_tag(tag)
    assert parsed is not None and parsed.stage == stage.lower()


def test_a_long_branch_is_cut_and_the_tag_stays_valid() -> None:
    tag = cache_tag("b" * 300, "deps")
    assert len(tag) == MAX_TAG_CHARS
    assert parse(f"registry.example.com/app:{tag}").tag == tag
    assert parse_cache_tag(tag) == CacheTag("b" * (MAX_TAG_CHARS - 12), "deps")


@pytest.mark.parametrize("tag", ["main", "3f2a9c1", "cache-main", "cache---x", "pr-7"])
def test_other_tags_are_not_cache_tags(tag: str) -> None:
    assert parse_cache_tag(tag) is None


def test_a_new_branch_builds_from_its_own_then_the_default_branchs_cache() -> None:
    plan = plan_cache(
        "reg:5000/team/web",
        branch="feature/x",
        default_branch="main",
        dockerfile_text=MULTI,
        target=None,
    )
    assert plan.stages == {
        "deps": "reg:5000/team/web:cache-feature-x--deps",
        "build": "reg:5000/team/web:cache-feature-x--build",
        "assets": "reg:5000/team/web:cache-feature-x--assets",
    }
    assert plan.sources["deps"] == [
        "reg:5000/team/web:cache-feature-x--deps",
        "reg:5000/team/web:cache-main--deps",
    ]
    assert plan.sources["build"][2:] == [
        "reg:5000/team/web:cache-feature-x--build",
        "reg:5000/team/web:cache-main--build",
    ]
    assert plan.final[:2] == ["reg:5000/team/web:feature-x", "reg:5000/team/web:main"]
    assert plan.final[2:] == plan.sources["assets"]


def test_the_default_branch_and_a_one_stage_build_reuse_their_last_image() -> None:
    plan = plan_cache(
        "reg/web", branch="main", default_branch="main", dockerfile_text="FROM x\n", target=None
    )
    assert plan.stages == {} and plan.final == ["reg/web:main"]
    plan = plan_cache(
        "reg/web", branch="v1.2", default_branch=None, dockerfile_text=None, target=None
    )
    assert plan.final == ["reg/web:v1.2"]
