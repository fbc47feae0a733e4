"""The zero-config override options shared by `app add` and `plan` (docs/zero-config.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

_OPTIONS = (
    click.option(
        "--install-cmd", help="Zero-config builds: install dependencies with this command."
    ),
    click.option("--build-cmd", help="Zero-config builds: build with this command."),
    click.option("--start-cmd", help="Zero-config builds: start the app with this command."),
    click.option(
        "--runtime-version", help="Zero-config builds: language version, e.g. 3.12 or 22."
    ),
)


def build_plan_options(func: F) -> F:
    """--install-cmd, --build-cmd, --start-cmd, --runtime-version on a command."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func
