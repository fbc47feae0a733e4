"""The build cache every server shares (docs/cache.md), with real engines and a real registry.

Server A is the host's dockerd, server B a second dockerd the test starts (its own data root,
reached over tcp:// with mutual TLS); both push to the authenticated test registry. Nothing
but the registry connects them, so a step B reports CACHED came from an image A pushed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from deployq.config import BuildBackend
from deployq.models import App, AppSpec, JobStatus
from deployq.registry import RegistryClient
from deployq.store import CHANNEL_JOBS, Notice, Store
from deployq.testing.jobs import running_pool, wait_job
from deployq.testing.services import (
    LocalRegistry,
    SecondEngine,
    docker_cmd,
    remove_local_images,
    start_second_dockerd,
)
from fixtures.git import git
from worker_support import add_app, deploy, log_text, registry_settings

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def engine(
    tmp_path_factory: pytest.TempPathFactory, docker_host: str, base_image: str
) -> Iterator[SecondEngine]:
    """Server B, holding the very base image A has (as both would pull it from a registry;
    an image imported on each would differ, and so would every cache key above it)."""
    with start_second_dockerd(tmp_path_factory.mktemp("engine-b")) as second:
        saved = tmp_path_factory.mktemp("base") / "base.tar"
        docker_cmd(docker_host, "save", "--output", str(saved), base_image)
        docker_cmd(second.socket, "load", "--input", str(saved))
        yield second


def multi_stage(nonce: str) -> str:
    """deps -> build -> final: the deps stage's RUN is in no layer of the final image."""
    return (
        "FROM deployq-test/base:latest AS deps\n"
        f"RUN echo deps-{nonce} > /deps && head -c 1m /dev/urandom > /deps.bin\n"
        "FROM deployq-test/base:latest AS build\n"
        "COPY --from=deps /deps /deps\n"
        "COPY app.txt /app.txt\n"
        "RUN cat /deps /app.txt > /out\n"
        "FROM deployq-test/base:latest\n"
        "COPY --from=build /out /out\n"
    )


def deps_run(nonce: str) -> str:
    """The deps stage's RUN step as BuildKit names it."""
    return f"[deps 2/2] RUN echo deps-{nonce} > /deps && head -c 1m /dev/urandom > /deps.bin"


def cached_steps(logs: str, stage: str) -> set[str]:
    """The BuildKit steps (``[deps 2/2] RUN ...``) that the build of ``stage``'s cache image
    reports CACHED (each build of a job numbers its steps from #1)."""
    build = logs.split(f"==> stage {stage}: building its cache image")[1]
    start = "#1 [internal] load build definition"
    first = build.index(start)
    build = build[: build.find(start, first + 1)]  # up to where the next build starts
    names = dict(re.findall(r"^(#\d+) (\[[^\]]+\] .*)$", build, re.MULTILINE))
    return {names[n] for n in re.findall(r"^(#\d+) CACHED$", build, re.MULTILINE) if n in names}


async def run_on(store: Store, app: str, labels: list[str], ref: str) -> tuple[Any, str]:
    """Build ``ref`` of ``app`` on the server labelled ``labels``; the job and its log."""
    current: App = await store.apps.get(app)
    spec = AppSpec.model_validate(current.model_dump(include=set(AppSpec.model_fields)))
    await store.apps.update(spec.model_copy(update={"required_labels": labels}))
    job_id = await deploy(store, app, ref=ref)
    async with running_pool(store):
        job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=300)
    logs = await log_text(store, job_id)
    assert job.status is JobStatus.SUCCEEDED, f"{job.error}\n{logs}"
    return job, logs


async def test_a_build_on_b_reuses_the_stages_a_built_and_a_new_branch_starts_from_main(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    engine: SecondEngine,
    git_repo_factory: Any,
) -> None:
    # without the prefetch (the next test): what B reuses comes through the registry
    settings = settings_factory(
        **registry_settings(registry, docker_host, build_backend=BuildBackend.BUILDKIT),
        cache_prefetch=False,
    )
    store = await Store.open(settings, database_url, min_size=1)
    nonce = uuid.uuid4().hex
    deps_step = deps_run(nonce)
    good = engine.tls
    try:
        await store.servers.add("a", docker_host, labels=["a"])
        await store.servers.add(
            "b",
            engine.tcp,
            labels=["b"],
            tls=(str(good.ca), str(good.client_cert), str(good.client_key)),
        )
        repo = git_repo_factory({"Dockerfile": multi_stage(nonce), "app.txt": "one\n"})
        app = await add_app(store, repo.url, required_labels=["a"])
        repository = f"deployq/{app}"

        first, logs_a = await run_on(store, app, ["a"], "refs/heads/main")
        assert first.server_name == "a"
        assert deps_step not in cached_steps(logs_a, "deps")  # nothing to reuse yet
        assert f"pushed cache image {registry.url}/{repository}:cache-main--deps" in logs_a
        assert f"pushed cache image {registry.url}/{repository}:cache-main--build" in logs_a

        async with RegistryClient.from_settings(settings) as client:
            deps_of_a = await client.manifest_digest(repository, "cache-main--deps")
        repo.commit({"app.txt": "two\n"})
        second, logs_b = await run_on(store, app, ["b"], "refs/heads/main")
        assert second.server_name == "b"
        # the intermediate stages came from A's cache images through the registry
        assert deps_step in cached_steps(logs_b, "deps"), logs_b
        cached = cached_steps(logs_b, "build")
        assert "[build 2/4] COPY --from=deps /deps /deps" in cached, logs_b
        assert "[build 3/4] COPY app.txt /app.txt" not in cached  # the changed file
        # named by the digest the registry served for the tag when B's job started
        pinned = f"{registry.url}/{repository}@{deps_of_a}"
        assert f"cache from {pinned}" in logs_b
        assert f"importing cache manifest from {pinned}" in logs_b

        # B holds images of its own named :main and :cache-main--* now. A builds a new deps
        # stage; B's next build reuses it, not its own older images of those names
        nonce = uuid.uuid4().hex
        deps_step = deps_run(nonce)
        repo.commit({"Dockerfile": multi_stage(nonce), "app.txt": "three\n"})
        await run_on(store, app, ["a"], "refs/heads/main")
        repo.commit({"app.txt": "four\n"})
        _, logs_b = await run_on(store, app, ["b"], "refs/heads/main")
        assert deps_step in cached_steps(logs_b, "deps"), logs_b
        assert "[build 2/4] COPY --from=deps /deps /deps" in cached_steps(logs_b, "build")

        # a new branch, on an engine that has forgotten everything: main's cache serves it
        docker_cmd(engine.socket, "builder", "prune", "--all", "--force")
        remove_local_images(f"{registry.url}/{repository}", engine.socket)
        repo_branch = "feature/login"
        git(repo.path, "checkout", "--quiet", "-b", repo_branch)
        repo.commit({"app.txt": "five\n"})
        _, logs_new = await run_on(store, app, ["b"], f"refs/heads/{repo_branch}")
        assert deps_step in cached_steps(logs_new, "deps"), logs_new
        async with RegistryClient.from_settings(settings) as client:
            for stage in ("deps", "build"):
                own = await client.manifest_digest(repository, f"cache-feature-login--{stage}")
                assert own is not None and own.startswith("sha256:")
    finally:
        await store.close()


async def test_the_engine_backend_pulls_the_cache_images_and_b_reuses_what_a_built(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    engine: SecondEngine,
    git_repo_factory: Any,
) -> None:
    """The classic builder reuses only local images: B pulls A's cache images first."""
    settings = settings_factory(
        **registry_settings(registry, docker_host, build_backend=BuildBackend.ENGINE),
        cache_prefetch=False,
    )
    store = await Store.open(settings, database_url, min_size=1)
    nonce = uuid.uuid4().hex
    good = engine.tls
    try:
        await store.servers.add("a", docker_host, labels=["a"])
        await store.servers.add(
            "b",
            engine.tcp,
            labels=["b"],
            tls=(str(good.ca), str(good.client_cert), str(good.client_key)),
        )
        repo = git_repo_factory({"Dockerfile": multi_stage(nonce), "app.txt": "one\n"})
        app = await add_app(store, repo.url, required_labels=["a"])
        cache = f"{registry.url}/deployq/{app}:cache-main--deps"

        _, logs_a = await run_on(store, app, ["a"], "refs/heads/main")
        assert f"no cache image {cache}" in logs_a  # the first build has none yet
        assert f"pushed cache image {cache}" in logs_a

        repo.commit({"app.txt": "two\n"})
        _, logs_b = await run_on(store, app, ["b"], "refs/heads/main")
    finally:
        await store.close()

    assert f"pulled cache image {cache}" in logs_b
    # the deps stage's RUN came from A's image: the classic builder says so after the step
    deps_build = logs_b.split("==> stage deps: building its cache image")[1]
    run_step = deps_build[deps_build.index(f"RUN echo deps-{nonce}") :]
    assert run_step.splitlines()[1].strip() == "---> Using cache", run_step[:400]


def pulled_layers(logs: str) -> list[str]:
    """The layers a BuildKit build fetched for a CACHED step (``#N pulling sha256:…``: without
    the prefetch, B's build shows the deps stage's 1 MB layer and the build stage's layers)."""
    return sorted(set(re.findall(r"^#\d+ pulling (sha256:[0-9a-f]+)", logs, re.MULTILINE)))


def local_digests(docker_host: str, repository: str) -> set[str]:
    """The ``repo@sha256:…`` the engine at ``docker_host`` holds for ``repository``."""
    listed = docker_cmd(
        docker_host, "image", "ls", "--digests", "--format", "{{.Repository}}@{{.Digest}}"
    )
    return {ref for ref in listed.stdout.split() if ref.startswith(f"{repository}@sha256:")}


async def test_what_a_pushes_is_prefetched_onto_b_and_b_builds_the_next_commit_from_it(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    engine: SecondEngine,
    git_repo_factory: Any,
) -> None:
    """After A's push B pulls the image and its cache images by digest (its worker prefetches
    them, DEPLOYQ_CACHE_PREFETCH unset: two servers); B's build of the next commit then
    reports the deps stage CACHED and downloads no layer."""
    settings = settings_factory(
        **registry_settings(registry, docker_host, build_backend=BuildBackend.BUILDKIT)
    )
    assert settings.cache_prefetch is None
    store = await Store.open(settings, database_url, min_size=1)
    nonce = uuid.uuid4().hex
    good = engine.tls
    try:
        await store.servers.add("a", docker_host, labels=["a"])
        await store.servers.add(
            "b",
            engine.tcp,
            labels=["b"],
            tls=(str(good.ca), str(good.client_cert), str(good.client_key)),
        )
        repo = git_repo_factory({"Dockerfile": multi_stage(nonce), "app.txt": "one\n"})
        app = await add_app(store, repo.url, required_labels=["a"])
        repository = f"{registry.url}/deployq/{app}"

        async with running_pool(store) as pool:
            first, _ = await run_in(store, app, ["a"], "refs/heads/main")
            assert first.server_name == "a"
            await pool.runner.prefetch.idle()  # the pulls the push started are over
            async with RegistryClient.from_settings(settings) as client:
                wanted = {
                    f"{repository}@{await client.manifest_digest(f'deployq/{app}', tag)}"
                    for tag in ("main", "cache-main--deps", "cache-main--build")
                }
            assert f"{repository}@{first.image_digest}" in wanted
            # B holds them, by digest, without having built anything of this app
            assert wanted <= local_digests(engine.socket, repository)

            repo.commit({"app.txt": "two\n"})
            second, logs_b = await run_in(store, app, ["b"], "refs/heads/main")
        assert second.server_name == "b"
        assert deps_run(nonce) in cached_steps(logs_b, "deps"), logs_b
        assert "[build 2/4] COPY --from=deps /deps /deps" in cached_steps(logs_b, "build")
        assert pulled_layers(logs_b) == [], logs_b
    finally:
        await store.close()


async def run_in(store: Store, app: str, labels: list[str], ref: str) -> tuple[Any, str]:
    """:func:`run_on` with the pool already running."""
    current: App = await store.apps.get(app)
    spec = AppSpec.model_validate(current.model_dump(include=set(AppSpec.model_fields)))
    await store.apps.update(spec.model_copy(update={"required_labels": labels}))
    job_id = await deploy(store, app, ref=ref)
    job = await wait_job(store, job_id, lambda j: j.status.is_final, timeout_s=300)
    logs = await log_text(store, job_id)
    assert job.status is JobStatus.SUCCEEDED, f"{job.error}\n{logs}"
    return job, logs


async def test_the_next_build_on_the_same_server_names_its_cache_by_what_this_worker_pushed(
    settings_factory: Any,
    database_url: str,
    registry: LocalRegistry,
    docker_host: str,
    git_repo_factory: Any,
) -> None:
    """No registry lookup for the cache tags this worker put there itself from this server
    (worker.cache.KnownDigests): the branch tag and the stage images are named by the digests
    it pushed, and the stages are reused; a job of the app that ends elsewhere (its finished
    NOTIFY) makes the worker ask the registry again."""
    settings = settings_factory(
        **registry_settings(registry, docker_host, build_backend=BuildBackend.BUILDKIT),
        cache_prefetch=False,
    )
    store = await Store.open(settings, database_url, min_size=1)
    nonce = uuid.uuid4().hex
    try:
        await store.servers.add("a", docker_host, labels=["a"])
        repo = git_repo_factory({"Dockerfile": multi_stage(nonce), "app.txt": "one\n"})
        app = await add_app(store, repo.url, required_labels=["a"])
        repository = f"{registry.url}/deployq/{app}"
        from_memory = "as this worker pushed them from a (no registry lookup)"

        async def build() -> tuple[Any, str]:
            job = await wait_job(
                store, await deploy(store, app), lambda j: j.status.is_final, timeout_s=300
            )
            logs = await log_text(store, job.id)
            assert job.status is JobStatus.SUCCEEDED, f"{job.error}\n{logs}"
            return job, logs

        async with running_pool(store) as pool:
            first, logs = await build()
            assert from_memory not in logs
            async with RegistryClient.from_settings(settings) as client:
                deps = await client.manifest_digest(f"deployq/{app}", "cache-main--deps")
            repo.commit({"app.txt": "two\n"})
            _, logs = await build()
            assert f"cache images {repository}:main: {from_memory}" in logs, logs
            assert f"cache from {repository}@{first.image_digest}" in logs
            assert f"cache from {repository}@{deps}" in logs  # a stage image, also known
            assert deps_run(nonce) in cached_steps(logs, "deps")

            # a job of the app that another worker ran ended: its tags may have moved
            pool._dispatch(
                Notice(
                    CHANNEL_JOBS,
                    {"id": first.id + 10_000, "app": app, "status": "succeeded",
                     "kind": "finished"},
                )
            )  # fmt: skip
            repo.commit({"app.txt": "three\n"})
            _, logs = await build()
            assert from_memory not in logs
            assert f"cache from {repository}@" in logs  # asked the registry
            # the worker's own jobs' NOTIFYs do not make it forget
            repo.commit({"app.txt": "four\n"})
            _, logs = await build()
            assert from_memory in logs
    finally:
        await store.close()
