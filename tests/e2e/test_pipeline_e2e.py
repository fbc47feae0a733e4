"""A push becomes an image in the registry: git → worker → BuildKit → registry → docker run."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from deployq.models import JobStatus
from deployq.registry import RegistryClient
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from worker_support import add_app, deploy, log_text, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DOCKER = "/usr/bin/docker"


def docker(config_dir: Path, *args: str, stdin: str | None = None) -> str:
    env = {**os.environ, "DOCKER_CONFIG": str(config_dir)}
    env.pop("DOCKER_HOST", None)
    result = subprocess.run(
        [DOCKER, *args], env=env, input=stdin, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_a_deploy_is_built_pushed_and_runs_from_the_registry_by_digest(
    settings_factory: Any,
    database_url: str,
    docker_host: str,
    base_image: str,
    registry: Any,
    git_repo_factory: Any,
    tmp_path: Path,
) -> None:
    message = f"hello from the repository {uuid.uuid4().hex}"
    repo = git_repo_factory(
        {
            "Dockerfile": f'FROM {base_image}\nCOPY message.txt /message.txt\nCMD ["cat", '
            '"/message.txt"]\n',
            "message.txt": message + "\n",
        },
        message="add the message",
    )
    settings = settings_factory(**registry_settings(registry, docker_host))
    store = await Store.open(settings, database_url, min_size=1)
    try:
        app = await add_app(store, repo.url)
        job_id = await deploy(store, app)
        async with running_pool(store, concurrency=2):
            job = await wait_job(store, job_id, lambda j: j.status.is_final)
        logs = await log_text(store, job_id)
    finally:
        await store.close()

    assert job.status is JobStatus.SUCCEEDED, f"{job.error}\n{logs}"
    assert job.commit_sha == repo.head
    assert job.commit_message == "add the message"
    assert job.commit_author == "Ada Lovelace <ada@example.com>"
    assert job.image_ref == f"{registry.url}/deployq/{app}:{repo.head[:7]}"
    assert job.image_digest is not None and job.image_digest.startswith("sha256:")
    assert job.progress == 100
    assert set(job.step_durations) == {"checkout", "detect", "build", "push", "verify"}
    assert all(seconds >= 0 for seconds in job.step_durations.values())
    assert logs.startswith(f"==> deployq job #{job_id} attempt 1/")
    assert "==> verified: the registry serves " + job.image_digest in logs
    assert registry.password not in logs
    # both tags name the pushed manifest (the branch tag is added through the manifest API)
    async with RegistryClient(
        registry.url, registry.username, registry.password, insecure=True
    ) as client:
        for tag in (repo.head[:7], "main"):
            assert await client.manifest_digest(f"deployq/{app}", tag) == job.image_digest

    # pull it back by digest on a clean client and run it
    config = tmp_path / "docker-config"
    config.mkdir()
    docker(
        config,
        "login",
        "-u",
        registry.username,
        "--password-stdin",
        registry.url,
        stdin=registry.password,
    )
    by_digest = f"{registry.url}/deployq/{app}@{job.image_digest}"
    for tag in (repo.head[:7], "main"):
        docker(config, "rmi", f"{registry.url}/deployq/{app}:{tag}")
    docker(config, "pull", by_digest)
    try:
        assert docker(config, "run", "--rm", by_digest).strip() == message
    finally:
        docker(config, "rmi", by_digest)
