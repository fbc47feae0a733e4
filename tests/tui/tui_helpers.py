"""Shared by the console tests: fixed data with fixed times, and waiting on the app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from rich.color import ColorSystem
from rich.segment import Segment
from textual._compositor import LayoutUpdate

from deployq.models import App, AppSpec, Trigger, TriggerKind
from deployq.store import Store
from deployq.tui import DeployqApp

#: the console's "now" in every snapshot
FROZEN_NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
OPERATOR = "alice"
WAIT_S = 10.0


def frozen_clock() -> datetime:
    return FROZEN_NOW


async def add_app(store: Store, name: str, **spec: Any) -> App:
    return await store.apps.add(
        AppSpec(name=name, repo_url=f"https://example.invalid/team/{name}.git", **spec)
    )


def manual(app: str, ref: str = "refs/heads/main", **fields: Any) -> Trigger:
    return Trigger(kind=TriggerKind.MANUAL, app=app, ref=ref, actor="tests", **fields)


async def wait_until(
    app: DeployqApp, condition: Callable[[], bool], *, what: str, timeout_s: float = WAIT_S
) -> None:
    """Wait until ``condition()`` holds, re-checking whenever the app has applied a batch of
    job changes (and at least every 50 ms, for changes that are not jobs: dialogs, servers);
    fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        applied = asyncio.ensure_future(app.jobs_applied.wait())
        try:
            await asyncio.wait({applied}, timeout=min(left, 0.05))
        finally:
            applied.cancel()


T0 = FROZEN_NOW - timedelta(minutes=10)


def _t(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def seed_fixed(dsn: str) -> dict[str, int]:
    """Apps, servers, jobs (one of each status), events, logs and deliveries at fixed times.

    Returns the ids of the jobs by name. Synchronous, so snapshot tests (which run the app in
    its own event loop) can use it.
    """
    ids: dict[str, int] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, repo in (("web", "shop/web"), ("api", "shop/api")):
            conn.execute(
                "INSERT INTO apps (name, repo_url, repo_identity, created_at, updated_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                (name, f"https://git.example/{repo}.git", f"git.example/{repo}", T0, T0),
            )
        conn.execute(
            "INSERT INTO build_servers (name, docker_host, capacity, arch, labels, healthy, "
            "draining, last_heartbeat_at, created_at, engine_version) VALUES "
            "('builder-1', 'unix:///var/run/docker.sock', 2, 'amd64', '{gpu}', true, false, "
            "%(hb1)s, %(t0)s, '27.0'), "
            "('builder-2', 'ssh://ci@build2', 4, 'arm64', '{}', false, true, %(hb2)s, %(t0)s, "
            "NULL)",
            {"hb1": FROZEN_NOW - timedelta(seconds=12), "hb2": _t(-50), "t0": T0},
        )
        server = conn.execute("SELECT id FROM build_servers WHERE name = 'builder-1'").fetchone()
        assert server is not None
        server_id = server[0]
        conn.execute(  # builder-1 as two hosts see it: one of them cannot reach it
            "INSERT INTO server_health (server_id, host_id, healthy, last_ok, latency_ms, error) "
            "VALUES (%(id)s, 'host-a', true, true, 4, NULL), "
            "(%(id)s, 'host-b', false, false, 10000, 'docker engine did not answer')",
            {"id": server_id},
        )
        jobs: list[dict[str, Any]] = [
            {
                "name": "ok",
                "app": "web",
                "branch": "main",
                "sha": "a1b2c3d4e5f6",
                "status": "succeeded",
                "progress": 100,
                "step": "verify",
                "attempt": 1,
                "enq": _t(0),
                "start": _t(0.5),
                "end": _t(3.2),
                "durations": {"checkout": 4.0, "detect": 0.4, "build": 120.0, "push": 30.0},
                "image": "registry.example/shop/web:main-a1b2c3d",
            },
            {
                "name": "failed",
                "app": "api",
                "branch": "feature/login",
                "sha": "0badc0ffee00",
                "status": "failed",
                "progress": 42,
                "step": "build",
                "attempt": 3,
                "enq": _t(1),
                "start": _t(1.5),
                "end": _t(4),
                "durations": {"checkout": 3.0, "detect": 0.2},
                "error": "build failed: step 4/7 RUN npm ci exited with code 1",
            },
            {
                "name": "cancelled",
                "app": "web",
                "branch": "hotfix",
                "sha": "c0ffee123456",
                "status": "cancelled",
                "progress": 0,
                "step": None,
                "attempt": 0,
                "enq": _t(2),
                "end": _t(2.5),
                "error": "cancelled by bob while queued",
            },
            {
                "name": "running",
                "app": "web",
                "branch": "main",
                "sha": "feedfacecafe",
                "status": "running",
                "progress": 60,
                "step": "build",
                "attempt": 1,
                "enq": _t(5),
                "start": _t(6),
                "durations": {"checkout": 2.0, "detect": 0.3},
            },
            {
                "name": "queued",
                "app": "api",
                "branch": "main",
                "sha": "123456789abc",
                "status": "queued",
                "progress": 0,
                "step": None,
                "attempt": 0,
                "enq": _t(7),
            },
            {
                "name": "queued2",
                "app": "web",
                "branch": "release/2.0",
                "sha": "abcdef012345",
                "status": "queued",
                "progress": 0,
                "step": None,
                "attempt": 0,
                "enq": _t(8),
                "priority": 2,
            },
        ]
        for job in jobs:
            running = job["status"] == "running"
            row = conn.execute(
                "INSERT INTO jobs (app_id, app_name, provider, trigger, repo_url, ref, branch, "
                "commit_sha, commit_message, pusher, priority, status, progress, step, attempt, "
                "max_attempts, server_id, worker_id, lease_expires_at, run_after, enqueued_at, "
                "started_at, finished_at, updated_at, error, image_ref, step_durations) "
                "SELECT a.id, a.name, 'github', 'webhook', a.repo_url, %(ref)s, %(branch)s, "
                "%(sha)s, %(message)s, 'carol', %(priority)s, %(status)s, %(progress)s, %(step)s, "
                "%(attempt)s, 3, %(server)s, %(worker)s, %(lease)s, %(enq)s, %(enq)s, %(start)s, "
                "%(end)s, %(updated)s, %(error)s, %(image)s, %(durations)s "
                "FROM apps a WHERE a.name = %(app)s RETURNING id",
                {
                    "ref": f"refs/heads/{job['branch']}",
                    "branch": job["branch"],
                    "sha": job["sha"],
                    "message": f"{job['name']}: update dependencies",
                    "priority": job.get("priority", 1),
                    "status": job["status"],
                    "progress": job["progress"],
                    "step": job["step"],
                    "attempt": job["attempt"],
                    "server": server_id if job.get("start") else None,
                    "worker": "host-1:100:abc" if running else None,
                    "lease": FROZEN_NOW + timedelta(days=3650) if running else None,
                    "enq": job["enq"],
                    "start": job.get("start"),
                    "end": job.get("end"),
                    "updated": job.get("end") or job.get("start") or job["enq"],
                    "error": job.get("error"),
                    "image": job.get("image"),
                    "durations": Jsonb(job.get("durations", {})),
                    "app": job["app"],
                },
            ).fetchone()
            assert row is not None
            ids[job["name"]] = row[0]
            conn.execute(
                "INSERT INTO job_events (job_id, at, kind, to_status, actor, message) "
                "VALUES (%s, %s, 'enqueued', 'queued', 'github', 'webhook push')",
                (row[0], job["enq"]),
            )
            if job.get("end"):
                conn.execute(
                    "INSERT INTO job_events (job_id, at, kind, from_status, to_status, actor, "
                    "message) VALUES (%s, %s, %s, 'running', %s, 'host-1:100:abc', %s)",
                    (row[0], job["end"], job["status"], job["status"], job.get("error")),
                )
        lines = [f"#{n} building layer {n}/40" for n in range(1, 38)]
        lines += ["npm ERR! code E404", "ERROR: process exited with code 1", "build failed"]
        conn.execute(
            "INSERT INTO job_logs (job_id, seq, at, line) "
            "SELECT %s, n, %s, l FROM unnest(%s::text[]) WITH ORDINALITY AS t(l, n)",
            (ids["failed"], _t(3), lines),
        )
        conn.execute(
            "INSERT INTO webhook_deliveries (received_at, provider, event, delivery_id, repo, "
            "ref, result, status_code, job_ids, reason) VALUES "
            "(%s, 'github', 'push', 'd-1', 'git.example/shop/web', 'refs/heads/main', "
            "'accepted', 202, %s, NULL), "
            "(%s, 'github', 'push', 'd-2', 'git.example/shop/web', 'refs/heads/docs', "
            "'ignored', 202, '{}', 'branch docs does not match main of app web'), "
            "(%s, 'gitlab', 'Push Hook', 'd-3', 'git.example/shop/api', 'refs/heads/main', "
            "'refused', 401, '{}', 'bad X-Gitlab-Token')",
            (_t(0), [ids["ok"]], _t(1), _t(2)),
        )
    return ids


def screen_rows(app: DeployqApp) -> list[list[Segment]]:
    """The segments of every line of the screen as the terminal gets them (line filters
    applied, modal screens over the ones below)."""
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    assert isinstance(update, LayoutUpdate)
    return [[seg for strip in line for seg in strip] for line in update.strips]


def screen_text(app: DeployqApp) -> list[str]:
    """The text of every line of the screen."""
    return ["".join(seg.text for seg in row) for row in screen_rows(app)]


def colour_of(app: DeployqApp, word: str, system: ColorSystem, *, from_line: int = 0) -> int | None:
    """The palette number of the foreground colour of the first cell that reads ``word``
    (from screen line ``from_line`` on), as a terminal with ``system`` colours shows it."""
    for row in screen_rows(app)[from_line:]:
        for seg in row:
            if seg.text.strip() == word and seg.style is not None and seg.style.color is not None:
                return seg.style.color.downgrade(system).number
    return None
