"""deployq target add | list | rm, releases, rollback: where apps run and what runs there."""

from __future__ import annotations

import click

from deployq.cli.common import CliState, common_options, emit, table, with_store
from deployq.cli.jobs import operator
from deployq.durations import elapsed
from deployq.models import DeployTarget, Priority, Release
from deployq.store import Store


@click.group("target")
def target_group() -> None:
    """Deploy targets: Docker engines the built images run on."""


@target_group.command("add")
@click.argument("name")
@click.option(
    "--docker-host",
    required=True,
    help="Engine URL: unix:///var/run/docker.sock, tcp://host:2376, ssh://user@host.",
)
@common_options
@with_store
async def target_add(state: CliState, store: Store, name: str, docker_host: str) -> None:
    """Register a deploy target (it may be the engine of a build server too)."""
    target = await store.deploy.add_target(name, docker_host)
    emit(
        state,
        target,
        f"added deploy target {target.name} ({target.docker_host}); deploy an app there with "
        f"`deployq app add APP ... --deploy-target {target.name}`",
    )


@target_group.command("list")
@common_options
@with_store
async def target_list(state: CliState, store: Store) -> None:
    """List the deploy targets and their health (probed by the workers)."""
    targets = await store.deploy.targets()
    emit(state, targets, lambda: _targets_table(targets))


def _health(target: DeployTarget) -> str:
    if target.last_probe_at is None:
        return "not probed yet"
    return "healthy" if target.healthy else "unhealthy"


def _targets_table(targets: list[DeployTarget]) -> str:
    if not targets:
        return "no deploy targets yet: add one with `deployq target add NAME --docker-host URL`"
    return table(
        ["NAME", "DOCKER HOST", "HEALTH", "ENGINE", "LAST ERROR"],
        [
            [t.name, t.docker_host, _health(t), t.engine_version or "", t.last_error or ""]
            for t in targets
        ],
    )


@target_group.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask.")
@common_options
@with_store
async def target_rm(state: CliState, store: Store, name: str, yes: bool) -> None:
    """Forget a deploy target (its containers keep running; releases stay in the history)."""
    await store.deploy.target(name)
    if not yes and not state.json:
        click.confirm(f"remove deploy target {name}?", abort=True)
    await store.deploy.remove_target(name)
    emit(state, {"removed": name}, f"removed deploy target {name}")


@click.command("releases")
@click.argument("app")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@common_options
@with_store
async def releases_cmd(state: CliState, store: Store, app: str, limit: int) -> None:
    """An app's releases, newest first, with what runs now on each target."""
    await store.apps.get(app)
    releases = await store.deploy.releases(app, limit=limit)
    emit(state, releases, lambda: _releases_table(app, releases))


def _releases_table(app: str, releases: list[Release]) -> str:
    if not releases:
        return f"{app} has no releases yet: give it --deploy-target and push"
    return table(
        ["TARGET", "JOB", "COMMIT", "DIGEST", "STARTED", "STATE"],
        [
            [
                r.target,
                f"#{r.job_id}" if r.job_id else "",
                (r.commit_sha or "")[:7],
                r.digest[:19],
                r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                "running now"
                if r.current
                else f"replaced after {elapsed((r.replaced_at - r.started_at).total_seconds())}"
                if r.replaced_at
                else "",
            ]
            for r in releases
        ],
    )


@click.command("rollback")
@click.argument("app")
@click.option("--to", "job_id", type=int, help="Deploy the image of this (succeeded) job.")
@click.option("--digest", help="Deploy the image with this digest (sha256:…, or a prefix).")
@click.option("--priority", type=click.Choice([p.name.lower() for p in Priority]))
@common_options
@with_store
async def rollback_cmd(
    state: CliState,
    store: Store,
    app: str,
    job_id: int | None,
    digest: str | None,
    priority: str | None,
) -> None:
    """Deploy an earlier release again, without building: by default the one before the
    release running now. The job goes through the queue, in order with the app's builds."""
    if job_id is not None and digest is not None:
        raise click.UsageError("give --to JOB or --digest D, not both")
    application = await store.apps.get(app)
    if application.deploy is None or not application.deploy.enabled:
        raise click.UsageError(
            f"{app} has no deploy target; add one with `deployq app add {app} ... "
            "--deploy-target NAME --replace`"
        )
    source = await store.deploy.rollback_source(app, job_id=job_id, digest=digest)
    job = await store.deploy.enqueue_rollback(
        app,
        source,
        actor=operator(),
        priority=Priority.parse(priority) if priority else None,
    )
    emit(
        state,
        job,
        f"queued job #{job.id}: roll {app} back to #{source.id} "
        f"({source.short_sha} {source.image_digest})",
    )


def register(main: click.Group) -> None:
    main.add_command(target_group)
    main.add_command(releases_cmd)
    main.add_command(rollback_cmd)
