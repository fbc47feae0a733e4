"""Zero-config builds for real: one app per provider, planned, built with BuildKit from
base images made here (tests/fixtures/runtimes.py), run, and asked for a page on its port.

The apps (tests/fixtures/repos/built-*) take their dependencies from the repository — a
wheel, `file:` packages, a `replace`d module, a composer path repository, a `path:` gem — as
no package index can be reached from a build here. The Node.js app's `build` script is a
devDependency.
"""

from __future__ import annotations

import shutil
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from deployq.builders import BuildKitBuilder, EngineBuilder
from deployq.builders.base import BuildRequest
from deployq.builders.detect import BaseImages, detect
from deployq.config import Settings
from deployq.models import JobStatus
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from deployq.testing.runtimes import RuntimeImages
from deployq.testing.services import DOCKER, docker_cmd
from worker_support import add_app, deploy, log_text, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

REPOS = Path(__file__).parent.parent / "fixtures" / "repos"
#: provider -> what its app answers
ANSWERS = {
    "python": "hello from a local wheel (python)\n",
    "node": "hello from a local package (node, built by a devDependency)\n",
    "go": "hello from a local module (go)\n",
    "php": "hello from a local composer package (php)\n",
    "ruby": "hello from a local gem (ruby)\n",
    "static": "<!doctype html>\n<h1>hello from a static site</h1>\n",
}
#: an app starts within this (a cold JIT, a Ruby boot)
START_TIMEOUT_S = 60.0


def get(url: str, deadline: float) -> str:
    """The body of ``url``, asked until the server answers or ``deadline`` passes."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)  # the server is not listening yet: nothing to wait on but it


def ls(docker_host: str, image: str, path: str) -> list[str]:
    return docker_cmd(
        docker_host, "run", "--rm", "--entrypoint", "", image, "ls", "-a", path
    ).stdout.split()


#: every provider with BuildKit; the classic builder (Engine API) on a static site and the
#: Node.js app (multi-stage, --chown, a build stage feeding another image)
BUILDS = [("buildkit", p) for p in ANSWERS] + [("engine", "static"), ("engine", "node")]


@pytest.mark.parametrize(("backend", "provider"), BUILDS)
async def test_the_app_is_built_and_answers_on_its_port(
    backend: str,
    provider: str,
    docker_host: str,
    base_image: str,
    runtime_images: RuntimeImages,
    tmp_path: Path,
) -> None:
    root = tmp_path / "repo"
    shutil.copytree(REPOS / f"built-{provider}" / "repo", root, symlinks=True)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n")
    settings = Settings(**runtime_images.settings(base_image))
    found = detect(root, "Dockerfile", base_images=BaseImages.from_settings(settings))
    assert found is not None and found.plan.provider == provider
    tag = f"deployq-test/zero-config-{provider}-{uuid.uuid4().hex[:8]}:latest"
    container = f"deployq-test-zc-{uuid.uuid4().hex[:10]}"
    lines: list[str] = []
    try:
        builder = (
            BuildKitBuilder(docker_host, DOCKER)
            if backend == "buildkit"
            else EngineBuilder(docker_host)
        )
        await builder.build(
            BuildRequest(root, dockerfile_text=found.dockerfile_text, tags=[tag]), lines.append
        )
        docker_cmd(docker_host, "run", "-d", "--name", container, tag)
        address = docker_cmd(
            docker_host, "inspect", "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container,
        ).stdout.strip()  # fmt: skip
        body = get(f"http://{address}:{found.plan.port}/", time.monotonic() + START_TIMEOUT_S)
        user = docker_cmd(docker_host, "image", "inspect", "--format", "{{.Config.User}}", tag)
        served = "/www" if found.plan.layout.value == "static" else "/app"
        listing = ls(docker_host, tag, served)
        modules = ls(docker_host, tag, "/app/node_modules") if provider == "node" else []
    except BaseException:
        logs = docker_cmd(docker_host, "logs", container, check=False)
        print("\n".join(lines[-60:]), logs.stdout, logs.stderr, sep="\n")
        raise
    finally:
        docker_cmd(docker_host, "rm", "-f", container, check=False)
        docker_cmd(docker_host, "rmi", "-f", tag, check=False)

    assert body == ANSWERS[provider]
    assert user.stdout.strip() == "10001:10001"
    assert ".git" not in listing
    if provider == "go":
        assert listing == [".", "..", "server"]  # the binary only: no toolchain, no source
    if provider == "node":  # the build's devDependency was pruned after the build
        assert "greeting" in modules and "mkpage" not in modules
        assert "dist" in listing


def run_and_get(docker_host: str, image: str, port: int) -> str:
    """Run ``image``, GET / on ``port`` of the container, remove it; the body."""
    container = f"deployq-test-zc-{uuid.uuid4().hex[:10]}"
    try:
        docker_cmd(docker_host, "run", "-d", "--name", container, image)
        address = docker_cmd(
            docker_host, "inspect", "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container,
        ).stdout.strip()  # fmt: skip
        return get(f"http://{address}:{port}/", time.monotonic() + START_TIMEOUT_S)
    finally:
        docker_cmd(docker_host, "rm", "-f", container, check=False)


async def test_the_worker_builds_with_the_apps_overrides_and_logs_the_plan(
    settings_factory: Any,
    database_url: str,
    registry: Any,
    docker_host: str,
    base_image: str,
    runtime_images: RuntimeImages,
    git_repo_factory: Any,
) -> None:
    app_files = REPOS / "built-go" / "repo"
    files = {
        str(path.relative_to(app_files)): path.read_text()
        for path in app_files.rglob("*")
        if path.is_file()
    }
    # go 1.18 would pick golang:1.18, which does not exist here: the app's version must win
    files["go.mod"] = files["go.mod"].replace("go 1.19", "go 1.18")
    repo = git_repo_factory(files)
    values = registry_settings(registry, docker_host, **runtime_images.settings(base_image))
    store = await Store.open(settings_factory(**values), database_url, min_size=1)
    try:
        app = await add_app(
            store,
            repo.url,
            runtime_version="1.19",
            build_cmd="go build -o /app/server ./cmd/server",
            start_cmd="PORT=9090 /app/server",
        )
        job_id = await deploy(store, app)
        async with running_pool(store):
            job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=600)
        logs = await log_text(store, job_id)
    finally:
        await store.close()

    assert job.status is JobStatus.SUCCEEDED, f"{job.error}\n{logs}"
    assert "    version   1.19 (from the app (runtime version))" in logs
    assert "    because   build set by the app" in logs
    assert "    because   start set by the app" in logs
    assert "    FROM deployq-test/golang:1.19 AS build" in logs
    assert "    RUN go build -o /app/server ./cmd/server" in logs
    assert run_and_get(docker_host, job.image_ref, 9090) == ANSWERS["go"]
