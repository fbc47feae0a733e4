"""deployq up | serve | worker: the long-running processes."""

from __future__ import annotations

import asyncio

import click

from deployq.cli.common import CliState, config_option, open_store, pass_state, run, setup_logging
from deployq.db import set_application_name
from deployq.embedded_registry import with_registry
from deployq.service import components_for, run_components


def _serve(state: CliState, *, web: bool, worker: bool) -> None:
    settings = state.settings
    setup_logging(settings)
    set_application_name("up" if web and worker else "serve" if web else "worker")

    async def main() -> None:
        nonlocal settings
        if worker:  # workers push: to DEPLOYQ_REGISTRY_URL, or else the embedded registry
            settings = await asyncio.to_thread(with_registry, settings)
        store = await open_store(settings)
        try:
            await run_components(components_for(store, web=web, worker=worker), store)
        finally:
            await store.close()

    run(main())


@click.command("up")
@config_option
@pass_state
def up_cmd(state: CliState) -> None:
    """All in one: migrate, web service and worker pool (embedded PostgreSQL unless
    DEPLOYQ_DATABASE_URL is set, embedded registry unless DEPLOYQ_REGISTRY_URL is set).
    Ctrl-C stops gracefully."""
    _serve(state, web=True, worker=True)


@click.command("serve")
@config_option
@pass_state
def serve_cmd(state: CliState) -> None:
    """The web service only: webhooks, REST API, health and metrics."""
    _serve(state, web=True, worker=False)


@click.command("worker")
@config_option
@pass_state
def worker_cmd(state: CliState) -> None:
    """The worker pool only: claims jobs and builds them (run several, on several hosts)."""
    _serve(state, web=False, worker=True)


def register(main: click.Group) -> None:
    main.add_command(up_cmd)
    main.add_command(serve_cmd)
    main.add_command(worker_cmd)
