"""The README's first deploy, run as written: from a fresh home with no DEPLOYQ_* setting,
`deployq up`, `app add` of a local repository, `deploy`, `logs -f`, then docker pulls the
image back from the embedded registry by digest and runs it; then (the next block) the app
gets a deploy target and a port, a push is deployed, and the page answers on the port.

The one variable set is DEPLOYQ_LISTEN (a free port): CI machines run other services on
8080, and the web service plays no part in this walkthrough.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployq.embedded_registry import stop_registry
from deployq.testing.services import free_port

ROOT = Path(__file__).resolve().parents[2]
BLOCK_TIMEOUT_S = 200  # below pytest-timeout, so the clean-up runs
#: seconds `deployq up` has to stop after SIGTERM (its shutdown grace is 60 s)
STOP_TIMEOUT_S = 90


def readme_block(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    marker = f"<!-- test: {name} -->"
    match = re.search(re.escape(marker) + r"\n```\w*\n(.*?)\n```", text, re.DOTALL)
    assert match, f"README.md has no code block after {marker}"
    return match.group(1)


def _stop(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # not our child (bash started it): no wait() to block on
    if Path(f"/proc/{pid}").exists():
        os.kill(pid, signal.SIGKILL)


@pytest.mark.docker
@pytest.mark.slow
def test_the_readmes_first_deploy_runs_as_written(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    data_dir = home / ".local" / "share" / "deployq"  # the default DEPLOYQ_DATA_DIR
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DEPLOYQ_", "XDG_", "DOCKER_CONFIG"))
    }
    env.update(
        HOME=str(home),
        # `deployq` is this checkout's (scripts/provision links it on a fresh machine)
        PATH=f"{Path(sys.executable).parent}:{env['PATH']}",
        DEPLOYQ_LISTEN=f"127.0.0.1:{free_port()}",
        PORT=str(free_port()),
    )
    # the block leaves `deployq up` running in the background; the trap tells us its pid
    script = (
        "trap 'echo \"deployq-up-pid $!\" >&2' EXIT\n"
        + readme_block("first-deploy")
        + "\n"
        + readme_block("first-run")
    )
    up_pid: int | None = None
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_TIMEOUT_S,
        )
        pids = re.findall(r"deployq-up-pid (\d+)", done.stderr)
        up_pid = int(pids[-1]) if pids else None
        log = (tmp_path / "deployq-up.log").read_text(errors="replace")[-3000:]
        assert done.returncode == 0, f"{done.stdout}\n--- stderr\n{done.stderr}\n--- up\n{log}"
        assert "hello from deployq\n" in done.stdout  # docker run of the first image
        assert done.stdout.strip().endswith("hello from deployq, on a port")  # curl

        show = subprocess.run(
            ["deployq", "job", "show", "1", "--json"],
            cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        job = json.loads(show.stdout)
        registry = json.loads((data_dir / "registry" / "credentials.json").read_text())
        host = registry["url"].removeprefix("http://")
        assert job["job"]["status"] == "succeeded"
        assert re.fullmatch(rf"{re.escape(host)}/deployq/hello:[0-9a-f]{{7}}", job["image"])
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", job["digest"])
        assert job["pull"] == f"{host}/deployq/hello@{job['digest']}"
        assert f"Digest: {job['digest']}" in done.stdout  # docker pull got exactly that
    finally:
        if up_pid is not None:
            _stop(up_pid)
        running = subprocess.run(
            ["/usr/bin/docker", "ps", "-aq", "--filter", "name=deployq-hello-2-"],
            capture_output=True, text=True, check=False,
        ).stdout.split()  # fmt: skip
        if running:
            subprocess.run(["/usr/bin/docker", "rm", "-f", *running], capture_output=True)
        stop_registry(data_dir)
        pgdata = data_dir / "pgdata"
        subprocess.run(["pkill", "-f", f"postgres.*{pgdata}"], check=False)
        images = subprocess.run(
            ["/usr/bin/docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True, text=True, check=False,
        ).stdout.split()  # fmt: skip
        mine = [i for i in images if "/deployq/hello:" in i and i.startswith("127.0.0.1:")]
        owned = [i for i in mine if str(_port_of(data_dir)) in i.split("/")[0]]
        if owned:
            subprocess.run(["/usr/bin/docker", "rmi", "-f", *owned], capture_output=True)


def _port_of(data_dir: Path) -> int | None:
    try:
        return int(json.loads((data_dir / "registry" / "credentials.json").read_text())["port"])
    except (OSError, ValueError, KeyError):
        return None
