"""deployq harbor robot create: Harbor robot accounts that push and pull, nothing else
(``--allow-delete``: and delete images, which ``deployq prune``'s tag retention needs).

The robot's secret is shown by Harbor once. deployq never prints it: it is sealed as an app's
registry login (``--app``), or written to a file of mode 0600 (``--secret-file``) for the
env file's DEPLOYQ_REGISTRY_PASSWORD (docs/harbor.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from deployq.cli.common import CliState, common_options, emit, with_store
from deployq.config import Settings
from deployq.errors import InvalidInput
from deployq.imageref import qualify
from deployq.models import App, AppSpec
from deployq.redact import MASK
from deployq.registry import harbor_admin
from deployq.store import Store

#: the robot's name inside its project when none is given (and no --app)
DEFAULT_ROBOT_NAME = "deployq"


@click.group("harbor")
def harbor_group() -> None:
    """Harbor's API: robot accounts (docs/harbor.md)."""


@harbor_group.group("robot")
def robot_group() -> None:
    """Robot accounts: registry logins of one project."""


@robot_group.command("create")
@click.argument("project")
@click.option("--name", help="Name in the project (default: the app's name, else deployq).")
@click.option(
    "--app",
    "app_name",
    help="Keep the robot as this app's registry login (its secret sealed in the database): "
    "the app's images are pushed, tagged, scanned and pulled with it.",
)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the secret to this new file (mode 0600), e.g. for DEPLOYQ_REGISTRY_PASSWORD.",
)
@click.option(
    "--allow-delete",
    is_flag=True,
    help="Let the robot delete the project's images too (the repository delete action), so "
    "that `deployq prune` can remove old tags of apps that push with it (docs/retention.md).",
)
@common_options
@with_store
async def robot_create(
    state: CliState,
    store: Store,
    project: str,
    name: str | None,
    app_name: str | None,
    secret_file: Path | None,
    allow_delete: bool,
) -> None:
    """Create a robot account of PROJECT in Harbor that may push and pull its repositories
    (with --allow-delete, delete their images too), and nothing else. Its secret is never
    printed: give --app or --secret-file."""
    settings = state.settings
    if app_name is None and secret_file is None:
        raise InvalidInput(
            "nowhere to keep the robot's secret (deployq never prints it): give --app APP to "
            "seal it as the app's registry login, or --secret-file PATH"
        )
    app = await store.apps.get(app_name) if app_name else None  # NotFound before Harbor
    if app is not None:
        _check_project(app, project, settings)
    harbor = harbor_admin(settings)
    robot_name = name or (app.name if app is not None else DEFAULT_ROBOT_NAME)
    # the file is made first: a secret Harbor shows once must have somewhere to go
    secret_fd = _new_secret_file(secret_file) if secret_file is not None else None
    actions = ["push", "pull", *(["delete"] if allow_delete else [])]
    rights = "push, pull and delete" if allow_delete else "push and pull"
    try:
        full_name, secret = await harbor.create_robot(
            project,
            robot_name,
            description=f"deployq: {rights} for {app.name if app else project}",
            allow_delete=allow_delete,
        )
    except BaseException:
        if secret_fd is not None and secret_file is not None:
            os.close(secret_fd)
            os.unlink(secret_file)
        raise
    where = []
    if app is not None:
        spec = AppSpec.model_validate(app.model_dump(include=set(AppSpec.model_fields)))
        spec = spec.model_copy(update={"registry_username": full_name, "registry_password": secret})
        await store.apps.update(spec)
        where.append(f"sealed as app {app.name}'s registry login")
    if secret_fd is not None:
        with os.fdopen(secret_fd, "w") as out:
            out.write(secret + "\n")
        where.append(f"written to {secret_file} (mode 0600)")
    emit(
        state,
        {
            "robot": full_name,
            "project": project,
            "access": [f"repository:{action}" for action in actions],
            "app": app.name if app is not None else None,
            "secret": MASK,
            "secret_file": str(secret_file) if secret_file is not None else None,
        },
        f"created robot account {full_name} in Harbor project {project} ({rights} only);"
        f" its secret is {' and '.join(where)}",
    )


def _check_project(app: App, project: str, settings: Settings) -> None:
    """A robot of another project could not push the app's images: refuse before creating."""
    if not settings.registry_url:
        return
    target = qualify(app.image or f"{settings.registry_project}/{app.name}", settings.registry_url)
    pushes_to = target.path.split("/")[0]
    if pushes_to != project:
        raise InvalidInput(
            f"app {app.name} pushes to Harbor project {pushes_to} ({target.path}), not "
            f"{project}: its robot must belong to {pushes_to}"
        )


def _new_secret_file(path: Path) -> int:
    """A new file of mode 0600 from its first byte, open for writing."""
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInput(f"{path} exists already: give a new file for the secret") from None
    except OSError as exc:
        raise InvalidInput(f"cannot create {path}: {exc.strerror}") from None


def register(main: click.Group) -> None:
    main.add_command(harbor_group)
