"""The ``deployq`` command. It wires the pieces together and holds no logic of its own.

Each area adds its commands in its own module (``deployq.cli.<area>``), listed in
COMMAND_MODULES; every module exposes ``register(main)``.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from deployq import __version__
from deployq.cli.common import CliState, config_option, json_option
from deployq.errors import DeployqError

#: the exit status click gives a usage error
USAGE_ERROR_STATUS = 2
COMMAND_MODULES = (
    "deployq.cli.db",
    "deployq.cli.apps",
    "deployq.cli.run",
    "deployq.cli.servers",
    "deployq.cli.notifications",
    "deployq.cli.doctor",
    "deployq.cli.tui",
    "deployq.cli.jobs",
    "deployq.cli.prune",
    "deployq.cli.stats",
    "deployq.cli.watch",
    "deployq.cli.tokens",
    "deployq.cli.reconcile",
    "deployq.cli.deploy",
    "deployq.cli.registry",
    "deployq.cli.harbor",
    "deployq.cli.plan",
    "deployq.cli.secrets",
)


class DeployqGroup(click.Group):
    """Turns any DeployqError into one line on stderr and exit status 1, never a traceback;
    usage errors exit 1 too (click's own status is 2), as every other error does."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except SystemExit as exc:
            if exc.code == USAGE_ERROR_STATUS:
                raise SystemExit(1) from None
            raise

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except DeployqError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(1)


@click.group(
    cls=DeployqGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@config_option
@json_option
@click.version_option(__version__, prog_name="deployq")
@click.pass_context
def main(ctx: click.Context) -> None:
    """deployq: git pushes become container images, on a queue in PostgreSQL.

    Start with `deployq up` (embedded PostgreSQL, web service and workers in one process),
    add an app with `deployq app add`, and point your forge's webhook at it.
    """
    ctx.ensure_object(CliState)


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(main)
