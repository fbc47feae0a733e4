"""The whole product in a minute: push → webhook → build → registry → e-mail.

Starts deployq (`deployq up`) on an embedded PostgreSQL in a scratch directory, a real
authenticated registry and an SMTP server on loopback, creates a sample git repository and
app, sends a signed GitHub push webhook, follows the build log to the end, then shows the
image in the registry (pulled back and run) and the e-mail that was sent. Exits non-zero,
saying what went wrong, if any of that does not happen.

Run it with `scripts/demo` (which provisions first); `--keep` leaves the scratch directory.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from deployq.testing.services import (
    DOCKER,
    LocalRegistry,
    ensure_base_image,
    ensure_docker,
    free_port,
    start_registry,
)

DEPLOYQ = [sys.executable, "-m", "deployq"]
WEBHOOK_SECRET = "demo-webhook-secret"
RECIPIENT = "dev@example.com"
GREETING = "Hello from a deployq build!"
READY_TIMEOUT_S = 60.0
BUILD_TIMEOUT_S = 240.0
MAIL_TIMEOUT_S = 60.0


class DemoFailed(Exception):
    """The demo did not reach its end."""


class Mailbox:
    """aiosmtpd handler that keeps every message and signals its arrival."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append((list(envelope.rcpt_tos), message))
        self.arrived.set()
        return "250 OK"


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def git(path: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Ada Lovelace",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada Lovelace",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=path, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def make_repository(path: Path, base_image: str) -> str:
    path.mkdir(parents=True)
    (path / "Dockerfile").write_text(
        f'FROM {base_image}\nCOPY greeting.txt /greeting.txt\nCMD ["cat", "/greeting.txt"]\n'
    )
    (path / "greeting.txt").write_text(GREETING + "\n")
    git(path, "init", "--quiet", "--initial-branch", "main")
    git(path, "config", "uploadpack.allowReachableSHA1InWant", "true")
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "-m", "Say hello")
    return git(path, "rev-parse", "HEAD")


def push_payload(repo: Path, sha: str) -> dict[str, Any]:
    """A GitHub push event as GitHub sends it (the fields deployq reads, and more)."""
    url = repo.as_uri()
    commit = {
        "id": sha,
        "message": "Say hello",
        "timestamp": "2026-11-25T08:00:00Z",
        "author": {"name": "Ada Lovelace", "email": "ada@example.com", "username": "ada"},
        "added": ["Dockerfile", "greeting.txt"],
        "removed": [],
        "modified": [],
    }
    return {
        "ref": "refs/heads/main",
        "before": "0" * 40,
        "after": sha,
        "created": True,
        "deleted": False,
        "forced": False,
        "repository": {
            "id": 1,
            "name": "hello",
            "full_name": "demo/hello",
            "html_url": "https://github.com/demo/hello",
            "clone_url": url,
            "default_branch": "main",
        },
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "sender": {"login": "ada"},
        "head_commit": commit,
        "commits": [commit],
    }


def post_webhook(port: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    body = json.dumps(payload).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/webhooks/github",
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={signature}",
            "User-Agent": "GitHub-Hookshot/demo",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoFailed(f"deployq up exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        time.sleep(0.2)  # a port that is not open yet sends no event to wait on
    raise DemoFailed(f"deployq up did not become ready in {READY_TIMEOUT_S:g}s; see {log}")


def registry_tags(registry: LocalRegistry, repository: str) -> list[str]:
    token = base64.b64encode(f"{registry.username}:{registry.password}".encode()).decode()
    request = urllib.request.Request(
        f"http://{registry.url}/v2/{repository}/tags/list",
        headers={"Authorization": f"Basic {token}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        tags: list[str] = json.loads(response.read()).get("tags") or []
    return sorted(tags)


def pull_and_run(registry: LocalRegistry, ref: str, scratch: Path) -> str:
    config = scratch / "docker-config"
    config.mkdir(exist_ok=True)
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    subprocess.run(
        [DOCKER, "login", registry.url, "-u", registry.username, "--password-stdin"],
        input=registry.password, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    subprocess.run([DOCKER, "pull", "-q", ref], env=env, check=True, capture_output=True)
    done = subprocess.run(
        [DOCKER, "run", "--rm", ref], env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@contextlib.contextmanager
def smtp_server() -> Iterator[tuple[int, Mailbox]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller.port, mailbox
    finally:
        controller.stop()


def stop_embedded_postgres(data_dir: Path) -> None:
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)  # fast shutdown


def remove_images(prefix: str) -> None:
    """Leave the engine as it was: drop the demo's images (tagged for its registry)."""
    listed = subprocess.run(
        [DOCKER, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    refs = [ref for ref in listed.stdout.split() if ref.startswith(prefix)]
    digests = subprocess.run(
        [DOCKER, "image", "ls", "--digests", "--format", "{{.Repository}}@{{.Digest}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    refs += [ref for ref in digests.stdout.split() if ref.startswith(prefix)]
    if refs:
        subprocess.run([DOCKER, "image", "rm", "--force", *refs], capture_output=True, check=False)


def run_demo(scratch: Path) -> None:
    say("Local services: dockerd, a base image, a registry with authentication, SMTP")
    docker_host = ensure_docker()
    base_image = ensure_base_image(docker_host)
    print(f"engine {docker_host}; base image {base_image}")
    with start_registry(scratch / "registry") as registry, smtp_server() as (smtp_port, mail):
        print(f"registry http://{registry.url} (user {registry.username}); SMTP :{smtp_port}")
        repo = scratch / "hello"
        sha = make_repository(repo, base_image)
        print(f"sample repository {repo} at {sha[:7]}")

        port = free_port()
        data_dir = scratch / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
        env.update(
            {
                "DEPLOYQ_DATA_DIR": str(data_dir),
                "DEPLOYQ_LISTEN": f"127.0.0.1:{port}",
                "DEPLOYQ_REGISTRY_URL": registry.url,
                "DEPLOYQ_REGISTRY_USERNAME": registry.username,
                "DEPLOYQ_REGISTRY_PASSWORD": registry.password,
                "DEPLOYQ_REGISTRY_INSECURE": "true",
                "DEPLOYQ_SMTP_HOST": "127.0.0.1",
                "DEPLOYQ_SMTP_PORT": str(smtp_port),
                "DEPLOYQ_SMTP_FROM": "deployq@example.com",
                "DEPLOYQ_WORKER_CONCURRENCY": "2",
            }
        )

        def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            print("$ deployq " + " ".join(args), flush=True)
            return subprocess.run([*DEPLOYQ, *args], env=env, text=True, check=check)

        say("deployq app add (the embedded PostgreSQL starts on first use)")
        cli(
            "app", "add", "hello", "--repo", str(repo), "--image", "demo/hello",
            "--webhook-secret", WEBHOOK_SECRET, "--notify", RECIPIENT,
        )  # fmt: skip

        say("deployq up")
        log = scratch / "deployq-up.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*DEPLOYQ, "up"], env=env, stdout=out, stderr=out)
        try:
            wait_ready(port, proc, log)
            print(f"web service ready on http://127.0.0.1:{port}")

            say("A signed GitHub push webhook")
            status, answer = post_webhook(port, push_payload(repo, sha))
            print(f"HTTP {status}: {json.dumps(answer)}")
            jobs = answer.get("jobs") or []
            if status != 202 or not jobs:
                raise DemoFailed(f"the webhook did not create a job: HTTP {status} {answer}")
            job_id = str(jobs[0]["id"] if isinstance(jobs[0], dict) else jobs[0])

            say(f"deployq logs {job_id} -f")
            follow = subprocess.run(
                [*DEPLOYQ, "logs", job_id, "-f"], env=env, text=True, timeout=BUILD_TIMEOUT_S
            )
            if follow.returncode not in (0, 1):
                raise DemoFailed(f"following the log failed ({follow.returncode})")

            say(f"deployq job show {job_id}")
            shown = subprocess.run(
                [*DEPLOYQ, "job", "show", job_id, "--json"],
                env=env, text=True, capture_output=True, check=True,
            )  # fmt: skip
            job = json.loads(shown.stdout)
            job = job.get("job", job)
            print(
                f"status {job['status']}, image {job.get('image_ref')}, "
                f"digest {job.get('image_digest')}"
            )
            if job["status"] != "succeeded":
                raise DemoFailed(f"job {job_id} ended {job['status']}: {job.get('error')}")

            say("The image in the registry")
            tags = registry_tags(registry, "demo/hello")
            print(f"tags of demo/hello: {', '.join(tags)}")
            if sha[:7] not in tags or "main" not in tags:
                raise DemoFailed(f"expected tags {sha[:7]} and main, found {tags}")
            ref = f"{registry.url}/demo/hello@{job['image_digest']}"
            output = pull_and_run(registry, ref, scratch)
            print(f"docker run {ref}\n  → {output}")
            if output != GREETING:
                raise DemoFailed(f"the image printed {output!r}, not {GREETING!r}")

            say("The e-mail that was sent")
            deadline = time.monotonic() + MAIL_TIMEOUT_S
            succeeded_mail = None
            while succeeded_mail is None and time.monotonic() < deadline:
                mail.arrived.wait(max(0.0, deadline - time.monotonic()))
                mail.arrived.clear()
                for rcpts, message in mail.messages:
                    if "succeeded" in str(message["Subject"]):
                        succeeded_mail = (rcpts, message)
            if succeeded_mail is None:
                raise DemoFailed(f"no 'succeeded' e-mail within {MAIL_TIMEOUT_S:g}s")
            rcpts, message = succeeded_mail
            print(f"To: {', '.join(rcpts)}\nSubject: {message['Subject']}")
            plain = message.get_body(preferencelist=("plain",))
            print(plain.get_content() if plain is not None else "(no plain-text part)")
            if RECIPIENT not in rcpts:
                raise DemoFailed(f"the e-mail went to {rcpts}, not {RECIPIENT}")
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
            stop_embedded_postgres(data_dir)
            remove_images(f"{registry.url}/")
    say("Demo complete: push → job → image in the registry → e-mail")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="scratch directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args()
    scratch = args.dir or Path(tempfile.mkdtemp(prefix="deployq-demo-"))
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        run_demo(scratch)
    except DemoFailed as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"scratch directory kept: {scratch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
