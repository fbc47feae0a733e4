"""Helpers shared by the worker tests: settings for the test registry, apps, deploys, logs.

Running a pool and waiting for a job: :mod:`deployq.testing.jobs` (bench/ uses them too).
"""

from __future__ import annotations

import uuid
from typing import Any

from deployq.models import AppSpec, Trigger, TriggerKind
from deployq.store import Store


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def registry_settings(registry: Any, docker_host: str, **overrides: Any) -> dict[str, Any]:
    """Settings overrides for a worker that pushes to the test registry."""
    values: dict[str, Any] = {
        "registry_url": registry.url,
        "registry_username": registry.username,
        "registry_password": registry.password,
        "registry_insecure": True,
        "docker_host": docker_host,
        "lease_ttl": 6,
        "shutdown_grace": 30,
    }
    values.update(overrides)
    return values


async def add_app(store: Store, repo_url: str, **spec: Any) -> str:
    name = spec.pop("name", None) or unique("app")
    await store.apps.add(AppSpec(name=name, repo_url=repo_url, **spec))
    return name


async def deploy(store: Store, app: str, ref: str = "refs/heads/main") -> int:
    result = await store.queue.enqueue(Trigger(kind=TriggerKind.MANUAL, app=app, ref=ref))
    return result.jobs[0].id


async def log_text(store: Store, job_id: int) -> str:
    return "\n".join(line.line for line in await store.logs.read(job_id))
