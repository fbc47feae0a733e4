"""What every command shares: --config/--json, settings, the store, errors as one line."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import sys
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click
from pydantic import BaseModel

from deployq.config import Settings, load_settings
from deployq.db.migrate import migrate
from deployq.durations import parse_duration
from deployq.errors import DeployqError
from deployq.models import App, Job
from deployq.redact import public_app, redact_urls
from deployq.store import Store

P = ParamSpec("P")
T = TypeVar("T")

# platformdirs warns when XDG_RUNTIME_DIR is unset (ssh sessions, systemd services); harmless
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


class CliState:
    """Per-invocation state: the config file, the JSON flag, the settings (read once)."""

    def __init__(self) -> None:
        self.config_file: Path | None = None
        self.json = False
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_file)
        return self._settings


pass_state = click.make_pass_decorator(CliState, ensure=True)


def _set_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.ensure_object(CliState).config_file = value


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(CliState).json = True


config_option = click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    expose_value=False,
    is_eager=True,
    callback=_set_config,
    help="TOML configuration file (default: DEPLOYQ_CONFIG, then environment only).",
)
json_option = click.option(
    "--json",
    "json_",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Print JSON instead of text.",
)


def common_options(func: Callable[P, T]) -> Callable[P, T]:
    """--config and --json on a command."""
    return config_option(json_option(func))


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("pgserver", "psycopg.pool", "aiohttp.access", "docker", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; a DeployqError becomes one line on stderr and exit status 1."""
    try:
        return asyncio.run(coro)
    except DeployqError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


async def open_store(settings: Settings, *, migrate_first: bool = True) -> Store:
    """The store, after bringing the schema up to date (a no-op when it is)."""
    from deployq.db import resolve_dsn

    dsn = await asyncio.to_thread(resolve_dsn, settings)
    applied = await migrate(dsn) if migrate_first else []
    store = await Store.open(settings, dsn)
    if applied:
        await store.secrets.seal_plaintext()  # secrets an upgrade moved, right away
    return store


async def migrate_and_seal(settings: Settings, dsn: str) -> list[str]:
    """``migrate``, then seal the secrets a migration moved (docs/secrets.md)."""
    applied = await migrate(dsn)
    if applied:
        store = await Store.open(settings, dsn, min_size=1)
        try:
            await store.secrets.seal_plaintext()
        finally:
            await store.close()
    return applied


def with_store(
    func: Callable[..., Awaitable[T]],
) -> Callable[..., T]:
    """Decorate ``async def cmd(state, store, **params)`` into a click callback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        state = click.get_current_context().ensure_object(CliState)

        async def main() -> T:
            store = await open_store(state.settings)
            try:
                return await func(state, store, *args, **kwargs)
            finally:
                await store.close()

        try:
            return run(main())
        except DeployqError as exc:  # settings errors raised before the loop starts
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(1)

    return wrapper


def emit(state: CliState, data: Any, text: Callable[[], str] | str) -> None:
    """Print ``data`` as JSON with --json, else the text rendering."""
    if state.json:
        click.echo(json.dumps(to_jsonable(data), indent=2, default=str))
    else:
        click.echo(text() if callable(text) else text)


def to_jsonable(data: Any) -> Any:
    """JSON-ready data; apps and jobs with their secrets masked (deployq.redact)."""
    if isinstance(data, App):
        return public_app(data)
    if isinstance(data, Job):
        return {**data.model_dump(mode="json"), "repo_url": redact_urls(data.repo_url)}
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list | tuple):
        return [to_jsonable(d) for d in data]
    if isinstance(data, dict):
        return {k: to_jsonable(v) for k, v in data.items()}
    return data


if TYPE_CHECKING:  # generic for type checkers only (older click's is not subscriptable)
    _ParamType = click.ParamType[float, Any]
else:
    _ParamType = click.ParamType


class DurationType(_ParamType):
    """A duration option: seconds or ``90s``, ``5m``, ``2h``, ``30d`` (as settings take them)."""

    name = "duration"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)


DURATION = DurationType()
#: a column never shrinks below this many characters (header permitting)
MIN_COLUMN_CHARS = 4
COLUMN_GAP = "  "


def terminal_width() -> int | None:
    """Columns to fit tables in: the terminal's (or $COLUMNS); None when output is piped and
    COLUMNS is unset (scripts get whole cells)."""
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        return None
    return shutil.get_terminal_size().columns


def table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], *, width: int | None = None
) -> str:
    """An aligned table that fits ``width`` columns (default: the terminal's): the widest
    columns shrink first and a cut cell ends in ``…``."""
    cells = [[str(h) for h in headers]] + [
        ["" if c is None else str(c).replace("\n", " ") for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    fit = width if width is not None else terminal_width()
    if fit is not None:
        widths = _shrink(
            widths, [len(h) for h in headers], fit - len(COLUMN_GAP) * (len(widths) - 1)
        )
    lines = [
        COLUMN_GAP.join(_cut(c, w).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def _shrink(widths: list[int], headers: list[int], room: int) -> list[int]:
    """Take one character at a time from the widest column that can still give one."""
    widths = list(widths)
    floors = [min(w, max(h, MIN_COLUMN_CHARS)) for w, h in zip(widths, headers, strict=True)]
    while sum(widths) > room:
        candidates = [i for i, w in enumerate(widths) if w > floors[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: widths[i])
        widths[widest] -= 1
    return widths


def _cut(cell: str, width: int) -> str:
    return cell if len(cell) <= width else cell[: width - 1] + "…"
