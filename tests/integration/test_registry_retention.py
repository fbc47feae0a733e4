"""Registry tag retention on a real database and a real authenticated docker-registry:
`deployq prune` keeps the newest N tags per branch, what releases run (and tags deployq did
not push, and images a kept tag also names), deletes the rest by digest; --dry-run deletes
nothing; a registry without deletes gives a clear message; one app's error leaves the others
pruned."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_helpers import add_tag, pull, push_image

from deployq.models import App, AppSpec, Job, JobStatus, Trigger, TriggerKind
from deployq.registry import RegistryClient
from deployq.store import Outcome, Store
from deployq.testing.services import LocalRegistry, ServiceError, start_registry
from fixtures.cli import AsyncCli as Cli


class Builds:
    """Jobs of one app that pushed images to the registry, recorded as the worker does."""

    def __init__(self, store: Store, registry: LocalRegistry, app: App) -> None:
        self.store, self.registry, self.app = store, registry, app
        assert app.image is not None
        self.repository = app.image
        self.jobs: dict[str, Job] = {}  # sha7 -> its job
        self.digests: dict[str, str] = {}  # sha7 -> digest

    async def push(self, branch: str, *, push_image_too: bool = True) -> str:
        """A build of a new commit on ``branch``: tags <sha7> and <branch>; returns sha7."""
        sha = secrets.token_hex(20)
        sha7 = sha[:7]
        result = await self.store.queue.enqueue(
            Trigger(
                kind=TriggerKind.MANUAL,
                app=self.app.name,
                ref=f"refs/heads/{branch}",
                commit_sha=sha,
                actor="tester",
            )
        )
        [lease] = await self.store.leases.claim("w1", limit=1)
        assert lease.job.id == result.jobs[0].id
        image_ref = self.registry.ref(self.repository, sha7)
        digest = await push_image(self.registry, self.repository, sha7, branch)
        job = await self.store.leases.finish(
            lease, Outcome(JobStatus.SUCCEEDED, image_ref=image_ref, image_digest=digest)
        )
        self.jobs[sha7], self.digests[sha7] = job, digest
        return sha7

    def client(self) -> RegistryClient:
        return RegistryClient(
            self.registry.url, self.registry.username, self.registry.password, insecure=True
        )

    async def tags(self) -> set[str]:
        return set(await self.client().tags(self.repository))


async def add_app(store: Store, name: str, image: str, *, server: bool = True) -> App:
    if server:
        await store.servers.add("local", "unix:///var/run/docker.sock", capacity=4)
    return await store.apps.add(
        AppSpec(
            name=name,
            repo_url=f"https://example.invalid/team/{name}.git",
            image=image,
            supersede_policy="queue",
        )
    )


@pytest.fixture
def cli(database_url: str, tmp_path: Path, registry: LocalRegistry) -> Cli:
    return cli_pushing_to(registry, database_url, tmp_path / "cli")


def cli_pushing_to(registry: LocalRegistry, database_url: str, data_dir: Path) -> Cli:
    """``python -m deployq`` on the test's database, pushing to ``registry``."""
    return Cli(
        database_url,
        data_dir,
        DEPLOYQ_REGISTRY_URL=registry.url,
        DEPLOYQ_REGISTRY_USERNAME=registry.username,
        DEPLOYQ_REGISTRY_PASSWORD=registry.password,
        DEPLOYQ_REGISTRY_INSECURE="true",
    )


@pytest.fixture
def no_delete_registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    try:
        with start_registry(tmp_path / "registry", delete_enabled=False) as running:
            yield running
    except ServiceError as exc:
        pytest.fail(str(exc))


async def test_prune_keeps_the_newest_tags_per_branch_and_what_releases_run(
    store: Store, registry: LocalRegistry, cli: Cli
) -> None:
    repository = f"t{uuid.uuid4().hex[:8]}/web"
    web = Builds(store, registry, await add_app(store, "web", repository))
    m1, m2, m3, m4 = [await web.push("main") for _ in range(4)]
    d0, d1, d2, d3 = [await web.push("dev") for _ in range(4)]
    # main's oldest build runs in production: never deleted, though beyond N
    await store.deploy.record_release(
        web.jobs[m1],
        target="prod",
        image_ref=registry.ref(repository, m1),
        digest=web.digests[m1],
        commit_sha=web.jobs[m1].commit_sha,
        container="deployq-web-1",
    )
    # tags deployq did not push: another tool's tag on d0's image, a build cache image
    await add_tag(registry, repository, d0, "latest")
    # build cache images (docs/cache.md): the default branch's stay, an idle branch's go
    await push_image(registry, repository, "cache-main--build")
    g1 = await web.push("gone")
    await push_image(registry, repository, "cache-gone--deps")
    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET finished_at = now() - interval '60 days' WHERE id = %s",
            (web.jobs[g1].id,),
        )
    everything = {m1, m2, m3, m4, d0, d1, d2, d3, "main", "dev", "latest", "cache-main--build"}
    everything |= {g1, "gone", "cache-gone--deps"}
    doomed = {m2, d1, "cache-gone--deps"}
    assert await web.tags() == everything
    # the registry pages its tag list (Link: <...>; rel="next"): every page is read
    paged = await web.client().tags(repository, page_size=5)
    assert len(paged) == 15 and set(paged) == everything

    dry = await cli.json("prune", "--keep-tags", "2", "--dry-run")

    [planned] = dry["registry"]
    assert dry["dry_run"] is True and dry["keep_tags"] == 2
    assert planned["app"] == "web" and planned["repository"] == registry.ref(repository, "")[:-1]
    assert planned["tags"] == 15 and planned["error"] is None
    assert planned["deleted"] == sorted(doomed)
    assert planned["spared"] == {
        d0: "its image is also tagged latest, which stays",
    }
    assert await web.tags() == everything  # a dry run deletes nothing
    code, out, err = await cli("prune", "--keep-tags", "2", "--dry-run")
    assert code == 0, err
    assert f"web ({registry.url}/{repository}): would delete 3 of 15 tags" in out

    done = await cli.json("prune", "--keep-tags", "2")

    [pruned] = done["registry"]
    assert pruned["deleted"] == sorted(doomed) and pruned["error"] is None
    assert await web.tags() == everything - doomed
    for gone in (m2, d1):
        assert await pull(registry, repository, gone) == 404
        assert await pull(registry, repository, web.digests[gone]) == 404
    assert await pull(registry, repository, "cache-gone--deps") == 404
    for kept in everything - doomed:
        assert await pull(registry, repository, kept) == 200, kept
    # the release pulls by digest, as deploys do
    assert await pull(registry, repository, web.digests[m1]) == 200
    again = await cli.json("prune", "--keep-tags", "2")
    assert again["registry"][0]["deleted"] == []


async def test_an_app_that_fails_is_reported_and_the_others_are_pruned(
    store: Store, registry: LocalRegistry, cli: Cli
) -> None:
    repository = f"t{uuid.uuid4().hex[:8]}/api"
    api = Builds(store, registry, await add_app(store, "api", repository))
    old, new = await api.push("main"), await api.push("main")
    # an app whose image names another registry: its tags cannot be pruned here
    other = await store.apps.add(
        AppSpec(name="other", repo_url="https://example.invalid/o.git", image="o/web")
    )
    elsewhere = Builds(store, registry, other)
    await elsewhere.push("main")
    await store.apps.update(other.model_copy(update={"image": "registry.invalid:5000/o/web"}))
    await store.apps.add(AppSpec(name="idle", repo_url="https://example.invalid/i.git"))

    code, out, err = await cli("prune", "--keep-tags", "1")

    assert code == 1, err
    assert (
        f"api ({registry.url}/{repository}): deleted 1 of 3 tags, keeping 1 per branch: {old}"
        in out
    )
    assert "idle: registry tags left alone, no build pushed an image yet" in out
    [line] = [ln for ln in out.splitlines() if ln.startswith("other")]
    assert "ERROR" in line and "registry.invalid:5000" in line and "Traceback" not in err
    assert await api.tags() == {new, "main"}


async def test_a_registry_without_deletes_gives_a_clear_message(
    store: Store, no_delete_registry: LocalRegistry, database_url: str, tmp_path: Path
) -> None:
    repository = f"t{uuid.uuid4().hex[:8]}/web"
    web = Builds(store, no_delete_registry, await add_app(store, "web", repository))
    old, new = await web.push("main"), await web.push("main")
    cli = cli_pushing_to(no_delete_registry, database_url, tmp_path / "cli")

    dry = await cli.json("prune", "--keep-tags", "1", "--dry-run")
    result = await cli.json("prune", "--keep-tags", "1", status=1)

    assert dry["registry"][0]["deleted"] == [old]
    error = result["registry"][0]["error"]
    assert "does not allow deleting images (HTTP 405 UNSUPPORTED" in error
    assert "REGISTRY_STORAGE_DELETE_ENABLED=true" in error
    assert no_delete_registry.password not in error
    assert await web.tags() == {old, new, "main"}
    code, _, err = await cli("prune", "--keep-tags", "1")
    assert code == 1 and "Traceback" not in err


async def test_each_app_keeps_its_own_number_of_tags(
    store: Store, registry: LocalRegistry, cli: Cli
) -> None:
    few_repo, many_repo = f"t{uuid.uuid4().hex[:8]}/few", f"t{uuid.uuid4().hex[:8]}/many"
    await store.servers.add("local", "unix:///var/run/docker.sock", capacity=4)
    code, _, err = await cli(
        "app", "add", "few", "--repo", "https://example.invalid/few.git", "--image", few_repo,
        "--on-new-push", "queue", "--keep-tags", "1", "--no-check",
    )  # fmt: skip
    assert code == 0, err
    few = Builds(store, registry, await store.apps.get("few"))
    assert few.app.keep_tags == 1
    many = Builds(store, registry, await add_app(store, "many", many_repo, server=False))
    f1, f2, f3 = [await few.push("main") for _ in range(3)]
    n1, n2, n3 = [await many.push("main") for _ in range(3)]
    cli.env["DEPLOYQ_REGISTRY_KEEP_TAGS"] = "2"

    done = await cli.json("prune")

    assert [(r["app"], r["keep"], r["deleted"]) for r in done["registry"]] == [
        ("few", 1, sorted([f1, f2])),
        ("many", 2, [n1]),
    ]
    assert await few.tags() == {f3, "main"}
    assert await many.tags() == {n2, n3, "main"}
    # --keep-tags on the command line is for every app
    overridden = await cli.json("prune", "--keep-tags", "1", "--dry-run")
    assert [(r["app"], r["keep"], r["deleted"]) for r in overridden["registry"]] == [
        ("few", 1, []),
        ("many", 1, [n2]),
    ]


async def test_the_tag_of_a_queued_build_stays(
    store: Store, registry: LocalRegistry, cli: Cli
) -> None:
    repository = f"t{uuid.uuid4().hex[:8]}/web"
    web = Builds(store, registry, await add_app(store, "web", repository))
    old, older_retried, new = [await web.push("main") for _ in range(3)]
    # an operator retries a build: it is queued, and will push its commit's tag again
    retry = await store.jobs.retry(web.jobs[older_retried].id, actor="tester")
    assert retry.status is JobStatus.QUEUED

    done = await cli.json("prune", "--keep-tags", "1")

    [result] = done["registry"]
    assert result["deleted"] == [old] and result["error"] is None
    assert await web.tags() == {older_retried, new, "main"}
