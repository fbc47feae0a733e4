"""Harbor features through its REST API, against the FAKE Harbor (tests/fixtures/harbor_fake):
a missing project is created before the push, and the scan summary lands on the job.

The image itself is pushed to the real registry (the fake cannot store images); the fake
answers for Harbor's API through DEPLOYQ_HARBOR_URL.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from deployq.models import JobStatus
from deployq.store import Store
from deployq.testing.jobs import running_pool, wait_job
from worker_support import add_app, deploy, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]


async def test_a_scanned_build_records_harbors_vulnerability_summary(
    settings_factory: Any,
    database_url: str,
    registry: Any,
    docker_host: str,
    git_repo_factory: Any,
    base_image: str,
    harbor_fake: Any,
) -> None:
    fake, harbor_url = harbor_fake
    fake.username, fake.password = registry.username, registry.password
    repo = git_repo_factory({"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex}\n"})
    plain = registry_settings(registry, docker_host)

    # a first build tells us the digest the (fully cached) rebuild will push again
    store = await Store.open(settings_factory(**plain), database_url, min_size=1)
    try:
        app = await add_app(store, repo.url)
        first_id = await deploy(store, app)
        async with running_pool(store):
            first = await wait_job(store, first_id, lambda j: j.status.is_final)
    finally:
        await store.close()
    assert first.status is JobStatus.SUCCEEDED, first.error
    assert first.image_digest is not None
    fake.add_artifact("deployq", app, first.image_digest, {"Critical": 1, "High": 2})

    scanning = {**plain, "harbor_api": True, "harbor_scan": True, "harbor_url": harbor_url}
    store = await Store.open(settings_factory(**scanning), database_url, min_size=1)
    try:
        job_id = await deploy(store, app)
        async with running_pool(store):
            job = await wait_job(store, job_id, lambda j: j.status.is_final)
    finally:
        await store.close()
    assert job.status is JobStatus.SUCCEEDED, job.error
    assert job.image_digest == first.image_digest
    assert "deployq" in fake.projects  # created before the push
    assert job.scan_summary is not None
    assert (job.scan_summary["critical"], job.scan_summary["high"]) == (1, 2)
    assert job.scan_summary["status"] == "Success"
