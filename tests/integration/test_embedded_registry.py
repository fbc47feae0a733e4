"""The embedded registry: a real docker-registry on loopback, shared by every deployq process."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_helpers import pull, push_image

from deployq.config import Settings
from deployq.embedded_registry import ensure_registry, stop_registry, with_registry
from deployq.errors import RegistryError
from deployq.registry import RegistryClient
from deployq.testing.services import LocalRegistry


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    stop_registry(tmp_path)


async def test_the_first_use_starts_a_registry_with_generated_credentials(data_dir: Path) -> None:
    registry = ensure_registry(data_dir)

    root = data_dir / "registry"
    credentials = json.loads((root / "credentials.json").read_text())
    assert credentials["url"] == registry.url == f"http://127.0.0.1:{registry.port}"
    assert len(credentials["password"]) >= 24
    for private in ("credentials.json", "htpasswd", "config.yml"):
        assert stat.S_IMODE((root / private).stat().st_mode) == 0o600, private
    assert (root / "htpasswd").read_text().startswith(f"{registry.username}:$2b$")
    assert "delete:\n    enabled: true" in (root / "config.yml").read_text()
    await RegistryClient(registry.url, registry.username, registry.password).check_login()
    with pytest.raises(RegistryError, match="refused user 'deployq'"):
        await RegistryClient(registry.url, registry.username, "wrong").check_login()


def test_a_second_use_finds_the_running_registry(data_dir: Path) -> None:
    first = ensure_registry(data_dir)
    pid = (data_dir / "registry" / "registry.pid").read_text()
    assert ensure_registry(data_dir) == first
    assert (data_dir / "registry" / "registry.pid").read_text() == pid


def test_concurrent_processes_share_one_registry(data_dir: Path) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from deployq.embedded_registry import ensure_registry; "
        "print(ensure_registry(Path(sys.argv[1])).url)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(data_dir)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    urls = {proc.communicate(timeout=60)[0].strip() for proc in procs}
    assert all(proc.returncode == 0 for proc in procs)
    assert len(urls) == 1
    pid = int((data_dir / "registry" / "registry.pid").read_text())
    running = subprocess.run(
        ["pgrep", "-f", f"docker-registry serve {data_dir / 'registry'}/"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert running == [str(pid)]


def test_a_stopped_registry_comes_back_on_the_same_port_with_the_same_credentials(
    data_dir: Path,
) -> None:
    first = ensure_registry(data_dir)
    assert stop_registry(data_dir)
    assert ensure_registry(data_dir) == first


def test_a_port_taken_meanwhile_by_another_program_moves_the_registry(data_dir: Path) -> None:
    first = ensure_registry(data_dir)
    stop_registry(data_dir)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", first.port))
        squatter.listen()
        moved = ensure_registry(data_dir)
    assert moved.port != first.port
    assert moved.password == first.password
    saved = json.loads((data_dir / "registry" / "credentials.json").read_text())
    assert saved["port"] == moved.port


def test_a_configured_registry_turns_the_embedded_one_off(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, registry_url="harbor.example.com")
    assert with_registry(settings) is settings
    assert not (data_dir / "registry").exists()


def test_without_a_configured_registry_the_settings_point_at_the_embedded_one(
    data_dir: Path,
) -> None:
    settings = with_registry(Settings(data_dir=data_dir))
    registry = ensure_registry(data_dir)
    assert settings.registry_url == registry.url
    assert settings.registry_username == registry.username
    assert settings.registry_password is not None
    assert settings.registry_password.get_secret_value() == registry.password
    assert settings.registry_insecure


@pytest.mark.docker
def test_registry_url_and_login_from_the_cli(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update(DEPLOYQ_DATA_DIR=str(data_dir), DOCKER_CONFIG=str(data_dir / "docker-config"))

    def deployq(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "deployq", *args], capture_output=True, text=True, env=env
        )

    url = deployq("registry-url")
    assert url.returncode == 0, url.stderr
    host = url.stdout.strip()
    assert host == ensure_registry(data_dir).host
    login = deployq("registry", "login", "--docker", "/usr/bin/docker")
    assert login.returncode == 0, login.stderr
    assert (
        login.stdout.strip()
        == f"logged in to {host} as deployq: docker pull {host}/IMAGE works now"
    )
    auths = json.loads((data_dir / "docker-config" / "config.json").read_text())["auths"]
    assert host in auths
    assert ensure_registry(data_dir).password not in login.stdout + login.stderr


async def test_the_embedded_registry_lets_retention_delete_images(data_dir: Path) -> None:
    embedded = ensure_registry(data_dir)
    local = LocalRegistry(
        embedded.host, embedded.username, embedded.password, data_dir / "registry" / "htpasswd"
    )
    old = await push_image(local, "deployq/web", "aaaaaaa")
    await push_image(local, "deployq/web", "bbbbbbb", "main")
    client = RegistryClient(embedded.url, embedded.username, embedded.password)

    assert await client.delete_manifest("deployq/web", old) is True

    assert set(await client.tags("deployq/web")) == {"bbbbbbb", "main"}
    assert await pull(local, "deployq/web", "aaaaaaa") == 404
    assert await pull(local, "deployq/web", "main") == 200
    assert await client.delete_manifest("deployq/web", old) is False  # gone already
