"""Deploy after verify, for real: a busybox httpd app pushed, built, deployed and answering;
a failing health check rolled back; start-first without a failed request; rollback and
pruning; a worker killed mid-deploy; the webhook target. Real dockerd, registry, git."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from deployq.models import DeploySettings, Job, JobStatus
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from deployq.testing.services import docker_cmd, free_port
from deployq.worker.deploy_engine import LABEL_APP
from worker_support import add_app, deploy, log_text, registry_settings, unique

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PORT_IN_CONTAINER = 8080
#: how long a test waits for something docker does
WAIT_S = 60.0


def dockerfile(base_image: str, *, broken: bool = False, slow_start: bool = False) -> str:
    """busybox httpd serving /www, ready when /tmp/ready exists; ``broken`` drops /healthz;
    ``slow_start`` is ready 4 s after it starts."""
    run = f"httpd -f -p {PORT_IN_CONTAINER} -h /www"
    cmd = ("sleep 4; " if slow_start else "") + f"touch /tmp/ready; exec {run}"
    return (
        f"FROM {base_image}\nCOPY www /www\n"
        + ("RUN rm /www/healthz\n" if broken else "")
        + f'CMD ["sh", "-c", "{cmd}"]\n'
    )


def files(base_image: str, version: str, **kwargs: bool) -> dict[str, str]:
    return {
        "Dockerfile": dockerfile(base_image, **kwargs),
        "www/index.html": f"{version}\n",
        "www/healthz": "ok\n",
    }


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode()).strip()


def containers(docker_host: str, app: str, *, running_only: bool = False) -> list[str]:
    args = ["ps", "--filter", f"label={LABEL_APP}={app}", "--format", "{{.Names}}"]
    listed = docker_cmd(docker_host, *args, *([] if running_only else ["--all"]))
    return sorted(listed.stdout.split())


async def until(check: Any, what: str, timeout_s: float = WAIT_S) -> Any:
    """Poll ``check()`` (docker and HTTP have no event to wait on) until it is truthy."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                value = await asyncio.to_thread(check)
                if value:
                    return value
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"{what} within {timeout_s:g}s") from None


@pytest.fixture
def app_name(docker_host: str) -> Iterator[str]:
    """A unique app name; its containers are removed afterwards."""
    name = unique("dep")
    yield name
    found = containers(docker_host, name)
    if found:
        docker_cmd(docker_host, "rm", "--force", *found, check=False)


@pytest.fixture
async def store(
    settings_factory: Any, database_url: str, registry: Any, docker_host: str
) -> AsyncIterator[Store]:
    settings = settings_factory(**registry_settings(registry, docker_host))
    opened = await Store.open(settings, database_url, min_size=1)
    try:
        yield opened
    finally:
        await opened.close()


async def run_job(store: Store, job_id: int) -> tuple[Job, str]:
    job = await wait_job(store, job_id, lambda j: j.status.is_final)
    return job, await log_text(store, job_id)


async def test_a_push_is_deployed_a_bad_one_rolled_back_and_an_old_one_rolled_back_to(
    store: Store, docker_host: str, base_image: str, git_repo_factory: Any, app_name: str
) -> None:
    port = free_port()
    target = unique("local")
    await store.deploy.add_target(target, docker_host)
    repo = git_repo_factory(files(base_image, "version one"))
    first_sha = repo.head
    run = DeploySettings(
        targets=[target],
        ports=[f"127.0.0.1:{port}:{PORT_IN_CONTAINER}"],
        env={"SECRET_TOKEN": "tok-e2e-secret"},
        health_path="/healthz",
        health_timeout_s=5,
        keep_releases=1,
    )
    await add_app(store, repo.url, name=app_name, deploy=run, max_attempts=1)
    async with running_pool(store, concurrency=1):
        first, logs = await run_job(store, await deploy(store, app_name))
        assert first.status is JobStatus.SUCCEEDED, f"{first.error}\n{logs}"
        assert get(f"http://127.0.0.1:{port}/") == "version one"
        assert "deploy" in first.step_durations
        assert "tok-e2e-secret" not in logs

        second_sha = repo.commit(files(base_image, "version two"), "second")
        second, logs = await run_job(store, await deploy(store, app_name))
        assert second.status is JobStatus.SUCCEEDED, f"{second.error}\n{logs}"
        assert get(f"http://127.0.0.1:{port}/") == "version two"

        repo.commit(files(base_image, "version three", broken=True), "no health")
        bad, logs = await run_job(store, await deploy(store, app_name))
        assert bad.status is JobStatus.FAILED
        assert bad.error is not None and bad.error.startswith(f"deploy failed on {target}: ")
        assert "not healthy within 5s" in bad.error and "answered 404" in bad.error
        assert bad.error.endswith(f"; rolled back to {second_sha[:7]} ({second.image_digest})")
        assert "last lines of" in logs
        assert get(f"http://127.0.0.1:{port}/") == "version two"

        rollback = await store.deploy.enqueue_rollback(
            app_name, await store.deploy.rollback_source(app_name), actor="test"
        )
        back, logs = await run_job(store, rollback.id)
        assert back.status is JobStatus.SUCCEEDED, f"{back.error}\n{logs}"
        assert back.deploy_only and back.image_digest == first.image_digest
        assert "==> checkout" not in logs and "no build" in logs
        assert get(f"http://127.0.0.1:{port}/") == "version one"

    releases = await store.deploy.releases(app_name)
    assert [(r.job_id, r.commit_sha, r.current) for r in releases] == [
        (back.id, first_sha, True),
        (second.id, second_sha, False),
        (first.id, first_sha, False),
    ]
    # keep_releases=1: the release replaced last stays (stopped), older ones are gone
    assert containers(docker_host, app_name, running_only=True) == [
        f"deployq-{app_name}-{back.id}-1"
    ]
    assert containers(docker_host, app_name) == sorted(
        [f"deployq-{app_name}-{back.id}-1", f"deployq-{app_name}-{second.id}-1"]
    )


async def test_start_first_switches_without_a_failed_request_on_the_alias(
    store: Store, docker_host: str, base_image: str, git_repo_factory: Any, app_name: str
) -> None:
    network, alias, target = unique("dqnet"), unique("web"), unique("local")
    await store.deploy.add_target(target, docker_host)
    repo = git_repo_factory(files(base_image, "blue"))
    run = DeploySettings(
        targets=[target],
        network=network,
        network_aliases=[alias],
        health_path="/healthz",
        health_port=PORT_IN_CONTAINER,
        strategy="start-first",
    )
    await add_app(store, repo.url, name=app_name, deploy=run, max_attempts=1)
    client = unique("dqclient")
    try:
        async with running_pool(store, concurrency=1):
            blue, logs = await run_job(store, await deploy(store, app_name))
            assert blue.status is JobStatus.SUCCEEDED, f"{blue.error}\n{logs}"
            # busybox-static cannot resolve names itself (static NSS): the client looks the
            # alias up with nslookup before each request, as a resolving client would
            loop = (
                f"while :; do a=$(nslookup {alias} 2>/dev/null | "
                "awk '/^Address: /{print $2; exit}'); "
                "r=$(printf 'GET / HTTP/1.0\\r\\n\\r\\n' | "
                f"nc -w 5 $a {PORT_IN_CONTAINER} | tail -n 1); "
                'if [ -n "$r" ]; then echo "$r"; else echo FAILED; fi; sleep 0.02; done'
            )
            docker_cmd(
                docker_host, "run", "-d", "--name", client, "--network", network,
                base_image, "sh", "-c", loop,
            )  # fmt: skip

            def client_log() -> str:
                """What the client printed: one answer (or FAILED) per request."""
                return docker_cmd(docker_host, "logs", client, check=False).stdout

            await until(lambda: "blue" in client_log(), "the client never reached blue")
            repo.commit(files(base_image, "green"), "green")
            green, logs = await run_job(store, await deploy(store, app_name))
            assert green.status is JobStatus.SUCCEEDED, f"{green.error}\n{logs}"
            await until(lambda: "green" in client_log().split(), "the client never saw green")
        seen = client_log().split()
    finally:
        docker_cmd(docker_host, "rm", "--force", client, check=False)
        for name in containers(docker_host, app_name):
            docker_cmd(docker_host, "rm", "--force", name, check=False)
        docker_cmd(docker_host, "network", "rm", network, check=False)
    assert "FAILED" not in seen, seen
    switched = seen.index("green")
    assert set(seen[:switched]) == {"blue"} and seen.count("blue") >= 1
    assert "started deployq-" in logs and "beside the old release" in logs


async def test_a_worker_killed_mid_deploy_leaves_what_the_next_attempt_finishes(
    store: Store,
    docker_host: str,
    base_image: str,
    git_repo_factory: Any,
    app_name: str,
    database_url: str,
    registry: Any,
    tmp_path: Path,
) -> None:
    port = free_port()
    target = unique("local")
    await store.deploy.add_target(target, docker_host)
    repo = git_repo_factory(files(base_image, "before"))
    run = DeploySettings(
        targets=[target],
        ports=[f"127.0.0.1:{port}:{PORT_IN_CONTAINER}"],
        health_cmd="test -f /tmp/ready",
        health_timeout_s=30,
    )
    await add_app(store, repo.url, name=app_name, deploy=run, max_attempts=3)
    async with running_pool(store, concurrency=1):
        before, logs = await run_job(store, await deploy(store, app_name))
    assert before.status is JobStatus.SUCCEEDED, f"{before.error}\n{logs}"

    repo.commit(files(base_image, "after", slow_start=True), "slow start")
    job_id = await deploy(store, app_name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update(
        {
            f"DEPLOYQ_{key.upper()}": str(value)
            for key, value in registry_settings(registry, docker_host).items()
        }
    )
    env.update({"DEPLOYQ_DATABASE_URL": database_url, "DEPLOYQ_DATA_DIR": str(tmp_path)})
    worker = subprocess.Popen(  # noqa: ASYNC220 (started once, killed below)
        [sys.executable, "-m", "deployq", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        started = f"deployq-{app_name}-{job_id}-1"
        # the switch has begun: the old release is stopped, the new one is not healthy yet
        await until(
            lambda: containers(docker_host, app_name, running_only=True) == [started],
            "the first attempt never started its container",
        )
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    async with running_pool(store, concurrency=1, rescue=True):
        job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=120)
    logs = await log_text(store, job_id)
    assert job.status is JobStatus.SUCCEEDED, f"{job.error}\n{logs}"
    assert job.attempt == 2
    assert containers(docker_host, app_name, running_only=True) == [
        f"deployq-{app_name}-{job_id}-2"
    ]
    assert get(f"http://127.0.0.1:{port}/") == "after"
    assert [r.job_id for r in await store.deploy.current_releases(app_name)] == [job_id]


async def test_the_webhook_target_is_signed_and_a_refusal_fails_the_step(
    store: Store, base_image: str, git_repo_factory: Any, app_name: str
) -> None:
    secret = "hook-secret-e2e"
    received: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Deployq-Signature-256", ""), expected):
            return web.Response(status=401, text="bad signature")
        received.append(json.loads(body))
        if len(received) == 1:
            return web.Response(status=500, text="orchestrator busy\nstack trace here")
        return web.Response(status=200, text="rolled out")

    server = web.Application()
    server.router.add_post("/deploy", receive)
    runner = web.AppRunner(server)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/deploy"
    try:
        repo = git_repo_factory(files(base_image, "hooked"))
        run = DeploySettings(webhook_url=url, webhook_secret=secret, health_timeout_s=10)
        await add_app(store, repo.url, name=app_name, deploy=run, max_attempts=1)
        async with running_pool(store, concurrency=1):
            refused, logs = await run_job(store, await deploy(store, app_name))
            accepted, logs = await run_job(store, await deploy(store, app_name))
    finally:
        await runner.cleanup()
    assert refused.status is JobStatus.FAILED
    assert refused.error == (
        f"deploy failed on the deploy webhook {url}: answered 500: orchestrator busy"
    )
    assert accepted.status is JobStatus.SUCCEEDED, f"{accepted.error}\n{logs}"
    assert "the deploy webhook answered 200: rolled out" in logs
    assert received[1] == {
        "app": app_name,
        "commit": repo.head,
        "digest": accepted.image_digest,
        "image": f"{accepted.image_ref.rsplit(':', 1)[0]}@{accepted.image_digest}",
        "job": accepted.id,
    }
    releases = await store.deploy.releases(app_name)
    assert [(r.target, r.job_id, r.current) for r in releases] == [("webhook", accepted.id, True)]


async def test_a_failure_on_one_target_rolls_back_the_targets_already_switched(
    store: Store,
    docker_host: str,
    base_image: str,
    git_repo_factory: Any,
    app_name: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    good, dead = unique("good"), unique("dead")
    await store.deploy.add_target(good, docker_host)
    await store.deploy.add_target(dead, f"unix://{tmp_path}/no-docker-here.sock")
    repo = git_repo_factory(files(base_image, "old"))
    run = DeploySettings(
        targets=[good],
        ports=[f"127.0.0.1:{port}:{PORT_IN_CONTAINER}"],
        health_path="/healthz",
    )
    await add_app(store, repo.url, name=app_name, deploy=run, max_attempts=1)
    async with running_pool(store, concurrency=1):
        old, logs = await run_job(store, await deploy(store, app_name))
        assert old.status is JobStatus.SUCCEEDED, f"{old.error}\n{logs}"
        app = await store.apps.get(app_name)
        both = run.model_copy(update={"targets": [good, dead]})
        await store.apps.update(app.model_copy(update={"deploy": both}))
        repo.commit(files(base_image, "new"), "new")
        failed, logs = await run_job(store, await deploy(store, app_name))

    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.startswith(f"deploy failed on {dead}: docker engine unix://")
    assert f"{good} runs deployq-{app_name}-{failed.id}-1" in logs  # it had switched...
    assert f"{good} rolled back too" in logs  # ...and went back
    assert get(f"http://127.0.0.1:{port}/") == "old"
    assert [r.job_id for r in await store.deploy.current_releases(app_name)] == [old.id]
