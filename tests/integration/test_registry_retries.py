"""A registry that fails a request for a moment (an HTTP 500 under load, a 503 or a 429
with Retry-After, a dropped connection) costs a retry of that request, not the job.

The registry is the real one; between it and the client sits a small proxy that answers
the first requests as a failing registry would (``Faults``), then passes them on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from registry_helpers import push_image

from deployq.errors import RegistryError
from deployq.registry import RETRY_PAUSES_S, RegistryClient
from deployq.testing.services import LocalRegistry

#: response headers the proxy does not copy (aiohttp sets its own)
_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding"}


@dataclass
class Faults:
    """What the proxy answers to the next requests, in order: an HTTP status (with
    ``Retry-After`` when given as ``(status, seconds)``) or ``"drop"`` (the connection is
    closed without an answer); once they are used up, requests reach the registry."""

    script: list[int | tuple[int, int] | str] = field(default_factory=list)
    seen: list[tuple[str, str, float]] = field(default_factory=list)


@pytest.fixture
async def proxy(registry: LocalRegistry) -> AsyncIterator[tuple[Faults, str]]:
    faults = Faults()
    upstream = f"http://{registry.url}"
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        faults.seen.append((request.method, request.path, time.monotonic()))
        if faults.script:
            fault = faults.script.pop(0)
            if fault == "drop":
                assert request.transport is not None
                request.transport.close()
                return web.Response()
            status, wait = fault if isinstance(fault, tuple) else (fault, None)
            assert isinstance(status, int)
            headers = {"Retry-After": str(wait)} if wait is not None else {}
            return web.Response(status=status, headers=headers, text="failing for a moment")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with session.request(
            request.method, upstream + request.path_qs, headers=headers, data=await request.read()
        ) as answer:
            body = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            return web.Response(status=answer.status, headers=out, body=body)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield faults, f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await session.close()


def client(registry: LocalRegistry, url: str) -> RegistryClient:
    return RegistryClient(url, registry.username, registry.password, insecure=True)


async def image(registry: LocalRegistry) -> tuple[str, str]:
    repository = f"deployq/retry-{uuid.uuid4().hex[:8]}"
    return repository, await push_image(registry, repository, "main")


@pytest.mark.parametrize("fault", [500, 502, 503, 504, "drop"])
async def test_a_read_the_registry_fails_once_is_sent_again(
    registry: LocalRegistry, proxy: tuple[Faults, str], fault: int | str
) -> None:
    faults, url = proxy
    repository, digest = await image(registry)
    faults.script = [fault]

    served = await client(registry, url).manifest_digest(repository, "main")

    assert served == digest
    assert [(m, p) for m, p, _ in faults.seen] == [("HEAD", f"/v2/{repository}/manifests/main")] * 2


async def test_a_tag_the_registry_fails_twice_is_added_on_the_third_try(
    registry: LocalRegistry, proxy: tuple[Faults, str]
) -> None:
    faults, url = proxy
    repository, digest = await image(registry)
    faults.script = [503, 500]  # the GET of the manifest, then its first GET again

    async with client(registry, url) as registry_client:
        tagged = await registry_client.tag(repository, digest, "feature-x")

    assert tagged == digest
    assert await client(registry, registry.url).manifest_digest(repository, "feature-x") == digest
    methods = [m for m, _, _ in faults.seen]
    assert methods == ["GET", "GET", "GET", "PUT"]


async def test_retry_after_is_honoured(registry: LocalRegistry, proxy: tuple[Faults, str]) -> None:
    faults, url = proxy
    repository, digest = await image(registry)
    faults.script = [(429, 1)]

    assert await client(registry, url).manifest_digest(repository, "main") == digest

    (_, _, first), (_, _, second) = faults.seen
    assert second - first >= 1.0 > RETRY_PAUSES_S[0]


async def test_a_registry_that_keeps_failing_is_a_clear_error_after_three_tries(
    registry: LocalRegistry, proxy: tuple[Faults, str]
) -> None:
    faults, url = proxy
    repository, _ = await image(registry)
    faults.script = [500, 500, 500, 500]

    with pytest.raises(RegistryError, match=r"answered HTTP 500 to HEAD /v2/.*/manifests/main"):
        await client(registry, url).manifest_digest(repository, "main")

    assert len(faults.seen) == 1 + len(RETRY_PAUSES_S)
    assert faults.script == [500]  # the fourth was never asked for


async def test_a_refusal_is_not_retried(registry: LocalRegistry, proxy: tuple[Faults, str]) -> None:
    faults, url = proxy
    repository, _ = await image(registry)
    faults.script = [404, 400, 403]

    assert await client(registry, url).manifest_digest(repository, "main") is None

    assert len(faults.seen) == 1
