"""deployq's build pipeline against plain `docker build` + `docker push`, cold and warm cache.

Usage: .venv/bin/python bench/pipeline.py [--rounds N] [--layer-mb M]

The same context (a base image, a RUN step writing M MB of random data, 50 small source
files and one file that changes) is built and pushed to the same authenticated registry:
- plain:   ``docker build --progress=plain -t REF ctx`` then ``docker push REF`` (logged in
           beforehand, which is not timed);
- deployq: enqueue a manual deploy → WorkerPool (same process, LISTEN-woken) clones, builds,
           pushes the commit tag, adds the branch tag through the registry's manifest API,
           verifies the digest → ``succeeded``; timed from enqueue to the finished NOTIFY.
           Its registry login is kept between jobs, as in a long-running worker, so the
           first job logs in (timed) and the others do not.
Cold: a new RUN step and data layer every round (only the base image is cached). Warm: one
small file changes between rounds, everything else is cached locally and in the registry.
Cross-server (unless --no-cross): after each round's warm builds on server A (the host's
dockerd), one more file change is built by deployq on server B, a second dockerd started
here (own data root, tcp:// with mutual TLS, the same base image) that has never seen the
round's data layer: it reuses A's layers through the registry, or finds them local when the
worker's cache prefetch (docs/cache.md; on: two servers) pulled them onto B after A's push.
Its time is compared with the warm builds on A. After each deployq job the bench waits for
the prefetches that job's push started to be over (the worker's own record of them, not a
sleep), as a real pipeline leaves time between pushes; ``prefetch_wait_s`` is how long that
took after the job had finished (``--no-prefetch``: DEPLOYQ_CACHE_PREFETCH=false).
Prints JSON: times per round, medians, deployq/plain ratios (of the medians, and of each
build against the plain one just before it) and the per-job overhead; the median step
durations, with deployq's ``queued`` (enqueue to claim) and ``rest`` (all else beyond the
steps: the attempt's start, its last writes, the finish and its NOTIFY); the load average
before and after (the machine may be shared: compare runs at similar load).
Targets (issue 4): warm ratio ≤ 1.10, overhead per job ≤ 0.5 s; (issue 15) cross-server
ratio (warm on B after A / warm on A) ≤ 1.25.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _database import database

from deployq.config import DEFAULT_DOCKER_HOST, Settings
from deployq.db.migrate import migrate
from deployq.models import AppSpec, Job, JobStatus, Trigger, TriggerKind
from deployq.store import CHANNEL_JOBS, Listener, Store
from deployq.testing.services import (
    LocalRegistry,
    SecondEngine,
    docker,
    docker_cmd,
    ensure_base_image,
    remove_local_images,
    start_registry,
    start_second_dockerd,
)
from deployq.worker.pool import WorkerPool

# platformdirs warns when XDG_RUNTIME_DIR is unset (ssh sessions); harmless here
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

SOURCE_FILES = 50
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "Bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(path: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=path,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


class Context:
    """A git repository holding the build context; plain builds read its working tree."""

    def __init__(self, path: Path, base_image: str, layer_mb: int) -> None:
        self.path = path
        self.base_image = base_image
        self.layer_mb = layer_mb
        path.mkdir(parents=True)
        git(path, "init", "--quiet", "--initial-branch", "main")
        git(path, "config", "uploadpack.allowReachableSHA1InWant", "true")

    def cold(self) -> None:
        """A new RUN step writing the data layer: only the base image can be reused."""
        nonce = uuid.uuid4().hex
        (self.path / "Dockerfile").write_text(
            f"FROM {self.base_image}\n"
            f"RUN echo {nonce} > /nonce && head -c {self.layer_mb}m /dev/urandom > /data.bin\n"
            "COPY src/ /src/\n"
            "COPY app.txt /app.txt\n"
            'CMD ["cat", "/app.txt"]\n'
        )
        for n in range(SOURCE_FILES):
            source = self.path / "src" / f"module{n}.py"
            source.parent.mkdir(exist_ok=True)
            source.write_text(f"# module {n}\n" + "VALUE = 1\n" * 200)
        self.warm()

    def warm(self) -> None:
        """Change one small file: only the last layer is rebuilt and pushed."""
        (self.path / "app.txt").write_text(f"release {uuid.uuid4().hex}\n")
        git(self.path, "add", "--all")
        git(self.path, "commit", "--quiet", "-m", "bench change")


def plain_round(ctx: Context, reg: LocalRegistry, config_dir: Path, tag: str) -> dict[str, float]:
    """Seconds of ``docker build`` and ``docker push`` of one round."""
    ref = f"{reg.url}/plain/app:{tag}"
    env = {"DOCKER_CONFIG": str(config_dir)}
    started = time.perf_counter()
    docker("build", "--progress=plain", "-t", ref, str(ctx.path), env=env)
    built = time.perf_counter()
    docker("push", ref, env=env)
    return {"build": built - started, "push": time.perf_counter() - built}


#: the statuses a job ends in
FINAL = frozenset(status.value for status in JobStatus if status.is_final)


class Finishes:
    """The finished NOTIFYs of the run's jobs, through one LISTEN connection opened before
    the first job: a job is timed from its enqueue to its finished NOTIFY (what a client
    waiting on the job learns first), and read back afterwards, off the clock. A listener per
    job would open a PostgreSQL connection (a backend to start) in the middle of each timed
    job, and reading the job back is the bench's cost, not the deploy's."""

    def __init__(self, dsn: str) -> None:
        self.listener = Listener(dsn, [CHANNEL_JOBS])
        self.seen: dict[int, float] = {}
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._pump())
        await self.listener.connected.wait()

    async def close(self) -> None:
        await self.listener.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _pump(self) -> None:
        async for notice in self.listener:
            if notice.payload.get("status") in FINAL:
                self.seen[int(notice.payload["id"])] = time.perf_counter()
                self.changed.set()

    async def wait(self, job_id: int) -> float:
        """When the finished NOTIFY of ``job_id`` arrived (perf_counter)."""
        async with asyncio.timeout(600):
            while job_id not in self.seen:
                self.changed.clear()
                await self.changed.wait()
        return self.seen.pop(job_id)


def job_steps(job: Job, took: float) -> dict[str, float]:
    """The job's step durations, with ``queued`` (enqueue to claim) and ``rest`` (what the
    bench waited beyond both: starting the attempt, the last progress and log writes, the
    finish and its NOTIFY)."""
    queued = ((job.started_at or job.enqueued_at) - job.enqueued_at).total_seconds()
    rest = took - queued - sum(job.step_durations.values())
    return {**job.step_durations, "queued": round(queued, 3), "rest": round(rest, 3)}


async def deployq_round(store: Store, finishes: Finishes, app: str) -> tuple[float, Job]:
    started = time.perf_counter()
    result = await store.queue.enqueue(
        Trigger(kind=TriggerKind.MANUAL, app=app, ref="refs/heads/main")
    )
    job_id = result.jobs[0].id
    took = await finishes.wait(job_id) - started
    job = await store.jobs.get(job_id)
    if job.status.value != "succeeded":
        raise RuntimeError(f"deployq job #{job.id} ended {job.status.value}: {job.error}")
    return took, job


@contextlib.contextmanager
def second_engine(work: Path, base: str, wanted: bool) -> Iterator[SecondEngine | None]:
    """Server B for the cross-server row, holding the very base image A has."""
    if not wanted:
        yield None
        return
    with start_second_dockerd(work / "engine-b") as engine:
        saved = work / "base.tar"
        docker_cmd(DEFAULT_DOCKER_HOST, "save", "--output", str(saved), base)
        docker_cmd(engine.socket, "load", "--input", str(saved))
        yield engine


async def pin(store: Store, app: str, label: str) -> None:
    """Make the app's next jobs run on the server labelled ``label``."""
    current = await store.apps.get(app)
    spec = AppSpec.model_validate(current.model_dump(include=set(AppSpec.model_fields)))
    await store.apps.update(spec.model_copy(update={"required_labels": [label]}))


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


async def prefetched(pool: WorkerPool, waits: list[float]) -> None:
    """Wait for the worker's cache prefetches (started by the last push) to be over."""
    started = time.perf_counter()
    await pool.runner.prefetch.idle()
    waits.append(round(time.perf_counter() - started, 3))


async def main(
    rounds: int, layer_mb: int, cross: bool = True, prefetch: bool = True
) -> dict[str, Any]:
    base = ensure_base_image()
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="deployq-bench-") as tmp,
        start_registry(Path(tmp) / "registry", "bench", "bench-registry-pw") as reg,
        database("deployq_bench_pipeline") as dsn,
        second_engine(Path(tmp), base, cross) as engine_b,
    ):
        work = Path(tmp)
        config_dir = work / "docker-config"
        config_dir.mkdir()
        docker(
            "login", "-u", reg.username, "--password-stdin", reg.url,
            env={"DOCKER_CONFIG": str(config_dir)}, stdin=reg.password,
        )  # fmt: skip
        await migrate(dsn)
        settings = Settings(
            database_url=dsn,
            data_dir=work / "data",
            registry_url=reg.url,
            registry_username=reg.username,
            registry_password=reg.password,
            registry_insecure=True,
            worker_concurrency=1,
            cache_prefetch=None if prefetch else False,
        )
        store = await Store.open(settings, dsn, min_size=2)
        plain_ctx = Context(work / "plain", base, layer_mb)
        dq_ctx = Context(work / "dq", base, layer_mb)
        await store.servers.add("a", settings.docker_host or DEFAULT_DOCKER_HOST, labels=["a"])
        if engine_b is not None:
            tls = engine_b.tls
            await store.servers.add(
                "b",
                engine_b.tcp,
                labels=["b"],
                tls=(str(tls.ca), str(tls.client_cert), str(tls.client_key)),
            )
        await store.apps.add(
            AppSpec(name="bench", repo_url=dq_ctx.path.as_uri(), required_labels=["a"])
        )
        finishes = Finishes(dsn)
        await finishes.start()
        pool = WorkerPool(store, concurrency=1)
        stop = asyncio.Event()
        worker = asyncio.create_task(pool.run(stop))
        await pool.claiming.wait()
        times: dict[str, dict[str, list[float]]] = {
            "plain": {"cold": [], "warm": []},
            "deployq": {"cold": [], "warm": []},
        }
        #: deployq's warm build on B right after A's, and the step durations of each
        cross_times: list[float] = []
        cross_steps: list[dict[str, float]] = []
        #: how long each job's cache prefetches ran on after the job had finished
        prefetch_waits: list[float] = []
        steps: dict[str, dict[str, list[dict[str, float]]]] = {
            "plain": {"cold": [], "warm": []},
            "deployq": {"cold": [], "warm": []},
        }

        async def one_round(cache: str, tag: str) -> None:
            plain = plain_round(plain_ctx, reg, config_dir, tag)
            times["plain"][cache].append(sum(plain.values()))
            steps["plain"][cache].append(plain)
            took, job = await deployq_round(store, finishes, "bench")
            times["deployq"][cache].append(took)
            steps["deployq"][cache].append(job_steps(job, took))
            await prefetched(pool, prefetch_waits)

        try:
            for n in range(rounds):
                plain_ctx.cold()
                dq_ctx.cold()
                await one_round("cold", f"c{n}")
                for m in range(2):
                    plain_ctx.warm()
                    dq_ctx.warm()
                    await one_round("warm", f"w{n}{m}")
                if engine_b is not None:
                    dq_ctx.warm()
                    await pin(store, "bench", "b")
                    took, job = await deployq_round(store, finishes, "bench")
                    if job.server_name != "b":
                        raise RuntimeError(f"job #{job.id} ran on {job.server_name}, not b")
                    cross_times.append(took)
                    cross_steps.append(job_steps(job, took))
                    await prefetched(pool, prefetch_waits)
                    await pin(store, "bench", "a")
        finally:
            stop.set()
            await worker
            await finishes.close()
            await store.close()
            # the run's images (~20) would stay in the host's dockerd, which slows down as
            # they pile up: plain's warm round trip grew from 0.25 to 0.31 s over 8 runs
            remove_local_images(f"{reg.url}/")
    result: dict[str, Any] = {
        "bench": "pipeline",
        "rounds": rounds,
        "layer_mb": layer_mb,
        "load_average": {
            "before": [round(x, 2) for x in load_before],
            "after": [round(x, 2) for x in os.getloadavg()],
        },
        "seconds": {
            k: {c: [round(x, 3) for x in v] for c, v in d.items()} for k, d in times.items()
        },
    }
    for cache in ("cold", "warm"):
        plain = median(times["plain"][cache])
        ours = median(times["deployq"][cache])
        result[cache] = {
            "plain_median_s": plain,
            "deployq_median_s": ours,
            "ratio": round(ours / plain, 3),
            "ratio_per_build": [
                round(d / p, 3)
                for p, d in zip(times["plain"][cache], times["deployq"][cache], strict=True)
            ],
            "overhead_per_job_s": round(ours - plain, 3),
            "median_step_s": {
                who: {
                    step: median([r[step] for r in steps[who][cache]])
                    for step in steps[who][cache][0]
                }
                for who in ("plain", "deployq")
            },
        }
    result["targets"] = {
        "warm_ratio_max": 1.10,
        "overhead_per_job_max_s": 0.5,
        "cross_server_ratio_max": 1.25,
    }
    result["prefetch"] = {
        "enabled": prefetch and cross,
        "prefetch_wait_s": prefetch_waits,
    }
    meets = result["warm"]["ratio"] <= 1.10 and result["warm"]["overhead_per_job_s"] <= 0.5
    if cross_times:
        on_a = median(times["deployq"]["warm"])
        on_b = median(cross_times)
        result["seconds"]["deployq"]["warm_on_b_after_a"] = [round(x, 3) for x in cross_times]
        result["cross_server"] = {
            "warm_on_a_median_s": on_a,
            "warm_on_b_after_a_median_s": on_b,
            "ratio": round(on_b / on_a, 3),
            # B's build against the mean of the two warm builds on A just before it
            "ratio_per_round": [
                round(b / statistics.mean(times["deployq"]["warm"][2 * n : 2 * n + 2]), 3)
                for n, b in enumerate(cross_times)
            ],
            "median_step_s": {
                step: median([r[step] for r in cross_steps]) for step in cross_steps[0]
            },
        }
        meets = meets and result["cross_server"]["ratio"] <= 1.25
    result["meets_targets"] = meets
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold rounds (each + 2 warm)")
    parser.add_argument("--layer-mb", type=int, default=16)
    parser.add_argument(
        "--no-cross", action="store_true", help="skip the cross-server row (no second dockerd)"
    )
    parser.add_argument(
        "--no-prefetch",
        action="store_true",
        help="DEPLOYQ_CACHE_PREFETCH=false: B pulls A's layers during its build",
    )
    args = parser.parse_args()
    result = asyncio.run(main(args.rounds, args.layer_mb, not args.no_cross, not args.no_prefetch))
    print(json.dumps(result, indent=2))
