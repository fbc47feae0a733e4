"""Settings: DEPLOYQ_* environment variables and an optional TOML file.

Precedence (highest first): explicit overrides, environment, the TOML file (``--config`` or
DEPLOYQ_CONFIG), defaults. Durations accept seconds or a suffix: ``90``, ``90s``, ``5m``, ``2h``,
``30d``. Secrets are :class:`SecretStr` and print as ``**********``.
"""

from __future__ import annotations

import os
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from deployq.durations import parse_duration
from deployq.errors import ConfigError

#: an image reference whose only placeholder is {version}
_IMAGE_TEMPLATE = re.compile(r"^(?:[A-Za-z0-9._/:@-]|\{version\})+$")

ENV_PREFIX = "DEPLOYQ_"
#: what DEPLOYQ_HOST_ID may be (deployq.hostid)
HOST_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
#: the local engine's socket: where the docker CLI looks when DOCKER_HOST is unset
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


def _seconds(value: Any) -> Any:
    """``"5m"`` -> ``300.0``; anything but a string is left to pydantic."""
    return parse_duration(value) if isinstance(value, str) else value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(gt=0)]


def _empty_is_unset(value: object) -> object:
    """``DEPLOYQ_X=`` (an env file's empty example line) means unset, not the empty string."""
    return None if value == "" else value


class SmtpTls(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class BuildBackend(StrEnum):
    AUTO = "auto"
    BUILDKIT = "buildkit"
    ENGINE = "engine"


class Settings(BaseSettings):
    """Every setting of deployq. Each field is DEPLOYQ_<NAME> in the environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, frozen=True
    )

    # -- database -------------------------------------------------------------------------
    database_url: SecretStr | None = None
    """PostgreSQL DSN. Unset: an embedded PostgreSQL in <data_dir>/pgdata, shared by every
    deployq process on this host."""
    db_pool_min: int = Field(2, ge=1)
    db_pool_max: int = Field(10, ge=1)
    db_connect_timeout: Seconds = 10.0

    data_dir: Path = Path(platformdirs.user_data_dir("deployq"))
    """Embedded database, workspaces, webhook spool."""
    host_id: Annotated[str | None, BeforeValidator(_empty_is_unset)] = Field(
        None, pattern=HOST_ID_PATTERN
    )
    """This host's id: its unix:// build servers are claimed only by its workers, and each
    host's view of a server's health is kept apart. Unset: <data_dir>/host-id, made once from
    the host name and /etc/machine-id. Set it to run several "hosts" on one machine."""
    secret_key: SecretStr | None = None
    """Fernet key(s) sealing the secrets in the database, comma-separated, newest first.
    Unset: <data_dir>/secret.key, generated at first use (mode 0600). docs/secrets.md."""

    # -- web service ----------------------------------------------------------------------
    listen: str = "127.0.0.1:8080"
    public_url: str | None = None
    """Base URL used in links (emails, API); default http://<listen>."""
    github_webhook_secret: SecretStr | None = None
    """Global secret for GitHub webhooks, used when an app has none of its own."""
    gitlab_webhook_token: SecretStr | None = None
    """Global token for GitLab webhooks, used when an app has none of its own."""
    github_api_url: str = "https://api.github.com"
    """GitHub's REST API, for commit statuses; GitHub Enterprise: https://HOST/api/v3."""
    gitlab_url: str | None = None
    """GitLab's base URL, for commit statuses; unset: https://<the repository's host>."""
    webhook_max_body_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    """Largest request body accepted (413 beyond it, counted while it streams)."""
    body_memory_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Request bodies held in memory at once, all requests together; a request that would
    pass it gets 503 with Retry-After."""
    unknown_repo_status: int = Field(202)
    """202 (acknowledge and ignore, so the forge keeps the hook) or 404."""
    feed_buffer: int = Field(1000, ge=1, le=1_000_000)
    """Events a client of the live feed (/api/v1/events, deployq watch) may fall behind
    before it is dropped, so a client that stops reading never slows the others."""

    # -- registry -------------------------------------------------------------------------
    registry_url: str = ""
    """Registry host[:port] or URL, e.g. harbor.example.com or http://127.0.0.1:5000."""
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    registry_insecure: bool = False
    """Talk plain HTTP to the registry (loopback test registries)."""
    registry_project: str = "deployq"
    """Harbor project (first path component) for apps whose image has none."""
    harbor_api: bool = False
    """Use Harbor's REST API: create missing projects, scan pushed images."""
    harbor_scan: bool = False
    harbor_url: str | None = None
    """Base URL of Harbor's REST API when it is not registry_url's host (default: the same)."""
    harbor_scan_poll: Seconds = 5.0
    """First look at a requested scan after this; then doubling, at most a minute apart."""
    harbor_scan_deadline: Seconds = 3600.0
    """No scan result this long after the request: it is recorded unavailable."""
    harbor_scan_wait: Seconds = 600.0
    """How long a job whose app has a scan policy waits for the scan (docs/harbor.md)."""
    harbor_admin_username: str | None = None
    """Harbor login of ``deployq harbor robot create`` (default: the registry login)."""
    harbor_admin_password: SecretStr | None = None
    registry_keep_tags: int = Field(10, ge=1, le=100_000)
    """`deployq prune` keeps this many image tags (<sha7>) per branch of each app; older ones
    are deleted from the registry, never one a release runs or keeps for rollback."""

    # -- builds ---------------------------------------------------------------------------
    worker_concurrency: int = Field(4, ge=1, le=256)
    build_backend: BuildBackend = BuildBackend.AUTO
    build_timeout: Seconds = 1800.0
    max_attempts: int = Field(3, ge=1, le=100)
    max_queued: int | None = Field(None, ge=1)
    """At most this many queued jobs in all; a new one beyond is refused (HTTP 429/503)."""
    lease_ttl: Seconds = 30.0
    rescue_stop_timeout: Seconds = 120.0
    """How long the rescue of a dead worker's job waits for the engine to stop the attempt's
    build before it drains the build server (worker.rescue)."""
    retry_base_delay: Seconds = 30.0
    retry_factor: float = Field(2.0, ge=1.0)
    retry_max_delay: Seconds = 600.0
    shutdown_grace: Seconds = 60.0
    poll_interval: Seconds = 5.0
    min_free_disk_mb: int = Field(1024, ge=0)
    keep_failed_workspaces: bool = False
    cache_prefetch: Annotated[bool | None, BeforeValidator(_empty_is_unset)] = None
    """After a push, pull the pushed images onto the other build servers in the background
    (docs/cache.md); unset: on when there is more than one build server."""
    git_token: SecretStr | None = None
    """Token for private HTTPS repositories (sent as the password, never logged); an app's
    own (``app credentials``) wins."""
    git_token_hosts: str | None = None
    """Comma-separated hosts (``host`` or ``host:port``) the git token is sent to; default:
    the host of the repository being fetched. Other hosts never see it."""
    git_ssh_key: Path | None = None
    """SSH key for private ssh:// repositories; an app's own (``app credentials``) wins."""
    git_known_hosts: Path | None = None
    """known_hosts file the host keys of ssh:// repositories are checked against (strictly);
    default: ssh_known_hosts, else ssh's own (~/.ssh/known_hosts)."""
    ssh_known_hosts: Path | None = None
    """known_hosts file that ssh:// build servers' host keys are checked against (strictly:
    an unknown or changed key refuses the engine)."""
    ssh_key: Path | None = None
    """Private key for ssh:// build servers; default: ssh's own (~/.ssh/id_*)."""
    docker_host: str | None = None
    """Engine of the `local` build server registered on first start; default: DOCKER_HOST
    or the local socket (see :attr:`local_docker_host`)."""
    docker_cli: str | None = None
    """docker CLI of the buildkit backend; default: the first of PATH's `docker` and
    /usr/bin/docker that can build with BuildKit."""
    # Base images of generated Dockerfiles (zero-config builds, docs/zero-config.md).
    # `{version}` is replaced by the version family the plan chose (3.12, 22, 1.23, ...),
    # so an offline site can name its own registry: registry.local/python:{version}-slim.
    base_image_python: str = "python:{version}-slim"
    """Build and runtime stage of Python apps."""
    base_image_node: str = "node:{version}-slim"
    """Build and runtime stage of Node.js apps (npm, yarn, pnpm)."""
    base_image_bun: str = "oven/bun:{version}-slim"
    """Build and runtime stage of Node.js apps whose package manager is bun."""
    base_image_go: str = "golang:{version}"
    """Build stage of Go apps."""
    base_image_go_runtime: str = "gcr.io/distroless/static-debian12"
    """Runtime stage of Go apps (holds only the binary)."""
    base_image_static: str = "busybox:stable"
    """Static sites and single-page apps are served by this image's `busybox httpd`."""
    base_image_php: str = "php:{version}-cli"
    """Build and runtime stage of PHP apps."""
    base_image_composer: str = "composer:2"
    """Image whose /usr/bin/composer is copied into PHP build stages ("" = the PHP image has
    composer)."""
    base_image_ruby: str = "ruby:{version}-slim"
    """Build and runtime stage of Ruby apps."""

    # -- notifications --------------------------------------------------------------------
    smtp_host: str | None = None
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "deployq@localhost"
    smtp_tls: SmtpTls = SmtpTls.NONE
    smtp_timeout: Seconds = 30.0
    smtp_verify_tls: bool = True
    notify_max_attempts: int = Field(8, ge=1)
    smtp_ca_file: Path | None = None
    """CA bundle that signs the SMTP server's certificate (default: the system's)."""
    notify_retry_base_delay: Seconds = 5.0
    """First delay before a failed notification is sent again; doubles each attempt."""
    notify_retry_max_delay: Seconds = 600.0
    notify_concurrency: int = Field(4, ge=1, le=64)
    """Notifications sent at once by one notifier."""
    notify_webhook_timeout: Seconds = 10.0

    # -- operations -----------------------------------------------------------------------
    retention: Seconds = 30 * 86400.0
    """Finished jobs' logs, events and sent notifications are deleted after this (the job
    rows stay)."""
    delivery_body_retention: Seconds = 14 * 86400.0
    """Webhook delivery bodies (kept for replay, up to 25 MiB each) are dropped after this;
    the delivery's row stays."""
    log_level: str = "INFO"
    tui_keys: dict[str, str] = Field(default_factory=dict)
    """Key remapping for the console: binding id -> keys, e.g. {"cancel": "x"}."""

    @field_validator("unknown_repo_status")
    @classmethod
    def _known_status(cls, value: int) -> int:
        if value not in (202, 404):
            raise ValueError("must be 202 or 404")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not (port.isascii() and port.isdigit()) or int(port) > 65535:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
        return value

    @field_validator(
        "base_image_python",
        "base_image_node",
        "base_image_bun",
        "base_image_go",
        "base_image_go_runtime",
        "base_image_static",
        "base_image_php",
        "base_image_ruby",
    )
    @classmethod
    def _image_name(cls, value: str) -> str:
        if not _IMAGE_TEMPLATE.match(value):
            raise ValueError(
                "expected an image name, e.g. registry.local/python:{version}-slim "
                "({version} is the only placeholder)"
            )
        return value

    @field_validator("base_image_composer")
    @classmethod
    def _composer_image(cls, value: str) -> str:
        return cls._image_name(value) if value else value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @property
    def listen_host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.listen}").rstrip("/")

    @property
    def workspaces_dir(self) -> Path:
        return self.data_dir / "workspaces"

    @property
    def secret_key_file(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def local_docker_host(self) -> str:
        """The `local` build server's engine: this setting, else DOCKER_HOST (docker's own
        convention, honoured like the docker CLI does), else :data:`DEFAULT_DOCKER_HOST`."""
        return self.docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("toml_file"):
            sources.append(TomlConfigSettingsSource(settings_cls))
        return tuple(sources)


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Read the settings; raise :class:`ConfigError` naming each bad setting and value."""
    path = config_file or (Path(p) if (p := os.environ.get(f"{ENV_PREFIX}CONFIG")) else None)
    cls: type[Settings] = Settings
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")

        class FileSettings(Settings):
            model_config = SettingsConfigDict(toml_file=path)

        cls = FileSettings
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from exc
    except ValueError as exc:  # e.g. a TOML syntax error
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc


def describe_validation_error(exc: ValidationError) -> str:
    """One line per bad setting: ``DEPLOYQ_LEASE_TTL='abc': expected ...``."""
    lines = []
    for error in exc.errors():
        name = ENV_PREFIX + "_".join(str(part) for part in error["loc"]).upper()
        value = error.get("input")
        shown = "(missing)" if error["type"] == "missing" else repr(value)
        if error["type"] == "extra_forbidden":
            lines.append(f"{name}: unknown setting")
            continue
        lines.append(f"{name}={shown}: {error['msg']}")
    return "invalid configuration: " + "; ".join(lines)
