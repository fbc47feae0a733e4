"""The deploy step's own time: pull, create, start, healthy, switch, for a busybox httpd app.

Usage: .venv/bin/python bench/deploy.py [--deploys N] [--strategy recreate|start-first]

A git repository with a Dockerfile (busybox httpd serving /www, /healthz for the health
check) is added as an app that deploys to the local engine (recreate: a published loopback
port; start-first: a network alias). Each round commits a new page, queues a deploy and
waits for the job (a WorkerPool in this process); then the app must answer with that page.
The deploy step's phases come from its log line (`... after 0.81s: pull 0.05s, create
0.10s, start 0.50s, healthy 0.01s, switch 0.15s`; recreate stops the old container before
it starts the new one, start-first after the new one is healthy) and the step's total from
the job's step durations (with the deploy lock, the release records and pruning).
Prints JSON: every deploy, medians, min and max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import tempfile
import urllib.request
import uuid
import warnings
from pathlib import Path
from typing import Any

from _database import database
from pipeline import git

from deployq.config import Settings
from deployq.db.migrate import migrate
from deployq.models import AppSpec, DeploySettings, Trigger, TriggerKind
from deployq.store import Store
from deployq.testing.jobs import wait_job
from deployq.testing.services import (
    docker_cmd,
    ensure_base_image,
    free_port,
    remove_local_images,
    start_registry,
)
from deployq.worker.deploy_engine import LABEL_APP
from deployq.worker.pool import WorkerPool

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

DOCKER_HOST = "unix:///var/run/docker.sock"
PHASES = ("pull", "create", "start", "healthy", "switch")
_TIMINGS = re.compile(r"==> \S+ runs \S+ \(.*\) after ([\d.]+)s: (.*)$")


def phases(log: str) -> dict[str, float]:
    """The phases of the deploy log line, and their sum as ``total``."""
    for line in log.splitlines():
        match = _TIMINGS.search(line)
        if match:
            found = {k: float(v.rstrip("s")) for k, v in (p.split() for p in match[2].split(", "))}
            return {**found, "total": float(match[1])}
    raise RuntimeError("no deploy timing line in the job log:\n" + log[-2000:])


def page(base_image: str, version: str) -> dict[str, str]:
    return {
        "Dockerfile": f'FROM {base_image}\nCOPY www /www\nCMD ["httpd", "-f", "-p", "8080", '
        '"-h", "/www"]\n',
        "www/index.html": version + "\n",
        "www/healthz": "ok\n",
    }


def commit(repo: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "--quiet", "-m", message)


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode()).strip()


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


async def main(deploys: int, strategy: str) -> dict[str, Any]:
    base = ensure_base_image()
    app = f"bench-deploy-{uuid.uuid4().hex[:6]}"
    port = free_port()
    network = f"{app}-net"
    with (
        tempfile.TemporaryDirectory(prefix="deployq-bench-") as tmp,
        start_registry(Path(tmp) / "registry", "bench", "bench-registry-pw") as reg,
        database("deployq_bench_deploy") as dsn,
    ):
        work = Path(tmp)
        await migrate(dsn)
        settings = Settings(
            database_url=dsn,
            data_dir=work / "data",
            registry_url=reg.url,
            registry_username=reg.username,
            registry_password=reg.password,
            registry_insecure=True,
            worker_concurrency=1,
        )
        store = await Store.open(settings, dsn, min_size=2)
        repo = work / "repo"
        repo.mkdir()
        git(repo, "init", "--quiet", "--initial-branch", "main")
        git(repo, "config", "uploadpack.allowReachableSHA1InWant", "true")
        commit(repo, page(base, "v0"), "v0")
        await store.deploy.add_target("local", DOCKER_HOST)
        if strategy == "recreate":
            run = DeploySettings(
                targets=["local"], ports=[f"127.0.0.1:{port}:8080"], health_path="/healthz"
            )
        else:
            run = DeploySettings(
                targets=["local"],
                network=network,
                network_aliases=["web"],
                health_path="/healthz",
                health_port=8080,
                strategy="start-first",
            )
        await store.apps.add(AppSpec(name=app, repo_url=repo.as_uri(), deploy=run))
        pool = WorkerPool(store, concurrency=1)
        stop = asyncio.Event()
        worker = asyncio.create_task(pool.run(stop))
        await pool.claiming.wait()
        rounds: list[dict[str, float]] = []
        try:
            for n in range(deploys + 1):  # the first deploy has nothing to replace: not counted
                version = f"v{n + 1}"
                commit(repo, page(base, version), version)
                result = await store.queue.enqueue(
                    Trigger(kind=TriggerKind.MANUAL, app=app, ref="refs/heads/main")
                )
                job = await wait_job(
                    store, result.jobs[0].id, lambda j: j.status.is_final, timeout_s=600
                )
                log = "\n".join(line.line for line in await store.logs.read(job.id))
                if job.status.value != "succeeded":
                    raise RuntimeError(f"job #{job.id} {job.status.value}: {job.error}\n{log}")
                if strategy == "recreate":
                    answer = await asyncio.to_thread(get, f"http://127.0.0.1:{port}/")
                    if answer != version:
                        raise RuntimeError(f"the app answers {answer!r}, not {version!r}")
                if n:
                    rounds.append({**phases(log), "step": job.step_durations["deploy"]})
        finally:
            stop.set()
            await worker
            await store.close()
            listed = docker_cmd(
                DOCKER_HOST, "ps", "-aq", "--filter", f"label={LABEL_APP}={app}", check=False
            ).stdout.split()
            if listed:
                docker_cmd(DOCKER_HOST, "rm", "--force", *listed, check=False)
            docker_cmd(DOCKER_HOST, "network", "rm", network, check=False)
            remove_local_images(f"{reg.url}/")
    keys = [*PHASES, "total", "step"]
    return {
        "bench": "deploy",
        "strategy": strategy,
        "deploys": deploys,
        "seconds": {k: summary([r[k] for r in rounds]) for k in keys},
        "rounds": [{k: round(r[k], 3) for k in keys} for r in rounds],
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=10)
    parser.add_argument("--strategy", choices=["recreate", "start-first"], default="recreate")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.deploys, args.strategy)), indent=2))
