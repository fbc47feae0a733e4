"""deployq plan PATH: the zero-config build plan of a local directory (like `railpack plan`)."""

from __future__ import annotations

from pathlib import Path

import click

from deployq.builders.plan import BaseImages, app_overrides, dockerfile, make_plan
from deployq.cli.build_options import build_plan_options
from deployq.cli.common import CliState, common_options, emit, pass_state


@click.command("plan")
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@click.option("--dockerfile", "show_dockerfile", is_flag=True, help="Print the Dockerfile too.")
@build_plan_options
@common_options
@pass_state
def plan_command(
    state: CliState,
    path: Path,
    show_dockerfile: bool,
    install_cmd: str | None,
    build_cmd: str | None,
    start_cmd: str | None,
    runtime_version: str | None,
) -> None:
    """Print how a directory without a Dockerfile would be built (provider, version and
    where it came from, package manager, install/build/start commands, base images, port,
    and why). The base images come from the DEPLOYQ_BASE_IMAGE_* settings."""
    overrides = app_overrides(install_cmd, build_cmd, start_cmd, runtime_version)
    plan = make_plan(path, BaseImages.from_settings(state.settings), overrides)
    data = plan.as_json()
    text = "\n".join(plan.describe())
    if show_dockerfile:
        data["dockerfile"] = dockerfile(plan)
        text += "\n\n" + data["dockerfile"]
    emit(state, data, text)


def register(main: click.Group) -> None:
    main.add_command(plan_command)
