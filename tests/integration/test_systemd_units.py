"""The systemd units, their environment file and the install script, checked for real.

systemd is not PID 1 here, so the units are checked with ``systemd-analyze verify`` (which
loads and validates them offline); the install script runs against a temporary root. What
the units' directives promise is read in tests/unit/test_systemd_files.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from deployq.config import Settings
from deployq.embedded_registry import stop_registry
from systemd_support import (
    ALL_UNITS,
    ENV_EXAMPLE,
    ROOT,
    SHIPPED_EXEC,
    SYSTEMD_DIR,
    UNITS,
    directives,
)

INSTALL = ROOT / "scripts" / "install-systemd"
REAL_EXEC = str(Path(sys.executable).parent / "deployq")

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def verify(*units: Path | str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
    )


def copy_units(destination: Path) -> Path:
    """The shipped units with one change: ExecStart runs this checkout's deployq."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ALL_UNITS:
        text = (SYSTEMD_DIR / name).read_text()
        (destination / name).write_text(text.replace(SHIPPED_EXEC, REAL_EXEC))
    return destination


# -- systemd-analyze verify -------------------------------------------------------------------


@needs_systemd_analyze
def test_every_shipped_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    units = copy_units(tmp_path / "units")

    result = verify(*ALL_UNITS, "deployq-worker@2.service", cwd=units)

    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@needs_systemd_analyze
def test_verify_as_run_here_does_catch_a_broken_unit(tmp_path: Path) -> None:
    # systemd-analyze only warns about bad values (exit 0), which is why the tests above
    # require an empty stderr: this proves a typo would show up there
    units = copy_units(tmp_path / "units")
    broken = units / "deployq-web.service"
    broken.write_text(broken.read_text().replace("KillMode=mixed", "KillMode=mixd"))

    result = verify("deployq-web.service", cwd=units)

    assert "Failed to parse kill mode" in result.stderr


@needs_systemd_analyze
def test_shipped_exec_path_is_the_only_thing_verify_needs(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    shutil.copy(SYSTEMD_DIR / "deployq-worker.service", units)

    result = verify("deployq-worker.service", cwd=units)

    complaints = result.stderr.strip().splitlines()
    if Path(SHIPPED_EXEC).exists():
        assert complaints == []
    else:
        assert complaints == [
            f"deployq-worker.service: Command {SHIPPED_EXEC} is not executable: "
            "No such file or directory"
        ]


def source_env(path: Path, python: str, *, uncomment: bool = False) -> str:
    """Load ``path`` the way an operator's shell does, print the settings as JSON."""
    text = path.read_text()
    if uncomment:
        text = re.sub(r"^#(DEPLOYQ_)", r"\1", text, flags=re.MULTILINE)
    env_file = path.parent / "loaded.env" if uncomment else path
    if uncomment:
        env_file.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    result = subprocess.run(
        ["bash", "-c", f'set -a; . "{env_file}"; set +a; "{sys.executable}" -c "{python}"'],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


LOAD = "from deployq.config import load_settings; print(load_settings().model_dump_json())"


def test_env_example_as_shipped_is_a_valid_configuration() -> None:
    loaded = Settings.model_validate_json(source_env(ENV_EXAMPLE, LOAD))

    assert str(loaded.data_dir) == "/var/lib/deployq"
    assert loaded.listen == "127.0.0.1:8080"
    assert loaded.database_url is not None


def test_every_example_value_in_the_env_file_is_valid(tmp_path: Path) -> None:
    copy = tmp_path / "deployq.env"
    shutil.copy(ENV_EXAMPLE, copy)
    show = (
        "from deployq.config import load_settings; import json; s = load_settings(); "
        "print(json.dumps([s.registry_username, s.tui_keys, s.build_timeout, s.retention, "
        "s.shutdown_grace, s.smtp_tls.value]))"
    )

    loaded = json.loads(source_env(copy, show, uncomment=True))

    assert loaded == ["robot$deployq", {"cancel": "x"}, 1800.0, 30 * 86400.0, 60.0, "none"]


# -- the install script -----------------------------------------------------------------------


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def passwd_entry(root: Path, name: str) -> list[str]:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        if line.split(":")[0] == name:
            return line.split(":")
    raise AssertionError(f"no user {name}")


def group_members(root: Path, name: str) -> tuple[int, list[str]]:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return int(fields[2]), [m for m in fields[3].split(",") if m]
    raise AssertionError(f"no group {name}")


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers")
@pytest.mark.skipif(os.geteuid() != 0, reason="the install script chowns: run as root")
def test_install_script_sets_up_a_fresh_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "group").write_text("root:x:0:\ndocker:x:112:\n")
    venv = str(Path(sys.executable).parent.parent)

    result = install(root, "--venv", venv)

    assert result.returncode == 0, result.stderr
    user = passwd_entry(root, "deployq")
    assert user[5] == "/var/lib/deployq" and user[6] == "/usr/sbin/nologin"
    assert group_members(root, "docker") == (112, ["deployq"])
    state = (root / "var/lib/deployq").stat()
    assert (state.st_uid, stat.S_IMODE(state.st_mode)) == (int(user[2]), 0o750)
    env_file = root / "etc/deployq/deployq.env"
    assert env_file.read_text() == ENV_EXAMPLE.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o640
    assert env_file.stat().st_gid == int(user[3])
    installed = root / "etc/systemd/system"
    assert sorted(p.name for p in installed.iterdir()) == sorted(ALL_UNITS)
    worker = (installed / "deployq-worker.service").read_text()
    assert f"ExecStart={venv}/bin/deployq worker\n" in worker
    assert (
        worker.replace(f"{venv}/bin/deployq", SHIPPED_EXEC)
        == (SYSTEMD_DIR / "deployq-worker.service").read_text()
    )
    if shutil.which("systemd-analyze"):
        verified = verify(*ALL_UNITS, cwd=installed)
        assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="needs systemd-sysusers")
@pytest.mark.skipif(os.geteuid() != 0, reason="the install script chowns: run as root")
def test_install_script_again_keeps_the_settings_and_the_user(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert install(root).returncode == 0
    env_file = root / "etc/deployq/deployq.env"
    env_file.write_text("DEPLOYQ_DATABASE_URL=postgresql://deployq:real-secret@db/deployq\n")
    uid = passwd_entry(root, "deployq")[2]

    again = install(root)

    assert again.returncode == 0, again.stderr
    assert "real-secret" in env_file.read_text()
    assert passwd_entry(root, "deployq")[2] == uid
    users = (root / "etc/passwd").read_text().splitlines()
    assert len([u for u in users if u.startswith("deployq:")]) == 1
    # the default venv is /opt/deployq/venv, and nothing outside the root was created
    assert (
        f"ExecStart={SHIPPED_EXEC} serve"
        in (root / "etc/systemd/system/deployq-web.service").read_text()
    )
    assert "does not exist yet" in again.stderr


def test_install_script_refuses_a_relative_venv(tmp_path: Path) -> None:
    result = install(tmp_path, "--venv", "venv")

    assert result.returncode == 2 and "absolute path" in result.stderr
    assert list(tmp_path.iterdir()) == []


# -- the sd_notify contract of Type=notify units ---------------------------------------------

NOTIFY_UNITS = [name for name in UNITS if directives(name)["Service"]["Type"] == "notify"]
NOTIFY_TIMEOUT_S = 60.0


def receive_until(sock: socket.socket, wanted: str, seen: list[str]) -> None:
    while True:
        message = sock.recv(4096).decode()
        seen.append(message)
        if message == wanted:
            return


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("name", NOTIFY_UNITS)
def test_notify_unit_command_sends_ready_watchdog_and_stopping(
    name: str, database_url: str, docker_host: str, tmp_path: Path
) -> None:
    """What systemd would see from the unit's own ExecStart (only the venv path changed)."""
    argv = directives(name)["Service"]["ExecStart"].replace(SHIPPED_EXEC, REAL_EXEC).split()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(NOTIFY_TIMEOUT_S)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    env.update(
        DEPLOYQ_DATABASE_URL=database_url,
        DEPLOYQ_DATA_DIR=str(tmp_path / "data"),
        DEPLOYQ_DOCKER_HOST=docker_host,
        DEPLOYQ_LISTEN="127.0.0.1:0",
        NOTIFY_SOCKET=str(tmp_path / "notify.sock"),
        WATCHDOG_USEC="400000",  # the unit's 60s would make the test wait 30s for a ping
    )
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    seen: list[str] = []
    try:
        receive_until(sock, "READY=1", seen)
        receive_until(sock, "WATCHDOG=1", seen)
        proc.send_signal(signal.SIGTERM)
        receive_until(sock, "STOPPING=1", seen)
        assert proc.wait(timeout=NOTIFY_TIMEOUT_S) == 0
    finally:
        sock.close()
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        stop_registry(tmp_path / "data")  # the worker started the embedded registry
