"""Helpers shared by the queue tests (test_queue*.py): apps, servers, triggers, leases."""

from __future__ import annotations

import itertools
from typing import Any

from deployq.models import App, AppSpec, BuildServer, JobStatus, Priority, Trigger, TriggerKind
from deployq.store import Lease, Outcome, Store

_shas = itertools.count(1)


async def add_app(store: Store, name: str, **spec: Any) -> App:
    return await store.apps.add(
        AppSpec(name=name, repo_url=f"https://example.invalid/team/{name}.git", **spec)
    )


async def add_server(
    store: Store, name: str, capacity: int = 2, arch: str = "amd64", labels: list[str] | None = None
) -> BuildServer:
    return await store.servers.add(
        name, "unix:///var/run/docker.sock", capacity=capacity, arch=arch, labels=labels
    )


def push(
    app: str,
    *,
    branch: str = "main",
    delivery: str | None = None,
    priority: Priority | None = None,
    kind: TriggerKind = TriggerKind.MANUAL,
) -> Trigger:
    """A trigger for ``app`` with a fresh commit sha."""
    return Trigger(
        kind=kind,
        provider="github" if delivery else "manual",
        app=app,
        ref=f"refs/heads/{branch}",
        commit_sha=f"{next(_shas):040x}",
        delivery_id=delivery,
        priority=priority,
        actor="tester",
    )


async def enqueue(store: Store, app: str, **kwargs: Any) -> int:
    result = await store.queue.enqueue(push(app, **kwargs))
    assert len(result.jobs) == 1
    return result.jobs[0].id


async def claimed(store: Store, n: int, app: str = "web") -> list[Lease]:
    """``n`` jobs of a new app ``app`` claimed at once (one server, room for all)."""
    await add_server(store, "local", capacity=n)
    await add_app(store, app, concurrency=n, supersede_policy="queue")
    for _ in range(n):
        await store.queue.enqueue(push(app))
    leases = await store.leases.claim("w1", limit=n)
    assert len(leases) == n
    return leases


async def claim_one(store: Store, worker: str = "w1") -> Lease:
    leases = await store.leases.claim(worker, limit=1)
    assert len(leases) == 1, "expected a job to claim"
    return leases[0]


SUCCESS = Outcome(JobStatus.SUCCEEDED, image_ref="r/a:1", image_digest="sha256:" + "a" * 64)
FAILURE = Outcome(JobStatus.FAILED, error="docker build exited with 1")
