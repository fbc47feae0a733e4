"""deployq app add | credentials | list | show | rm."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from deployq.appcheck import check_app, check_repository
from deployq.cli.appview import describe, image_reference
from deployq.cli.build_options import build_plan_options
from deployq.cli.common import DURATION, CliState, common_options, emit, table, with_store
from deployq.cli.deploy_options import OPTION_FIELDS, deploy_options, pop_deploy_settings
from deployq.cli.gitcreds import read_git_token, ssh_key_option
from deployq.embedded_registry import with_registry
from deployq.errors import InvalidInput, NotFound
from deployq.imageref import check_registry, parse_repository
from deployq.models import (
    App,
    AppSpec,
    NotifyEvent,
    Priority,
    ScanAction,
    ScanPolicy,
    SupersedePolicy,
)
from deployq.redact import MASK, public_app, redact_urls
from deployq.repos import absolute_clone_url
from deployq.store import Store


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r}: expected KEY=VALUE", param_hint=what)
        out[key] = val
    return out


@click.group("app")
def app_group() -> None:
    """Apps: which repository to build, how, and where the image goes."""


@app_group.command("add")
@click.argument("name")
@click.option("--repo", "repo_url", required=True, help="Clone URL (https, ssh or a local path).")
@click.option(
    "--branch", "branches", multiple=True, help="Branch glob to build (repeat); default main."
)
@click.option(
    "--image",
    help="Image repository as Docker writes it: team/web, or REGISTRY/team/web on the "
    "configured registry (default <project>/<name>).",
)
@click.option("--dockerfile", default="Dockerfile", show_default=True)
@click.option("--context", default=".", show_default=True, help="Build context in the repository.")
@click.option("--target", help="Build stage to stop at.")
@click.option("--build-arg", "build_args", multiple=True, help="KEY=VALUE (repeat).")
@click.option("--secret", "build_secrets", multiple=True, help="BuildKit secret ID=VALUE (repeat).")
@click.option(
    "--path", "paths", multiple=True, help="Only build when a changed file matches (glob)."
)
@click.option("--notify", "notify_emails", multiple=True, help="E-mail address to notify (repeat).")
@click.option(
    "--notify-event",
    "notify_events",
    multiple=True,
    type=click.Choice([e.value for e in NotifyEvent]),
    help="Events that notify (repeat); default: all but queued.",
)
@click.option("--notify-pusher", is_flag=True, help="Also e-mail whoever pushed.")
@click.option("--notify-webhook", "notify_webhook_url", help="POST events here (Slack-compatible).")
@click.option("--notify-webhook-secret", help="HMAC secret for the outgoing webhook.")
@click.option("--webhook-secret", help="Secret of this app's GitHub/GitLab webhook.")
@click.option(
    "--forge-token",
    help="GitHub/GitLab token: every job reports commit statuses with it (stored encrypted).",
)
@click.option(
    "--git-token",
    help="HTTPS token for this app's repository instead of DEPLOYQ_GIT_TOKEN (stored "
    "encrypted; USER:TOKEN for a GitLab deploy token); `-` reads it from stdin (or asks), "
    "out of the shell's history.",
)
@click.option(
    "--git-ssh-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SSH deploy key (private key file, no passphrase) for this app's repository instead "
    "of DEPLOYQ_GIT_SSH_KEY (stored encrypted).",
)
@click.option("--tags/--no-tags", "build_tags", default=False, help="Build tag pushes.")
@click.option("--prs/--no-prs", "build_prs", default=False, help="Build pull/merge requests.")
@click.option(
    "--on-new-push",
    "supersede_policy",
    type=click.Choice([p.value for p in SupersedePolicy]),
    default=SupersedePolicy.SUPERSEDE.value,
    show_default=True,
    help="What a newer push to the same branch does to older jobs.",
)
@click.option("--concurrency", type=int, default=1, show_default=True)
@click.option("--priority", type=click.Choice([p.name.lower() for p in Priority]), default="normal")
@click.option("--max-attempts", type=int)
@click.option(
    "--max-queued",
    type=int,
    help="Refuse new jobs while this many of the app's jobs are queued (default: no limit).",
)
@click.option(
    "--keep-tags",
    type=click.IntRange(1),
    help="Image tags per branch `deployq prune` keeps in the registry (default "
    "DEPLOYQ_REGISTRY_KEEP_TAGS).",
)
@click.option("--timeout", "timeout_s", type=DURATION, help="Build timeout: 90s, 10m, 2h.")
@click.option("--arch", "required_arch", help="Only build on servers of this architecture.")
@click.option("--label", "required_labels", multiple=True, help="Server label required (repeat).")
@click.option("--submodules", is_flag=True, help="Check out git submodules.")
@click.option(
    "--reconcile-interval",
    "reconcile_interval_s",
    type=DURATION,
    help="How often to check with `git ls-remote` for missed pushes: 5m, 1h (default off).",
)
@click.option(
    "--scan-policy",
    type=click.Choice([a.value for a in ScanAction]),
    help="Wait for Harbor's scan of each image, and fail the job or skip its deploy when it "
    "finds more than --max-critical critical vulnerabilities (docs/harbor.md).",
)
@click.option(
    "--max-critical",
    type=click.IntRange(min=0),
    help="Critical vulnerabilities the scan policy lets through (default 0).",
)
@deploy_options
@build_plan_options
@click.option("--replace", is_flag=True, help="Update the app if it exists.")
@click.option(
    "--no-check",
    is_flag=True,
    help="Do not check the repository, its branches and the registry login (offline set-ups).",
)
@common_options
@with_store
async def app_add(
    state: CliState, store: Store, name: str, replace: bool, no_check: bool, **options: Any
) -> None:
    """Add an app (or, with --replace, change it). Checks at once that the repository
    answers, that its branches exist and that the registry accepts deployq's login."""
    options["repo_url"] = absolute_clone_url(options["repo_url"])
    options["git_token"] = read_git_token(options["git_token"])
    ssh_key = await ssh_key_option(options["git_ssh_key"])
    options["git_ssh_key"] = ssh_key.text if ssh_key is not None else None
    existing = await _existing(store, name) if replace else None
    if existing is not None and options["git_token"] is None and ssh_key is None:
        # credentials are changed with `app credentials`: a --replace keeps them
        options["git_token"], options["git_ssh_key"] = existing.git_token, existing.git_ssh_key
    options["deploy"] = pop_deploy_settings(options)
    for target in options["deploy"].targets if options["deploy"] else []:
        await store.deploy.target(target)  # NotFound says how to add it
    options["branches"] = list(options["branches"]) or ["main"]
    options["build_args"] = _pairs(options["build_args"], "--build-arg")
    options["build_secrets"] = _pairs(options["build_secrets"], "--secret")
    options["priority"] = Priority.parse(options["priority"])
    for key in ("paths", "notify_emails", "required_labels"):
        options[key] = list(options[key])
    if options["notify_events"]:
        options["notify_events"] = list(options["notify_events"])
    else:
        del options["notify_events"]
    if options["image"] is not None:
        options["image"] = parse_repository(options["image"]).name
    options["scan_policy"] = _scan_policy(options.pop("scan_policy"), options.pop("max_critical"))
    spec = _spec({"name": name, **options})
    settings = state.settings
    if not no_check:  # the registry in use: DEPLOYQ_REGISTRY_URL or the embedded one
        settings = await asyncio.to_thread(with_registry, settings)
    if spec.image is not None and settings.registry_url:
        check_registry(parse_repository(spec.image), settings.registry_url)
    if not no_check and (found := await check_app(spec, settings)):
        raise InvalidInput(
            f"app {name} not added: " + "; ".join(found) + " (--no-check adds it anyway)"
        )
    if existing is not None:
        # the registry login of `deployq harbor robot create --app` has no option: kept
        login = {"registry_username": existing.registry_username}
        spec = spec.model_copy(update=login | {"registry_password": existing.registry_password})
        app = await store.apps.update(spec)
        verb = "updated"
    else:
        app = await store.apps.add(spec)
        verb = "added"
    emit(state, app, f"{verb} app {app.name} ({app.repo_identity})")


def _scan_policy(action: str | None, max_critical: int | None) -> ScanPolicy | None:
    if action is None:
        if max_critical is not None:
            raise InvalidInput("--max-critical needs --scan-policy fail or block-deploy")
        return None
    return ScanPolicy(action=ScanAction(action), max_critical=max_critical or 0)


def _spec(data: dict[str, Any]) -> AppSpec:
    try:
        return AppSpec.model_validate(data)
    except ValidationError as exc:  # the messages name fields, never their values
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'app'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"invalid app: {problems}") from exc


async def _existing(store: Store, name: str) -> App | None:
    try:
        return await store.apps.get(name)
    except NotFound:
        return None


@app_group.command("credentials")
@click.argument("name")
@click.option(
    "--git-token",
    help="HTTPS token for the app's repository (USER:TOKEN for a GitLab deploy token); `-` "
    "reads it from stdin (or asks).",
)
@click.option(
    "--git-ssh-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="SSH deploy key for the app's repository (private key file, no passphrase).",
)
@click.option("--clear", is_flag=True, help="Remove the app's own; the global ones apply.")
@click.option("--no-check", is_flag=True, help="Do not check them with `git ls-remote`.")
@common_options
@with_store
async def app_credentials(
    state: CliState,
    store: Store,
    name: str,
    git_token: str | None,
    git_ssh_key: Path | None,
    clear: bool,
    no_check: bool,
) -> None:
    """Set or clear an app's own git credentials (stored encrypted; checked at once with
    `git ls-remote`). Without them the app uses DEPLOYQ_GIT_TOKEN / DEPLOYQ_GIT_SSH_KEY."""
    if sum((git_token is not None, git_ssh_key is not None, clear)) != 1:
        raise InvalidInput("give one of --git-token, --git-ssh-key FILE or --clear")
    app = await store.apps.get(name)
    token = read_git_token(git_token)
    key = await ssh_key_option(git_ssh_key)
    data = app.model_dump(include=set(AppSpec.model_fields))
    spec = _spec({**data, "git_token": token, "git_ssh_key": key.text if key else None})
    if not clear and not no_check and (found := await check_repository(spec, state.settings)):
        raise InvalidInput(
            f"app {name}: credentials not changed: " + "; ".join(found) + " (--no-check sets "
            "them anyway)"
        )
    await store.apps.update(spec)
    if key is not None:
        text = f"app {name}: SSH deploy key set ({key.fingerprint})"
    elif token is not None:
        text = f"app {name}: git token set"
    else:
        text = f"app {name}: own git credentials cleared (DEPLOYQ_GIT_TOKEN/_SSH_KEY apply)"
    shown = {
        "app": name,
        "git_token": MASK if token else None,
        "git_ssh_key": key.fingerprint if key else None,
    }
    emit(state, shown, text)


@app_group.command("list")
@common_options
@with_store
async def app_list(state: CliState, store: Store) -> None:
    """List the apps."""
    apps = await store.apps.all()
    emit(
        state,
        apps,
        lambda: (
            table(
                ["NAME", "REPOSITORY", "BRANCHES", "IMAGE", "ON NEW PUSH"],
                [
                    [
                        a.name,
                        redact_urls(a.repo_url),
                        ",".join(a.branches),
                        image_reference(a, state.settings),
                        a.supersede_policy.value,
                    ]
                    for a in apps
                ],
            )
            if apps
            else "no apps yet: add one with `deployq app add NAME --repo URL`"
        ),
    )


@app_group.command("show")
@click.argument("name")
@common_options
@with_store
async def app_show(state: CliState, store: Store, name: str) -> None:
    """Show an app's configuration (secrets hidden)."""
    app = await store.apps.get(name)
    emit(
        state,
        {**public_app(app), "image_reference": image_reference(app, state.settings)},
        lambda: describe(app, app_add, state.settings, OPTION_FIELDS),
    )


@app_group.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask.")
@common_options
@with_store
async def app_rm(state: CliState, store: Store, name: str, yes: bool) -> None:
    """Remove an app (its past jobs stay in the history)."""
    await store.apps.get(name)
    if not yes and not state.json:
        click.confirm(f"remove app {name}?", abort=True)
    await store.apps.remove(name)
    emit(state, {"removed": name}, f"removed app {name}")


def register(main: click.Group) -> None:
    main.add_command(app_group)
