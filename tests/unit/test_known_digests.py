"""worker.cache.KnownDigests: which cache tags a worker may name without asking the
registry."""

from __future__ import annotations

from deployq.worker.cache import KnownDigests

MAIN = "reg:5000/deployq/web:main"
DEPS = "reg:5000/deployq/web:cache-main--deps"
OTHER = "reg:5000/deployq/api:main"


def test_tags_this_worker_pushed_from_the_server_are_known() -> None:
    known = KnownDigests()
    known.remember("web", 1, {MAIN: "sha256:a", DEPS: "sha256:b"})
    assert known.digests([MAIN, DEPS], 1) == {MAIN: "sha256:a", DEPS: "sha256:b"}
    assert known.digests([MAIN], 1) == {MAIN: "sha256:a"}


def test_another_server_or_an_unknown_tag_asks_the_registry() -> None:
    known = KnownDigests()
    known.remember("web", 1, {MAIN: "sha256:a"})
    assert known.digests([MAIN], 2) is None  # built elsewhere: its engine has other images
    assert known.digests([MAIN, DEPS], 1) is None  # all or nothing: one lookup covers the rest
    assert known.digests([], 1) is None


def test_the_latest_push_wins_and_old_ones_expire() -> None:
    known = KnownDigests(ttl_s=0.0)
    known.remember("web", 1, {MAIN: "sha256:a"})
    assert known.digests([MAIN], 1) is None  # older than the ttl
    known = KnownDigests()
    known.remember("web", 1, {MAIN: "sha256:a"})
    known.remember("web", 2, {MAIN: "sha256:c"})
    assert known.digests([MAIN], 1) is None
    assert known.digests([MAIN], 2) == {MAIN: "sha256:c"}


def test_forgetting_an_app_keeps_the_others() -> None:
    known = KnownDigests()
    known.remember("web", 1, {MAIN: "sha256:a"})
    known.remember("api", 1, {OTHER: "sha256:o"})
    known.forget("web")
    assert known.digests([MAIN], 1) is None
    assert known.digests([OTHER], 1) == {OTHER: "sha256:o"}
    known.forget()
    assert known.digests([OTHER], 1) is None
