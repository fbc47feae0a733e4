"""Both build backends against the real dockerd and an authenticated registry."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from registry_helpers import rotate_password

from deployq.builders import BuildKitBuilder, EngineBuilder, attempt_marker, make_builder
from deployq.builders.base import Builder, BuildRequest, LogSink, RegistryAuth
from deployq.config import BuildBackend
from deployq.errors import BuildError, ConfigError, EngineUnavailable, RegistryError
from deployq.redact import MASK
from deployq.registry import RegistryClient
from deployq.testing.services import DOCKER, LocalRegistry, docker_cmd, start_registry

pytestmark = [pytest.mark.docker]

BACKENDS = ["buildkit", "engine"]
CANCEL_LIMIT_S = 5.0


def make(backend: str, docker_host: str, probe_image: str | None = None) -> Builder:
    if backend == "buildkit":
        return BuildKitBuilder(docker_host, DOCKER, disk_probe_image=probe_image)
    return EngineBuilder(docker_host)


@pytest.fixture
def image_name(docker_host: str) -> Iterator[str]:
    """A unique repository name; its local images are removed afterwards."""
    name = f"deployq-test/app-{uuid.uuid4().hex[:10]}"
    yield name
    # untag by reference, never by id: an image may share its id with the base image
    listed = docker_cmd(docker_host, "images", "--format", "{{.Repository}}:{{.Tag}}")
    refs = [ref for ref in listed.stdout.split() if ref.split(":")[-2].endswith(name)]
    if refs:
        docker_cmd(docker_host, "rmi", *refs, check=False)


def write(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


def auth_for(registry: LocalRegistry, password: str | None = None) -> RegistryAuth:
    return RegistryAuth(registry.url, registry.username, password or registry.password)


async def pull_and_run(docker_host: str, registry: LocalRegistry, ref: str) -> str:
    """docker pull (logged in through a throw-away DOCKER_CONFIG) + docker run --rm."""
    with tempfile.TemporaryDirectory() as config:
        env = {**os.environ, "DOCKER_HOST": docker_host, "DOCKER_CONFIG": config}
        login = await asyncio.create_subprocess_exec(
            DOCKER, "login", "-u", registry.username, "--password-stdin", registry.url,
            env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        await login.communicate(registry.password.encode())
        assert login.returncode == 0
        run = await asyncio.create_subprocess_exec(
            DOCKER, "run", "--rm", ref, env=env, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await run.communicate()
        assert run.returncode == 0
        return out.decode().strip()


def processes_with(marker: str) -> list[int]:
    """Pids of processes on this host whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def wait_until_gone(marker: str, timeout_s: float) -> list[int]:
    """The daemon reaps a cancelled build's container on its own: watch /proc for it."""
    deadline = time.monotonic() + timeout_s
    while (pids := processes_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return pids


@pytest.mark.parametrize("backend", BACKENDS)
async def test_pushed_image_pulled_by_digest_runs_what_the_repository_put_in(
    backend: str,
    docker_host: str,
    base_image: str,
    registry: LocalRegistry,
    image_name: str,
    tmp_path: Path,
) -> None:
    marker = f"hello from {backend} {uuid.uuid4().hex[:6]}"
    workspace = write(
        tmp_path,
        {
            "Dockerfile": f"FROM {base_image}\nARG GREETING\nCOPY message.txt /message.txt\n"
            'RUN echo "$GREETING" > /greeting.txt\nCMD ["cat", "/message.txt"]\n',
            "message.txt": marker + "\n",
        },
    )
    ref = registry.ref(image_name, "abc1234")
    lines: list[str] = []
    builder = make(backend, docker_host)
    image_id = await builder.build(
        BuildRequest(
            workspace,
            tags=[ref, registry.ref(image_name, "main")],
            build_args={"GREETING": "hi"},
            labels={"org.deployq.app": "demo"},
        ),
        lines.append,
    )
    assert image_id.startswith("sha256:")
    assert lines and all(line.strip() for line in lines)

    reported: list[str] = []
    served: list[asyncio.Task[str | None]] = []
    client = RegistryClient(f"http://{registry.url}", registry.username, registry.password)

    def stored(reported_digest: str) -> None:  # the registry serves it from this moment
        reported.append(reported_digest)
        served.append(asyncio.create_task(client.manifest_digest(image_name, "abc1234")))

    digest = await builder.push(ref, auth_for(registry), lines.append, on_digest=stored)

    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    if backend == "buildkit":  # the Engine backend reports it when the call returns
        assert reported == [digest]
        assert await served[0] == digest
    assert registry.password not in "\n".join(lines)
    docker_cmd(docker_host, "rmi", ref, registry.ref(image_name, "main"))
    by_digest = f"{registry.url}/{image_name}@{digest}"
    assert await pull_and_run(docker_host, registry, by_digest) == marker
    label = docker_cmd(
        docker_host, "image", "inspect", "--format", '{{index .Config.Labels "org.deployq.app"}}',
        by_digest,
    )  # fmt: skip
    assert label.stdout.strip() == "demo"
    docker_cmd(docker_host, "rmi", by_digest)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_rebuild_with_one_changed_file_reuses_the_unchanged_layers(
    backend: str, docker_host: str, base_image: str, image_name: str, tmp_path: Path
) -> None:
    unique = uuid.uuid4().hex
    workspace = write(
        tmp_path,
        {
            "Dockerfile": f"FROM {base_image}\nCOPY stable.txt /stable.txt\n"
            f"RUN cat /stable.txt > /copy-{unique}\nCOPY changing.txt /changing.txt\n",
            "stable.txt": unique,
            "changing.txt": "one",
        },
    )
    builder = make(backend, docker_host)
    req = BuildRequest(workspace, tags=[f"{image_name}:one"])
    first: list[str] = []
    await builder.build(req, first.append)
    write(workspace, {"changing.txt": "two"})
    second: list[str] = []

    await builder.build(req, second.append)

    if backend == "buildkit":
        run_step = next(line for line in second if f"RUN cat /stable.txt > /copy-{unique}" in line)
        step = run_step.split()[0]  # "#7"
        assert f"{step} CACHED" in second
        copy_step = next(line for line in second if "COPY changing.txt" in line).split()[0]
        assert f"{copy_step} CACHED" not in second
    else:
        assert sum("Using cache" in line for line in second) >= 2
        assert not any("Using cache" in line for line in first[-4:])


async def test_cache_from_the_registry_is_imported_for_another_tag(
    docker_host: str, base_image: str, registry: LocalRegistry, image_name: str, tmp_path: Path
) -> None:
    workspace = write(
        tmp_path,
        {"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex} > /id\n"},
    )
    builder = BuildKitBuilder(docker_host, DOCKER)
    cache_ref = registry.ref(image_name, "main")
    await builder.build(BuildRequest(workspace, tags=[cache_ref]), lambda line: None)
    await builder.push(cache_ref, auth_for(registry), lambda line: None)
    lines: list[str] = []

    await builder.build(
        BuildRequest(workspace, tags=[registry.ref(image_name, "feature")], cache_from=[cache_ref]),
        lines.append,
        auth=auth_for(registry),
    )

    assert any(f"importing cache manifest from {cache_ref}" in line for line in lines), lines
    assert not any("error" in line.lower() for line in lines), lines


@pytest.mark.parametrize("backend", BACKENDS)
async def test_cancel_stops_only_that_build_within_five_seconds(
    backend: str, docker_host: str, base_image: str, image_name: str, tmp_path: Path
) -> None:
    slow_marker, other_marker = f"slow-{uuid.uuid4().hex}", f"other-{uuid.uuid4().hex}"
    slow = write(
        tmp_path / "slow",
        # the trailing echo keeps sh (whose command line names the marker) alive during sleep
        {"Dockerfile": f"FROM {base_image}\nRUN echo {slow_marker} && sleep 30 && echo done\n"},
    )
    other = write(
        tmp_path / "other",
        {"Dockerfile": f"FROM {base_image}\nRUN echo {other_marker} && sleep 3 && echo ok\n"},
    )
    builder = make(backend, docker_host)
    slow_started, other_started = asyncio.Event(), asyncio.Event()

    def watch(marker: str, event: asyncio.Event) -> LogSink:
        # the echo's output, not the RUN line that names it
        return lambda line: event.set() if marker in line and "RUN" not in line else None

    slow_req = BuildRequest(slow, tags=[f"{image_name}:slow"])
    other_req = BuildRequest(other, tags=[f"{image_name}:other"])
    slow_task = asyncio.create_task(builder.build(slow_req, watch(slow_marker, slow_started)))
    other_task = asyncio.create_task(builder.build(other_req, watch(other_marker, other_started)))
    await asyncio.wait_for(asyncio.gather(slow_started.wait(), other_started.wait()), 60)
    assert processes_with(slow_marker)

    started = time.monotonic()
    slow_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow_task
    assert time.monotonic() - started < CANCEL_LIMIT_S
    remaining_s = started + CANCEL_LIMIT_S - time.monotonic()
    assert await asyncio.to_thread(wait_until_gone, slow_marker, remaining_s) == []

    image_id = await asyncio.wait_for(other_task, 60)
    assert image_id.startswith("sha256:")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_engine_reports_and_stops_the_steps_of_one_attempt_only(
    backend: str, docker_host: str, base_image: str, image_name: str, tmp_path: Path
) -> None:
    job = 10**9 + uuid.uuid4().int % 10**9  # no other test's job
    markers = {n: attempt_marker(job, n, datetime.now(UTC)) for n in (1, 2, 3)}
    started = {n: asyncio.Event() for n in (1, 2)}
    tasks = {}
    for n in (1, 2):
        root = write(
            tmp_path / f"a{n}",
            {"Dockerfile": f"FROM {base_image}\nRUN echo go-{job}-{n} && sleep 20 && echo ok\n"},
        )
        request = BuildRequest(root, tags=[f"{image_name}:a{n}"], attempt_marker=markers[n])
        seen = f"go-{job}-{n}"

        def sink(line: str, seen: str = seen, event: asyncio.Event = started[n]) -> None:
            if seen in line and "RUN" not in line:
                event.set()

        tasks[n] = asyncio.create_task(make(backend, docker_host, base_image).build(request, sink))
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started.values())), 120)
    builder = make(backend, docker_host, base_image)

    first, second, none = [await builder.attempt_steps(markers[n]) for n in (1, 2, 3)]
    assert first is not None and second is not None and none is not None
    assert len(first.steps) == 1 and len(second.steps) == 1 and none.steps == ()
    assert first.steps != second.steps

    stopped = await builder.attempt_steps(markers[1], stop=True)
    assert stopped is not None and stopped.steps == first.steps
    with pytest.raises(BuildError):  # the engine failed the build whose step was killed
        await asyncio.wait_for(tasks[1], 30)
    after = await builder.attempt_steps(markers[1])
    assert after is not None and not after.running
    still = await builder.attempt_steps(markers[2])
    assert still is not None and still.steps == second.steps  # the other attempt runs on
    assert (await asyncio.wait_for(tasks[2], 60)).startswith("sha256:")


async def test_an_engine_without_the_image_to_look_with_cannot_be_looked_into(
    docker_host: str,
) -> None:
    builder = BuildKitBuilder(docker_host, DOCKER, disk_probe_image="deployq-test/absent:none")
    assert await builder.attempt_steps(attempt_marker(1, 1, datetime.now(UTC))) is None


@pytest.mark.parametrize("backend", BACKENDS)
async def test_wrong_registry_password_is_a_clear_registry_error(
    backend: str,
    docker_host: str,
    base_image: str,
    registry: LocalRegistry,
    image_name: str,
    tmp_path: Path,
) -> None:
    workspace = write(tmp_path, {"Dockerfile": f"FROM {base_image}\n"})
    ref = registry.ref(image_name, "x")
    builder = make(backend, docker_host)
    await builder.build(BuildRequest(workspace, tags=[ref]), lambda line: None)
    lines: list[str] = []

    with pytest.raises(RegistryError) as caught:
        await builder.push(ref, auth_for(registry, "wrong-password-123"), lines.append)

    message = caught.value.message
    assert registry.url in message
    assert re.search(r"unauthorized|authentication required|incorrect", message, re.I), message
    assert "wrong-password-123" not in message + "\n".join(lines)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_unreachable_engine_names_the_host(backend: str, tmp_path: Path) -> None:
    host = "unix:///nonexistent.sock"
    builder = make(backend, host)
    write(tmp_path, {"Dockerfile": "FROM scratch\n"})

    with pytest.raises(EngineUnavailable, match=re.escape("unix:///nonexistent.sock")):
        await builder.ping()
    with pytest.raises(EngineUnavailable, match=re.escape("unix:///nonexistent.sock")):
        await builder.build(BuildRequest(tmp_path), lambda line: None)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_missing_dockerfile_is_a_build_error_naming_it(
    backend: str, docker_host: str, tmp_path: Path
) -> None:
    write(tmp_path, {"README.md": "no Dockerfile here"})
    builder = make(backend, docker_host)

    with pytest.raises(BuildError, match=re.escape("docker/Dockerfile.prod")) as caught:
        await builder.build(BuildRequest(tmp_path, dockerfile="docker/Dockerfile.prod"), print)
    assert caught.value.retryable is False


async def test_secrets_reach_the_build_but_never_the_log(
    docker_host: str, base_image: str, image_name: str, tmp_path: Path
) -> None:
    secret = f"tok-{uuid.uuid4().hex}"
    write(
        tmp_path,
        {
            "Dockerfile": f"FROM {base_image}\n"
            # unique, since secrets do not take part in the cache key
            f"RUN --mount=type=secret,id=npm echo {uuid.uuid4().hex} && "
            "sha256sum /run/secrets/npm && cat /run/secrets/npm && echo\n"
        },
    )
    lines: list[str] = []
    builder = BuildKitBuilder(docker_host, DOCKER)

    await builder.build(
        BuildRequest(tmp_path, secrets={"npm": secret}, tags=[f"{image_name}:s"]), lines.append
    )

    assert any(hashlib.sha256(secret.encode()).hexdigest() in line for line in lines), lines
    assert secret not in "\n".join(lines)
    assert any(line.endswith(MASK) for line in lines), lines


async def test_ping_reports_the_engine(docker_host: str) -> None:
    for builder in (BuildKitBuilder(docker_host, DOCKER), EngineBuilder(docker_host)):
        info = await builder.ping()
        assert re.match(r"\d+\.\d+", info.version)
        assert info.arch in ("amd64", "arm64")
        assert info.data_root and info.free_disk_mb is not None and info.free_disk_mb > 0
        assert info.buildkit is (builder.backend == "buildkit")


def test_automatic_backend_prefers_buildkit_here(docker_host: str) -> None:
    assert make_builder(docker_host, BuildBackend.AUTO).backend == "buildkit"
    assert make_builder(docker_host, BuildBackend.ENGINE).backend == "engine"
    assert make_builder(docker_host, BuildBackend.BUILDKIT, docker_cli=DOCKER).backend == (
        "buildkit"
    )


def test_buildkit_backend_without_a_usable_cli_is_a_config_error(
    docker_host: str, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="DEPLOYQ_BUILD_BACKEND=buildkit needs a docker CLI"):
        make_builder(docker_host, BuildBackend.BUILDKIT, docker_cli=str(tmp_path / "docker"))


def logins(lines: list[str]) -> int:
    return sum(line.startswith("logging in to ") for line in lines)


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    """A registry of this test alone, whose password the test may rotate."""
    with start_registry(tmp_path / "registry", password=f"first-{uuid.uuid4().hex[:8]}") as reg:
        yield reg


async def test_buildkit_logs_in_once_and_close_removes_the_credentials(
    docker_host: str, base_image: str, registry: LocalRegistry, image_name: str, tmp_path: Path
) -> None:
    write(tmp_path, {"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex} > /id\n"})
    builder = BuildKitBuilder(docker_host, DOCKER)
    lines: list[str] = []
    refs = [registry.ref(image_name, tag) for tag in ("one", "two")]
    await builder.build(BuildRequest(tmp_path, tags=refs), lines.append, auth=auth_for(registry))
    for ref in refs:
        await builder.push(ref, auth_for(registry), lines.append)

    assert logins(lines) == 1
    root = builder.config_root
    assert root is not None and stat.S_IMODE(root.stat().st_mode) == 0o700
    stored = list(root.glob("*/config.json"))
    assert len(stored) == 1 and stat.S_IMODE(stored[0].stat().st_mode) == 0o600

    builder.close()

    assert not root.exists() and builder.config_root is None
    again: list[str] = []
    await builder.push(refs[0], auth_for(registry), again.append)  # usable: logs in anew
    assert logins(again) == 1
    builder.close()


def test_the_credentials_are_removed_when_the_process_exits(
    docker_host: str, base_image: str, registry: LocalRegistry, image_name: str, tmp_path: Path
) -> None:
    write(tmp_path, {"Dockerfile": f"FROM {base_image}\n"})
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from deployq.builders import BuildKitBuilder, BuildRequest, RegistryAuth\n"
        "builder = BuildKitBuilder(sys.argv[1], sys.argv[2])\n"
        "auth = RegistryAuth(sys.argv[3], sys.argv[4], sys.stdin.read())\n"
        "req = BuildRequest(Path(sys.argv[5]), tags=[sys.argv[6]])\n"
        "asyncio.run(builder.build(req, lambda line: None, auth=auth))\n"
        "print(builder.config_root, flush=True)\n"
    )
    argv = [docker_host, DOCKER, registry.url, registry.username, str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-c", script, *argv, registry.ref(image_name, "x")],
        input=registry.password, capture_output=True, text=True, timeout=120,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    root = Path(done.stdout.strip())
    assert root.name.startswith("deployq-docker-config-")
    assert not root.exists()


async def test_buildkit_logs_in_again_after_the_password_is_rotated(
    docker_host: str,
    base_image: str,
    private_registry: LocalRegistry,
    image_name: str,
    tmp_path: Path,
) -> None:
    write(tmp_path, {"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex} > /id\n"})
    builder = BuildKitBuilder(docker_host, DOCKER)
    ref = private_registry.ref(image_name, "abc1234")
    await builder.build(BuildRequest(tmp_path, tags=[ref]), lambda line: None)
    old = auth_for(private_registry)
    first: list[str] = []
    digest = await builder.push(ref, old, first.append)
    new = rotate_password(private_registry)

    # the stored login is now refused (401): deployq logs in again, with what it was given
    stale: list[str] = []
    refused = re.escape(f"login to registry {private_registry.url} as 'deployq' failed")
    with pytest.raises(RegistryError, match=refused) as caught:
        await builder.push(ref, old, stale.append)
    rotated: list[str] = []
    assert await builder.push(ref, new, rotated.append) == digest

    assert logins(first) == 1
    assert any("refused the stored login: logging in again" in line for line in stale), stale
    assert logins(stale) == 1
    assert logins(rotated) == 1
    assert old.password and old.password not in caught.value.message + "\n".join(stale)
    builder.close()


async def test_a_login_lost_from_disk_is_renewed_after_the_registry_refuses_the_push(
    docker_host: str, base_image: str, registry: LocalRegistry, image_name: str, tmp_path: Path
) -> None:
    write(tmp_path, {"Dockerfile": f"FROM {base_image}\nRUN echo {uuid.uuid4().hex} > /id\n"})
    builder = BuildKitBuilder(docker_host, DOCKER)
    ref = registry.ref(image_name, "abc1234")
    await builder.build(BuildRequest(tmp_path, tags=[ref]), lambda line: None)
    await builder.push(ref, auth_for(registry), lambda line: None)
    assert builder.config_root is not None
    for stored in builder.config_root.glob("*/config.json"):
        stored.unlink()  # as a /tmp cleaner would
    lines: list[str] = []

    digest = await builder.push(ref, auth_for(registry), lines.append)

    assert digest.startswith("sha256:")
    assert any("refused the stored login: logging in again" in line for line in lines), lines
    assert logins(lines) == 1
    builder.close()
