"""Missed-delivery reconciliation with a real `git ls-remote` on real repositories."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from deployq.models import AppSpec, Trigger, TriggerKind
from deployq.reconcile import reconcile, reconcile_component
from deployq.store import CHANNEL_JOBS, Listener, Store
from fixtures.git import git as git_as_ada


def git(path: Path, *args: str) -> None:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}
    subprocess.run(["git", *args], cwd=path, env=env, check=True, capture_output=True)


async def add_app(store: Store, url: str, **spec: Any) -> None:
    await store.apps.add(AppSpec(name="web", repo_url=url, branches=["main", "feature/*"], **spec))


async def test_heads_without_a_job_are_enqueued_once(store: Store, git_repo_factory: Any) -> None:
    repo = git_repo_factory({"Dockerfile": "FROM scratch\n"})
    main_head = repo.head
    git(repo.path, "checkout", "--quiet", "-b", "feature/login")
    feature_head = repo.commit({"login.txt": "hi"}, "login")
    git(repo.path, "checkout", "--quiet", "-b", "experiment")
    repo.commit({"x.txt": "x"}, "not a matching branch")
    await add_app(store, repo.url)
    # main was delivered by its webhook already
    await store.queue.enqueue(
        Trigger(
            kind=TriggerKind.WEBHOOK,
            provider="github",
            app="web",
            ref="refs/heads/main",
            commit_sha=main_head,
            delivery_id="hook-1",
        )
    )

    [result] = await reconcile(store, "web")

    assert result.error is None and result.heads == 2
    [job] = [j for j in await store.jobs.recent() if j.id in result.enqueued]
    assert (job.trigger, job.provider, job.ref) == (
        TriggerKind.RECONCILE,
        "reconcile",
        "refs/heads/feature/login",
    )
    assert job.commit_sha == feature_head
    assert job.delivery_id == f"reconcile:web:{feature_head}"
    [again] = await reconcile(store, "web")
    assert again.enqueued == []
    assert len(await store.jobs.recent()) == 2


async def test_only_apps_that_opted_in_and_are_due_are_reconciled(
    store: Store, git_repo_factory: Any
) -> None:
    repo = git_repo_factory({"a": "1"})
    await add_app(store, repo.url)  # no reconcile_interval_s: never periodic
    assert await reconcile(store, only_due=True) == []
    await store.apps.update(
        AppSpec(name="web", repo_url=repo.url, branches=["main"], reconcile_interval_s=3600)
    )
    [result] = await reconcile(store, only_due=True)
    assert len(result.enqueued) == 1
    assert await reconcile(store, only_due=True) == []  # reconciled a moment ago


async def test_an_unreachable_repository_is_reported_not_raised(
    store: Store, tmp_path: Path
) -> None:
    await add_app(store, (tmp_path / "missing").as_uri())
    [result] = await reconcile(store, "web")
    assert result.error is not None and "git ls-remote" in result.error
    assert await store.jobs.recent() == []


async def test_the_periodic_component_enqueues_and_stops(
    store: Store, git_repo_factory: Any
) -> None:
    repo = git_repo_factory({"a": "1"})
    await add_app(store, repo.url, reconcile_interval_s=60)
    listener = Listener(store.dsn, [CHANNEL_JOBS])
    notices = listener.__aiter__()
    first = asyncio.ensure_future(anext(notices))
    await listener.connected.wait()
    stop = asyncio.Event()
    task = asyncio.create_task(reconcile_component(store)(stop))
    async with asyncio.timeout(30):
        notice = await first
    assert notice.payload["kind"] == "enqueued"
    stop.set()
    async with asyncio.timeout(10):
        await task
    await listener.close()
    [job] = await store.jobs.recent()
    assert job.commit_sha == repo.head


def test_the_reconcile_command(database_url: str, tmp_path: Path, git_repo_factory: Any) -> None:
    repo = git_repo_factory({"a": "1"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update(DEPLOYQ_DATABASE_URL=database_url, DEPLOYQ_DATA_DIR=str(tmp_path / "data"))

    def deployq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "deployq", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    added = deployq("app", "add", "--no-check", "web", "--repo", repo.url)
    assert added.returncode == 0, added.stderr
    out = deployq("reconcile", "web", "--json")
    assert out.returncode == 0, out.stderr
    [result] = json.loads(out.stdout)
    assert result["app"] == "web" and len(result["enqueued"]) == 1
    tokens = deployq("token", "create", "--scope", "deploy", "--name", "ci", "--json")
    assert tokens.returncode == 0, tokens.stderr
    created = json.loads(tokens.stdout)
    assert created["token"].startswith("dq_") and created["scope"] == "deploy"
    listed = deployq("token", "list")
    assert "ci" in listed.stdout and created["token"] not in listed.stdout
    assert deployq("token", "revoke", str(created["id"])).returncode == 0
    assert deployq("token", "revoke", str(created["id"])).returncode == 1
    deliveries = deployq("deliveries", "--json")
    assert deliveries.returncode == 0 and json.loads(deliveries.stdout) == []


async def test_a_full_queue_stops_the_round_and_the_next_one_catches_up(
    store: Store, git_repo_factory: Any
) -> None:
    repo = git_repo_factory({"Dockerfile": "FROM scratch\n"})
    git(repo.path, "checkout", "--quiet", "-b", "feature/a")
    repo.commit({"a.txt": "a"}, "a")
    await add_app(store, repo.url, max_queued=1)

    [full] = await reconcile(store, "web")
    [queued] = await store.jobs.recent()
    await store.jobs.cancel(queued.id, actor="tester")  # room again
    [caught_up] = await reconcile(store, "web")

    assert full.error is not None and full.error.startswith("queue full: app web has 1")
    assert len(full.enqueued) == 1
    assert caught_up.error is None and len(caught_up.enqueued) == 1
    assert {j.ref for j in await store.jobs.recent()} == {
        "refs/heads/main",
        "refs/heads/feature/a",
    }


def tag(path: Path, *args: str) -> None:
    git_as_ada(path, "tag", *args)  # an annotated tag needs a tagger


async def test_an_app_that_builds_tags_gets_new_and_moved_tags_never_the_old_ones(
    store: Store, git_repo_factory: Any
) -> None:
    repo = git_repo_factory({"a": "1"})
    tag(repo.path, "v1")  # an old release: not a missed push
    await store.apps.add(AppSpec(name="web", repo_url=repo.url, build_tags=True))

    [first] = await reconcile(store, "web")
    assert (first.error, first.heads, first.tags) == (None, 1, 1)
    [main_job] = [await store.jobs.get(i) for i in first.enqueued]
    assert main_job.ref == "refs/heads/main"

    release = repo.commit({"a": "2"}, "release 2")
    tag(repo.path, "-a", "v2", "-m", "version 2")  # annotated: built at its commit
    tag(repo.path, "v2-light")
    [second] = await reconcile(store, "web")
    jobs = [await store.jobs.get(i) for i in second.enqueued]
    assert sorted((j.ref, j.ref_type.value, j.commit_sha) for j in jobs) == [
        ("refs/heads/main", "branch", release),
        ("refs/tags/v2", "tag", release),
        ("refs/tags/v2-light", "tag", release),
    ]
    assert {j.delivery_id for j in jobs if j.ref == "refs/tags/v2"} == {
        f"reconcile:web:refs/tags/v2@{release}"
    }
    [again] = await reconcile(store, "web")
    assert again.enqueued == []

    tag(repo.path, "--force", "v1")  # moved to the release commit
    [moved] = await reconcile(store, "web")
    assert [(j.ref, j.commit_sha) for j in [await store.jobs.get(i) for i in moved.enqueued]] == [
        ("refs/tags/v1", release)
    ]


async def test_tags_are_not_listed_for_an_app_that_does_not_build_them(
    store: Store, git_repo_factory: Any
) -> None:
    repo = git_repo_factory({"a": "1"})
    tag(repo.path, "v1")
    await add_app(store, repo.url)

    [result] = await reconcile(store, "web")

    assert (result.heads, result.tags) == (1, 0)
    assert [(await store.jobs.get(i)).ref for i in result.enqueued] == ["refs/heads/main"]
