"""Registry tag retention against Harbor's registry front (the FAKE Harbor: token flow with
a delete scope, paged tag list, DELETE by digest) on a real database."""

from __future__ import annotations

import secrets
from typing import Any

from deployq.models import AppSpec, JobStatus, Trigger, TriggerKind
from deployq.store import Outcome, Store
from deployq.worker.tag_retention import prune_tags
from fixtures.harbor_fake import FakeHarbor

NONE: dict[str, int] = {}


async def harbor_store(store_factory: Any, url: str, fake: FakeHarbor) -> Store:
    return await store_factory(  # type: ignore[no-any-return]
        registry_url=url,
        registry_username=fake.username,
        registry_password=fake.password,
        registry_insecure=True,
    )


async def pushed(
    store: Store, fake: FakeHarbor, host: str, app: str, n: int, *, add_server: bool = True
) -> list[str]:
    """``n`` builds of ``app`` on main, oldest first, as pushed to Harbor: their sha7 tags."""
    if add_server:
        await store.servers.add("local", "unix:///var/run/docker.sock", capacity=4)
    tags = []
    for i in range(n):
        sha = secrets.token_hex(20)
        await store.queue.enqueue(
            Trigger(kind=TriggerKind.MANUAL, app=app, ref="refs/heads/main", commit_sha=sha)
        )
        [lease] = await store.leases.claim("w1", limit=1)
        digest = "sha256:" + secrets.token_hex(32)
        newest = i == n - 1
        fake.add_artifact(
            "deployq", app, digest, NONE, tags=(sha[:7], "main") if newest else (sha[:7],)
        )
        image_ref = f"{host}/deployq/{app}:{sha[:7]}"
        await store.leases.finish(
            lease, Outcome(JobStatus.SUCCEEDED, image_ref=image_ref, image_digest=digest)
        )
        tags.append(sha[:7])
    return tags


def tags_of(fake: FakeHarbor, app: str) -> set[str]:
    return {t for (_, r, _), a in fake.artifacts.items() if r == app for t in a["tags"]}


async def test_harbor_deletes_old_images_by_digest_with_a_delete_token(
    store_factory: Any, harbor_fake: tuple[FakeHarbor, str]
) -> None:
    fake, url = harbor_fake
    store = await harbor_store(store_factory, url, fake)
    await store.apps.add(AppSpec(name="web", repo_url="https://example.invalid/web.git"))
    host = url.removeprefix("http://")
    old, middle, new = await pushed(store, fake, host, "web", 3)

    async def settings() -> Any:
        return store.settings

    dry = await prune_tags(store, await store.apps.all(), settings, keep=2, dry_run=True)
    assert dry[0].deleted == [old] and tags_of(fake, "web") == {old, middle, new, "main"}

    [result] = await prune_tags(store, await store.apps.all(), settings, keep=2, dry_run=False)

    assert result.error is None and result.deleted == [old]
    assert tags_of(fake, "web") == {middle, new, "main"}
    # one image deleted (asked twice: the first answer is the Bearer challenge)
    deletes = {path for method, path in fake.requests if method == "DELETE"}
    assert len(deletes) == 1 and deletes.pop().startswith("/v2/deployq/web/manifests/sha256:")
    assert "repository:deployq/web:delete" in fake.tokens.values()


async def test_a_robot_without_delete_rights_is_told_so(
    store_factory: Any, harbor_fake: tuple[FakeHarbor, str]
) -> None:
    fake, url = harbor_fake
    fake.projects["deployq"] = 1
    fake.robots["robot$deployq+web"] = {
        "secret": "robot-secret",
        "project": "deployq",
        "access": [
            {"resource": "repository", "action": "push"},
            {"resource": "repository", "action": "pull"},
        ],
        "body": {},
    }
    store = await harbor_store(store_factory, url, fake)
    await store.apps.add(
        AppSpec(
            name="web",
            repo_url="https://example.invalid/web.git",
            registry_username="robot$deployq+web",
            registry_password="robot-secret",
        )
    )
    await store.apps.add(AppSpec(name="api", repo_url="https://example.invalid/api.git"))
    host = url.removeprefix("http://")
    web_old, web_new = await pushed(store, fake, host, "web", 2)
    api_old, _ = await pushed(store, fake, host, "api", 2, add_server=False)

    async def settings() -> Any:
        return store.settings

    api, web = await prune_tags(store, await store.apps.all(), settings, keep=1, dry_run=False)

    assert web.app == "web" and web.deleted == []
    assert web.error is not None and "denied DELETE /v2/deployq/web/manifests/sha256:" in web.error
    assert "user 'robot$deployq+web' (HTTP 401)" in web.error and "delete rights" in web.error
    assert "robot-secret" not in web.error
    assert tags_of(fake, "web") == {web_old, web_new, "main"}
    # the other app, pushed with deployq's own login, is pruned all the same
    assert api.error is None and api.deleted == [api_old]
