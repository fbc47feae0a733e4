"""``deployq doctor``: check that this host can run deployq, and say how to fix what cannot.

Each check returns a :class:`Check`. A failed check makes doctor exit non-zero; a skipped one
(the feature is not configured, or an earlier check failed) does not, nor does a warning
(deployq works, with less: e.g. no scan results). Checks never print a
secret: database errors name host, port and database only; registry and SMTP errors never
repeat the password.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import ssl
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiosmtplib

from deployq.builders import (
    DEBIAN_DOCKER_CLI,
    BuildKitBuilder,
    EngineTLS,
    SshWrapper,
    make_builder,
)
from deployq.builders.engine import api_client
from deployq.builders.tls import server_tls, tls_problem
from deployq.config import DEFAULT_DOCKER_HOST, BuildBackend, Settings, SmtpTls, load_settings
from deployq.db import connect, describe_dsn, resolve_dsn
from deployq.db.migrate import pending_migrations
from deployq.durations import setting
from deployq.embedded_registry import registry_dir, with_registry
from deployq.errors import ConfigError, DeployqError, RegistryError
from deployq.hostid import host_id
from deployq.registry import HarborError, RegistryClient, harbor_admin
from deployq.store import Store

__all__ = ["Check", "check_harbor_scanner", "check_registry", "check_smtp", "run_checks"]

#: seconds each network check may take (engine, registry, SMTP)
CHECK_TIMEOUT_S = 10.0
#: the first docker engine release with BuildKit
BUILDKIT_MIN_ENGINE = (18, 9)


@dataclass(frozen=True)
class Check:
    """The outcome of one check: ``ok`` False means broken; ``skipped`` checks are neutral;
    a ``warning`` is ok (nothing fails) but worth the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False
    warning: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _this_host(settings: Settings) -> str | None:
    try:
        return host_id(settings)
    except ConfigError:
        return None


def _skip(name: str, detail: str) -> Check:
    return Check(name, True, detail, skipped=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def run_checks(
    config_file: Path | None = None, *, settings: Settings | None = None
) -> list[Check]:
    """Every check, in order; stops after the configuration when it is invalid."""
    if settings is None:
        try:
            settings = load_settings(config_file)
        except ConfigError as exc:
            return [
                Check(
                    "configuration",
                    False,
                    exc.message,
                    "correct the setting named above in /etc/deployq/deployq.env, the "
                    "environment or the --config file (systemd/deployq.env.example lists all)",
                )
            ]
    where = f"from {config_file}" if config_file else "from the environment"
    checks = [Check("configuration", True, f"settings valid ({where})")]
    db_checks, servers = await _database_checks(settings)
    checks += db_checks
    checks += await asyncio.gather(*(_check_engine(settings, *server) for server in servers))
    checks.append(await _check_buildkit_cli(settings))
    checks.append(await _check_registry_in_use(settings))
    checks.append(await check_harbor_scanner(settings))
    checks.append(await check_smtp(settings))
    checks.append(_check_disk(settings))
    checks.append(_check_workspace(settings))
    checks.append(_check_git_known_hosts(settings))
    return checks


# -- database ---------------------------------------------------------------------------------


#: a build server doctor checks: name, docker host, TLS files (None without TLS), the host
#: that owns it (a unix:// engine; None: any host)
_Engine = tuple[str, str, EngineTLS | None, str | None]


async def _database_checks(settings: Settings) -> tuple[list[Check], list[_Engine]]:
    """Database and migrations, plus the build servers to check."""
    # with no server registered, the first worker registers this engine as `local`
    local: list[_Engine] = [("(default)", settings.local_docker_host, None, None)]
    try:
        dsn = await asyncio.to_thread(resolve_dsn, settings)
        conn = await connect(dsn, timeout_s=settings.db_connect_timeout)
    except DeployqError as exc:
        fix = (
            "start PostgreSQL there, or correct DEPLOYQ_DATABASE_URL"
            if settings.database_url is not None
            else f"check that {settings.data_dir} is writable (embedded PostgreSQL), or set "
            "DEPLOYQ_DATABASE_URL"
        )
        return [
            Check("database", False, exc.message, fix),
            _skip("migrations", "skipped: the database is unreachable"),
        ], local
    # the server reports its version when the connection starts: no query needed
    version = conn.info.parameter_status("server_version") or "?"
    await conn.close()
    embedded = " (embedded)" if settings.database_url is None else ""
    checks = [Check("database", True, f"PostgreSQL {version} at {describe_dsn(dsn)}{embedded}")]
    try:
        pending = await pending_migrations(dsn)
    except DeployqError as exc:
        checks.append(Check("migrations", False, exc.message, "run `deployq migrate`"))
        return checks, local
    if pending:
        checks.append(
            Check(
                "migrations",
                False,
                f"{len(pending)} not applied: {', '.join(pending)}",
                "run `deployq migrate` (serve, worker and up also migrate when they start)",
            )
        )
        return checks, local
    checks.append(Check("migrations", True, "schema is up to date"))
    return checks, await _registered_servers(settings, dsn) or local


async def _registered_servers(settings: Settings, dsn: str) -> list[_Engine]:

    try:
        store = await Store.open(settings, dsn, min_size=1)
    except DeployqError:
        return []
    try:
        return [
            (s.name, s.docker_host, server_tls(s), s.host_id) for s in await store.servers.all()
        ]
    finally:
        await store.close()


# -- build servers ----------------------------------------------------------------------------


def _engine_version(docker_host: str, tls: EngineTLS | None) -> dict[str, Any]:
    import docker
    import requests

    def failed(exc: BaseException) -> ConnectionError:
        return ConnectionError(tls_problem(str(exc), tls) or _first_line(exc))

    try:
        client = api_client(docker_host, timeout=int(CHECK_TIMEOUT_S), tls=tls)
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise failed(exc) from exc
    except DeployqError as exc:
        raise ConnectionError(exc.message) from exc
    try:
        result: dict[str, Any] = client.version()
        return result
    except (docker.errors.DockerException, requests.RequestException, OSError) as exc:
        raise failed(exc) from exc
    finally:
        client.close()


def _parse_version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


async def _check_ssh_engine(settings: Settings, name: str, docker_host: str) -> Check:
    """The way workers reach ssh:// engines: the docker CLI through the strict ssh wrapper."""
    wrapper = SshWrapper(settings.ssh_known_hosts, settings.ssh_key)
    cli = settings.docker_cli or shutil.which("docker") or DEBIAN_DOCKER_CLI
    try:
        info = await BuildKitBuilder(docker_host, cli, ssh=wrapper).ping()
    except DeployqError as exc:
        return Check(
            f"engine {name}",
            False,
            exc.message,
            "check DEPLOYQ_SSH_KNOWN_HOSTS and DEPLOYQ_SSH_KEY, that the remote user may use "
            "docker there, or correct the server's --docker-host",
        )
    finally:
        wrapper.close()
    return Check(
        f"engine {name}",
        True,
        f"{docker_host}: Docker {info.version} ({info.arch}), host key checked against "
        f"{wrapper.known_hosts}",
    )


async def _check_engine(
    settings: Settings,
    name: str,
    docker_host: str,
    tls: EngineTLS | None = None,
    owner: str | None = None,
) -> Check:
    label = f"engine {name}"
    if owner is not None and owner != _this_host(settings):
        # its socket path here is this host's engine, not that one
        return _skip(label, f"{docker_host} is host {owner}'s engine: run `deployq doctor` there")
    if docker_host.startswith("ssh://"):
        return await _check_ssh_engine(settings, name, docker_host)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S + 1):
            version = await asyncio.to_thread(_engine_version, docker_host, tls)
    except TimeoutError:
        reason = f"no answer within {setting(CHECK_TIMEOUT_S)}"
    except ConnectionError as exc:
        reason = str(exc)
    else:
        engine = str(version.get("Version", "?"))
        detail = f"{docker_host}: Docker {engine}, API {version.get('ApiVersion', '?')}"
        if _parse_version(engine) < BUILDKIT_MIN_ENGINE:
            return Check(
                label,
                False,
                f"{detail}, too old for BuildKit (needs 18.09 or newer)",
                "upgrade Docker on that host",
            )
        return Check(label, True, f"{detail}, BuildKit-capable")
    if reason.startswith("TLS: "):
        return Check(
            label,
            False,
            f"{docker_host} refused: {reason}",
            f"remove the server (`deployq server rm {name}`) and add it again with the "
            "right --tls-ca, --tls-cert and --tls-key",
        )
    return Check(
        label,
        False,
        f"{docker_host} does not answer: {reason}",
        "start dockerd there and check that the deployq user may use it (docker group, "
        "ssh key for ssh://), or correct the server's --docker-host",
    )


async def _check_buildkit_cli(settings: Settings) -> Check:

    if settings.build_backend is BuildBackend.ENGINE:
        return _skip("buildkit", "skipped: DEPLOYQ_BUILD_BACKEND=engine builds with the Engine API")
    try:
        builder = await asyncio.to_thread(
            make_builder,
            DEFAULT_DOCKER_HOST,
            settings.build_backend,
            docker_cli=settings.docker_cli,
        )
    except ConfigError as exc:
        return Check("buildkit", False, exc.message, "install a docker CLI that has BuildKit")
    if isinstance(builder, BuildKitBuilder):
        return Check("buildkit", True, f"builds run `{builder.docker_cli} build` with BuildKit")
    found = settings.docker_cli or "no docker CLI on PATH or at /usr/bin/docker"
    return Check(
        "buildkit",
        False,
        f"{found} cannot build with BuildKit; builds fall back to the Engine API "
        "(no build secrets, no cache mounts)",
        "install Debian's docker.io (its /usr/bin/docker has BuildKit) or docker's buildx "
        "plugin, or set DEPLOYQ_DOCKER_CLI; or set DEPLOYQ_BUILD_BACKEND=engine",
    )


# -- registry ---------------------------------------------------------------------------------


async def _check_registry_in_use(settings: Settings) -> Check:
    """DEPLOYQ_REGISTRY_URL's registry, or else the embedded one (started if it is down)."""
    if settings.registry_url:
        return await check_registry(settings)
    where = registry_dir(settings.data_dir)
    try:
        embedded = await asyncio.to_thread(with_registry, settings)
    except DeployqError as exc:
        return Check(
            "registry",
            False,
            f"the embedded registry in {where} cannot run: {exc.message}",
            "install Debian's docker-registry (scripts/provision does), or set "
            "DEPLOYQ_REGISTRY_URL to your registry",
        )
    check = await check_registry(embedded)
    if not check.ok:
        return Check(
            check.name,
            False,
            f"embedded registry: {check.detail}",
            f"see {where / 'registry.log'}; remove {where} to make a new one (its images are "
            "lost), or set DEPLOYQ_REGISTRY_URL",
        )
    return Check(check.name, True, f"embedded registry in {where}: {check.detail}")


async def check_registry(settings: Settings) -> Check:
    """Log in to DEPLOYQ_REGISTRY_URL with the worker's client (``/v2/``, Basic or Bearer)."""
    name = "registry"
    if not settings.registry_url:
        return _skip(name, "skipped: DEPLOYQ_REGISTRY_URL is not set (images are not pushed)")
    client = RegistryClient.from_settings(settings, timeout_s=CHECK_TIMEOUT_S)
    user = settings.registry_username
    who = f"as {user}" if user else "anonymously"
    try:
        status = await client.login()
    except RegistryError as exc:
        return Check(
            name,
            False,
            exc.message,
            "check DEPLOYQ_REGISTRY_URL (and DEPLOYQ_REGISTRY_INSECURE for a plain-HTTP "
            "registry on loopback)",
        )
    if status == 200:
        return Check(name, True, f"logged in to {client.url} {who}")
    if status == 401:
        fix_login = (
            "check DEPLOYQ_REGISTRY_USERNAME and DEPLOYQ_REGISTRY_PASSWORD (for Harbor: the "
            "robot account's full name, e.g. robot$deployq, and its secret)"
            if user
            else "set DEPLOYQ_REGISTRY_USERNAME and DEPLOYQ_REGISTRY_PASSWORD"
        )
        return Check(name, False, f"{client.url} refused the login {who} (401)", fix_login)
    return Check(
        name,
        False,
        f"{client.url}/v2/ answered {status}: not an OCI registry",
        "check DEPLOYQ_REGISTRY_URL: it names the registry host, e.g. harbor.example.com",
    )


async def check_harbor_scanner(settings: Settings) -> Check:
    """With Harbor scans on, DEPLOYQ_REGISTRY_PROJECT has a scanner. Without one every job's
    scan says ``scan unavailable``: a warning, builds and deploys still work."""
    name = "harbor scanner"
    if not (settings.harbor_api and settings.harbor_scan):
        return _skip(
            name, "skipped: Harbor scans are off (DEPLOYQ_HARBOR_API, DEPLOYQ_HARBOR_SCAN)"
        )
    project = settings.registry_project
    try:
        scanner = await harbor_admin(settings).project_scanner(project)
    except ConfigError as exc:
        return Check(name, True, exc.message, "set DEPLOYQ_REGISTRY_URL", warning=True)
    except HarborError as exc:
        if exc.status == 404:
            return _skip(name, f"skipped: Harbor has no project {project} yet (made on first push)")
        return Check(
            name,
            True,
            f"cannot tell whether Harbor project {project} has a scanner: {exc.message}",
            "set DEPLOYQ_HARBOR_ADMIN_USERNAME and _PASSWORD to a login that may read the "
            "project's scanner (a project administrator)",
            warning=True,
        )
    if scanner is None:
        return Check(
            name,
            True,
            f"Harbor project {project} has no scanner: scan results will be 'scan unavailable'",
            "a Harbor administrator adds one (Interrogation Services) and sets it for the "
            "project, or turn scans off (DEPLOYQ_HARBOR_SCAN=false)",
            warning=True,
        )
    return Check(name, True, f"Harbor project {project} scans with {scanner.get('name', '?')}")


# -- SMTP -------------------------------------------------------------------------------------


async def check_smtp(settings: Settings) -> Check:
    """Connect to DEPLOYQ_SMTP_HOST (TLS as configured) and log in when a username is set."""
    name = "smtp"
    if not settings.smtp_host:
        return _skip(name, "skipped: DEPLOYQ_SMTP_HOST is not set (no email is sent)")
    where = f"{settings.smtp_host}:{settings.smtp_port}"
    client = aiosmtplib.SMTP(
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        use_tls=settings.smtp_tls is SmtpTls.TLS,
        start_tls=settings.smtp_tls is SmtpTls.STARTTLS,
        validate_certs=settings.smtp_verify_tls,
        cert_bundle=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
        timeout=min(settings.smtp_timeout, CHECK_TIMEOUT_S),
    )
    step = "connect"
    try:
        await client.connect()
        if settings.smtp_username:
            step = "login"
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            await client.login(settings.smtp_username, password)
        await client.quit()
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
        client.close()
        if step == "login":
            return Check(
                name,
                False,
                f"{where} refused the login as {settings.smtp_username}: {_first_line(exc)}",
                "check DEPLOYQ_SMTP_USERNAME and DEPLOYQ_SMTP_PASSWORD",
            )
        return Check(
            name,
            False,
            f"cannot connect to {where} ({settings.smtp_tls.value}): {_first_line(exc)}",
            "check DEPLOYQ_SMTP_HOST, DEPLOYQ_SMTP_PORT and DEPLOYQ_SMTP_TLS (starttls is "
            "usually port 587, tls port 465)",
        )
    login = f", logged in as {settings.smtp_username}" if settings.smtp_username else ""
    return Check(name, True, f"{where} answers ({settings.smtp_tls.value}){login}")


# -- local disk -------------------------------------------------------------------------------


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_disk(settings: Settings) -> Check:
    name = "disk"
    probe = _existing_parent(settings.data_dir)
    try:
        free_mb = shutil.disk_usage(probe).free // (1024 * 1024)
    except OSError as exc:
        return Check(
            name,
            False,
            f"cannot read the free space of {probe}: {exc.strerror}",
            "check DEPLOYQ_DATA_DIR",
        )
    detail = f"{free_mb} MB free in {probe} (minimum {settings.min_free_disk_mb} MB)"
    if free_mb < settings.min_free_disk_mb:
        return Check(
            name,
            False,
            detail,
            "free some space (old workspaces, `docker system prune`) or lower "
            "DEPLOYQ_MIN_FREE_DISK_MB; workers claim no job below the minimum",
        )
    return Check(name, True, detail)


def _check_workspace(settings: Settings) -> Check:
    name = "workspace"
    path = settings.workspaces_dir
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            name,
            False,
            f"{path} is not writable: {exc.strerror}",
            f"let the user running deployq write there (e.g. chown -R deployq: "
            f"{settings.data_dir}), or set DEPLOYQ_DATA_DIR",
        )
    return Check(name, True, f"{path} is writable")


def _check_git_known_hosts(settings: Settings) -> Check:
    """The known_hosts file ssh repositories are checked against (strictly) can be read and
    holds host keys: without them every ssh clone is refused."""
    name = "git known_hosts"
    path = settings.git_known_hosts or settings.ssh_known_hosts
    if path is None:
        return _skip(name, "ssh repositories are checked against ssh's own ~/.ssh/known_hosts")
    setting = "DEPLOYQ_GIT_KNOWN_HOSTS" if settings.git_known_hosts else "DEPLOYQ_SSH_KNOWN_HOSTS"
    fix = (
        f"add the forges' host keys after checking their fingerprints (`ssh-keyscan HOST >> "
        f"{path}`), or fix {setting}"
    )
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        return Check(name, False, f"{path} ({setting}) cannot be read: {reason}", fix)
    keys = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        return Check(name, False, f"{path} ({setting}) holds no host key: ssh clones fail", fix)
    return Check(name, True, f"{len(keys)} host key(s) in {path} ({setting})")
