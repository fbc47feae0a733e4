"""Images pushed straight through the registry's v2 API (no engine): a tiny config and one
layer, unique per call, under any tags. For the registry tag retention tests. And a test
registry's password rotated (:func:`rotate_password`)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import uuid

import aiohttp

from deployq.builders.base import RegistryAuth
from deployq.registry import basic_auth
from deployq.testing.services import LocalRegistry

MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def _session(registry: LocalRegistry) -> aiohttp.ClientSession:
    """A session that sends the registry's credentials (Basic) with every request."""
    auth = basic_auth(registry.username, registry.password)
    return aiohttp.ClientSession(headers={"Authorization": auth})


def _layer(text: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo("id")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


async def _blob(session: aiohttp.ClientSession, base: str, repository: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with session.post(f"{base}/v2/{repository}/blobs/uploads/") as started:
        assert started.status == 202, await started.text()
        location = started.headers["Location"]
    url = location if location.startswith("http") else base + location
    sep = "&" if "?" in url else "?"
    async with session.put(f"{url}{sep}digest={digest}", data=data) as done:
        assert done.status == 201, await done.text()
    return digest


async def push_image(registry: LocalRegistry, repository: str, *tags: str) -> str:
    """Push a new unique image to ``repository`` under ``tags``; its manifest digest."""
    base = f"http://{registry.url}"
    layer = _layer(str(uuid.uuid4()))
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()],
            },
        }
    ).encode()
    async with _session(registry) as session:
        config_digest = await _blob(session, base, repository, config)
        layer_digest = await _blob(session, base, repository, layer)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MANIFEST_TYPE,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": config_digest,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(layer),
                        "digest": layer_digest,
                    }
                ],
            }
        ).encode()
        return await tag_manifest(session, base, repository, manifest, tags)


async def tag_manifest(
    session: aiohttp.ClientSession,
    base: str,
    repository: str,
    manifest: bytes,
    tags: tuple[str, ...],
) -> str:
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    for tag in tags:
        async with session.put(
            f"{base}/v2/{repository}/manifests/{tag}",
            data=manifest,
            headers={"Content-Type": MANIFEST_TYPE},
        ) as put:
            assert put.status == 201, await put.text()
            assert put.headers["Docker-Content-Digest"] == digest
    return digest


async def add_tag(registry: LocalRegistry, repository: str, source: str, tag: str) -> None:
    """Give the image ``source`` (tag or digest) one more tag."""
    base = f"http://{registry.url}"
    async with _session(registry) as session:
        async with session.get(
            f"{base}/v2/{repository}/manifests/{source}", headers={"Accept": MANIFEST_TYPE}
        ) as got:
            assert got.status == 200, await got.text()
            manifest = await got.read()
        await tag_manifest(session, base, repository, manifest, (tag,))


async def pull(registry: LocalRegistry, repository: str, reference: str) -> int:
    """Pull ``reference`` as docker does (manifest, then each blob it names): 200, or the
    first failing HTTP status (404 once it is deleted)."""
    base = f"http://{registry.url}"
    async with _session(registry) as session:
        async with session.get(
            f"{base}/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_TYPE}
        ) as got:
            if got.status != 200:
                return got.status
            manifest = json.loads(await got.read())
        for blob in [manifest["config"], *manifest["layers"]]:
            async with session.get(f"{base}/v2/{repository}/blobs/{blob['digest']}") as b:
                if b.status != 200:
                    return b.status
                data = await b.read()
                assert "sha256:" + hashlib.sha256(data).hexdigest() == blob["digest"]
    return 200


def rotate_password(registry: LocalRegistry) -> RegistryAuth:
    """Give the registry's user a new password (the registry rereads its htpasswd file)."""
    password = f"rotated-{uuid.uuid4().hex[:8]}"
    entry = subprocess.run(
        ["htpasswd", "-Bbn", registry.username, password],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    registry.htpasswd.write_text(entry.strip() + "\n")
    return RegistryAuth(registry.url, registry.username, password)
