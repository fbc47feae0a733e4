"""RegistryClient against the real registry (Basic auth) and Harbor's token flow (fake);
HarborClient against the Harbor fake only."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployq.builders import BuildKitBuilder
from deployq.builders.base import BuildRequest, RegistryAuth
from deployq.errors import RegistryError
from deployq.registry import HarborClient, HarborError, RegistryClient
from deployq.testing.services import DOCKER, LocalRegistry, docker_cmd, free_port
from fixtures.harbor_fake import FakeHarbor

DIGEST = "sha256:" + "ab" * 32


def client(registry: LocalRegistry, password: str | None = None) -> RegistryClient:
    return RegistryClient(
        registry.url, registry.username, password or registry.password, insecure=True
    )


async def test_check_login_accepts_the_right_password(registry: LocalRegistry) -> None:
    await client(registry).check_login()


async def test_wrong_password_is_a_clear_registry_error(registry: LocalRegistry) -> None:
    with pytest.raises(RegistryError) as caught:
        await client(registry, "not-the-password").check_login()

    message = caught.value.message
    assert f"registry http://{registry.url} refused user 'deployq' (HTTP 401)" in message
    assert "DEPLOYQ_REGISTRY_PASSWORD" in message
    assert "not-the-password" not in message


async def test_unreachable_registry_says_so() -> None:
    port = free_port()  # nothing listens there

    with pytest.raises(RegistryError, match=rf"registry http://127.0.0.1:{port} is unreachable"):
        await RegistryClient(f"127.0.0.1:{port}", "u", "p", insecure=True).check_login()


@dataclass(frozen=True)
class Pushed:
    """An image the builder pushed: ``repository:tag``, by ``digest``."""

    repository: str
    tag: str
    ref: str
    digest: str


@pytest.fixture
async def pushed_image(
    docker_host: str, base_image: str, registry: LocalRegistry, tmp_path: Path
) -> AsyncIterator[Pushed]:
    """A new image built and pushed by the builder; its local copy removed afterwards."""
    repository, tag = f"deployq/verify-{uuid.uuid4().hex[:8]}", "abc1234"
    ref = registry.ref(repository, tag)
    digest = await build_and_push(docker_host, base_image, registry, ref, tmp_path)
    yield Pushed(repository, tag, ref, digest)
    docker_cmd(docker_host, "rmi", "--force", ref, check=False)


async def test_manifest_digest_is_the_pushed_digest(
    registry: LocalRegistry, pushed_image: Pushed
) -> None:
    repository, tag, pushed = pushed_image.repository, pushed_image.tag, pushed_image.digest
    ref = client(registry).image_ref(repository, tag)

    assert ref == f"{registry.url}/{repository}:{tag}"
    assert await client(registry).manifest_digest(repository, tag) == pushed
    assert await client(registry).manifest_digest(repository, pushed) == pushed
    assert await client(registry).manifest_digest(repository, "no-such-tag") is None


def pull_digest(docker_host: str, registry: LocalRegistry, ref: str) -> str:
    """``docker pull ref`` on a clean client; the digest it reports."""
    with tempfile.TemporaryDirectory() as config:
        env = {**os.environ, "DOCKER_HOST": docker_host, "DOCKER_CONFIG": config}
        subprocess.run(
            [DOCKER, "login", "-u", registry.username, "--password-stdin", registry.url],
            input=registry.password, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        pulled = subprocess.run(
            [DOCKER, "pull", ref], env=env, capture_output=True, text=True, check=True
        )
    match = re.search(r"Digest: (sha256:[0-9a-f]{64})", pulled.stdout)
    assert match, pulled.stdout
    return match.group(1)


async def build_and_push(
    docker_host: str, base_image: str, registry: LocalRegistry, ref: str, context: Path
) -> str:
    """Build a new image as ``ref`` and push it with the builder; the pushed digest."""
    (context / "Dockerfile").write_text(f"FROM {base_image}\nRUN echo {uuid.uuid4()} > /id\n")
    builder = BuildKitBuilder(docker_host, DOCKER)
    await builder.build(BuildRequest(context, tags=[ref]), lambda line: None)
    auth = RegistryAuth(registry.url, registry.username, registry.password)
    try:
        return await builder.push(ref, auth, lambda line: None)
    finally:
        builder.close()


async def test_a_tag_added_through_the_manifest_api_pulls_the_same_image(
    docker_host: str, registry: LocalRegistry, pushed_image: Pushed
) -> None:
    repository, ref, pushed = pushed_image.repository, pushed_image.ref, pushed_image.digest
    branch_ref = registry.ref(repository, "feature-x")

    async with client(registry) as registry_client:
        tagged = await registry_client.tag(repository, pushed, "feature-x")
        served = await registry_client.manifest_digest(repository, "feature-x")

    assert tagged == served == pushed
    docker_cmd(docker_host, "rmi", ref)  # the pull below must come from the registry
    try:
        assert pull_digest(docker_host, registry, branch_ref) == pushed
    finally:
        docker_cmd(docker_host, "rmi", branch_ref, check=False)


async def test_one_read_of_the_pushed_tag_verifies_it_and_tags_it(
    registry: LocalRegistry, pushed_image: Pushed
) -> None:
    """The worker's verify + tag: GET the first tag once (its bytes' digest is what the
    registry serves), PUT those bytes under the branch tag; no other read."""
    repository, tag, pushed = pushed_image.repository, pushed_image.tag, pushed_image.digest

    async with client(registry) as registry_client:
        served = await registry_client.manifest(repository, tag, push=True)
        assert served is not None
        stored = await registry_client.put_manifest(repository, "feature-y", served)
        missing = await registry_client.manifest(repository, "no-such-tag")

    assert served.digest == stored == pushed
    assert served.media_type.startswith("application/vnd.")
    assert missing is None
    assert await client(registry).manifest_digest(repository, "feature-y") == pushed


async def test_tagging_a_manifest_that_is_not_there_says_so(registry: LocalRegistry) -> None:
    repository = f"deployq/none-{uuid.uuid4().hex[:8]}"

    with pytest.raises(RegistryError, match=f"has no manifest {repository}@{DIGEST}"):
        await client(registry).tag(repository, DIGEST, "main")


async def test_tagging_with_a_wrong_password_is_refused_clearly(
    registry: LocalRegistry,
) -> None:
    with pytest.raises(RegistryError, match=r"refused user 'deployq' \(HTTP 401\)") as caught:
        await client(registry, "not-the-password").tag("deployq/x", DIGEST, "main")
    assert "not-the-password" not in caught.value.message


async def test_token_auth_flow_of_harbor(harbor_fake: tuple[FakeHarbor, str]) -> None:
    fake, url = harbor_fake
    fake.add_artifact("deployq", "app", DIGEST, {}, tags=("abc1234",))
    registry = RegistryClient(url, fake.username, fake.password)

    await registry.check_login()
    assert await registry.manifest_digest("deployq/app", "abc1234") == DIGEST
    assert await registry.manifest_digest("deployq/app", "nope") is None
    assert any(path.startswith("/service/token") for _, path in fake.requests)

    with pytest.raises(RegistryError, match="refused user"):
        await RegistryClient(url, fake.username, "wrong").check_login()


async def test_harbor_project_is_created_once(harbor_fake: tuple[FakeHarbor, str]) -> None:
    fake, url = harbor_fake
    harbor = HarborClient(url, fake.username, fake.password)

    assert await harbor.ensure_project("team-a") is True
    assert await harbor.ensure_project("team-a") is False
    assert list(fake.projects) == ["team-a"]


async def test_harbor_scan_summary_counts_by_severity(
    harbor_fake: tuple[FakeHarbor, str],
) -> None:
    fake, url = harbor_fake
    fake.add_artifact("deployq", "team/app", DIGEST, {"Critical": 1, "High": 2, "Low": 4})
    harbor = HarborClient(url, fake.username, fake.password)

    await harbor.scan("deployq", "team/app", DIGEST)
    first = await harbor.scan_overview("deployq", "team/app", DIGEST)
    summary = await harbor.wait_for_scan(
        "deployq", "team/app", DIGEST, timeout_s=10, poll_interval_s=0.01
    )

    assert first == {"state": "running", "status": "Running"}
    assert summary["state"] == "done"
    assert summary["status"] == "Success"
    assert (summary["critical"], summary["high"], summary["medium"], summary["low"]) == (1, 2, 0, 4)
    assert summary["total"] == 7
    # Harbor needs the slash of a repository name encoded twice
    assert any(re.search(r"/repositories/team%252Fapp/artifacts/", p) for _, p in fake.requests)


async def test_harbor_errors_are_clear(harbor_fake: tuple[FakeHarbor, str]) -> None:
    fake, url = harbor_fake
    fake.add_artifact("deployq", "app", DIGEST, {})
    harbor = HarborClient(url, fake.username, fake.password)

    with pytest.raises(RegistryError, match=r"HTTP 401: .* check the permissions of .robot"):
        await HarborClient(url, fake.username, "wrong").ensure_project("x")
    with pytest.raises(HarborError, match="HTTP 404: artifact not found") as missing:
        await harbor.scan("deployq", "app", "sha256:" + "00" * 32)
    assert missing.value.status == 404
    await harbor.scan("deployq", "app", DIGEST)
    # the time is up: the last look, still running
    running = await harbor.wait_for_scan("deployq", "app", DIGEST, timeout_s=0)
    assert running["state"] == "running"


async def test_harbor_without_a_scanner_says_so(harbor_fake: tuple[FakeHarbor, str]) -> None:
    fake, url = harbor_fake
    fake.scanner = False
    fake.add_artifact("deployq", "app", DIGEST, {})
    harbor = HarborClient(url, fake.username, fake.password)

    with pytest.raises(HarborError, match="cannot scan images of project deployq") as caught:
        await harbor.scan("deployq", "app", DIGEST)
    assert caught.value.status == 412
    assert "no available scanner for project" in caught.value.message
