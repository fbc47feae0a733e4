"""deployq registry-url, deployq registry login: the registry images are pushed to."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import click

from deployq.cli.common import CliState, common_options, emit, pass_state, run
from deployq.config import Settings
from deployq.embedded_registry import with_registry
from deployq.errors import ConfigError
from deployq.imageref import registry_host


def registry_settings(state: CliState) -> Settings:
    """The settings with the registry in use (the embedded one is started if needed)."""
    return run(asyncio.to_thread(with_registry, state.settings))


@click.command("registry-url")
@common_options
@pass_state
def registry_url_cmd(state: CliState) -> None:
    """Print the registry's HOST:PORT, the way image references start (starts the embedded
    registry when DEPLOYQ_REGISTRY_URL is not set)."""
    settings = registry_settings(state)
    host = registry_host(settings.registry_url)
    emit(state, {"registry_url": settings.registry_url, "host": host}, host)


@click.group("registry")
def registry_group() -> None:
    """The registry images are pushed to."""


@registry_group.command("login")
@click.option("--docker", "docker_cli", help="docker CLI to log in (default: docker on PATH).")
@common_options
@pass_state
def registry_login(state: CliState, docker_cli: str | None) -> None:
    """Log the local docker client in to the registry with deployq's credentials, so
    `docker pull` gets the images deployq pushed."""
    settings = registry_settings(state)
    host = registry_host(settings.registry_url)
    username = settings.registry_username
    if not username or settings.registry_password is None:
        raise ConfigError(
            f"no credentials for {host}: set DEPLOYQ_REGISTRY_USERNAME and "
            "DEPLOYQ_REGISTRY_PASSWORD (or `docker login` yourself)"
        )
    cli = docker_cli or settings.docker_cli or shutil.which("docker") or "/usr/bin/docker"
    try:
        done = subprocess.run(
            [cli, "login", host, "--username", username, "--password-stdin"],
            input=settings.registry_password.get_secret_value(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot run {cli} login: {exc}") from exc
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(f"docker login {host} failed: {reason}")
    emit(
        state,
        {"registry": host, "username": username, "logged_in": True},
        f"logged in to {host} as {username}: docker pull {host}/IMAGE works now",
    )


def register(main: click.Group) -> None:
    main.add_command(registry_url_cmd)
    main.add_command(registry_group)
