"""A PostgreSQL primary and a streaming standby on loopback, made from the embedded server's
own binaries (pgserver ships initdb, pg_ctl and pg_basebackup): the failover test's cluster.

``start_pair(root)`` runs ``initdb`` (wal_level replica, a ``replicator`` role with its own
pg_hba line), starts the primary, clones it with ``pg_basebackup -R`` (which writes
``standby.signal`` and ``primary_conninfo``), starts the standby and then makes replication
synchronous, so every commit a client saw is on the standby too and a promotion loses
nothing. ``pair.stop_primary()`` is an immediate shutdown, ``pair.promote()`` ``pg_ctl
promote``. As root, every command runs as the ``pgserver`` user (PostgreSQL refuses root),
the one pgserver itself creates.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deployq.db.named_sql import load
from deployq.testing.services import ServiceError, free_port

#: the statements this module runs (``testing/queries/replication.sql``)
QUERIES = load("deployq.testing")
REPLICATION_USER = "replicator"
SUPERUSER = "postgres"
PG_CTL_TIMEOUT_S = 120


def named(name: str) -> str:
    """The text of this module's query called ``name``."""
    return QUERIES[name]


def _bin(name: str) -> str:
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)


def _owner() -> str | None:
    """The user PostgreSQL runs as: ``pgserver`` as root, else whoever we are."""
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists

    ensure_user_exists("pgserver")
    return "pgserver"


@dataclass
class Node:
    """One server: its data directory and loopback port."""

    pgdata: Path
    port: int

    @property
    def log(self) -> Path:
        return self.pgdata.parent / f"{self.pgdata.name}.log"

    def dsn(self, dbname: str = "postgres", user: str = SUPERUSER) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"


@dataclass
class PostgresPair:
    """A primary and its synchronous streaming standby."""

    root: Path
    primary: Node
    standby: Node
    user: str | None

    def dsn(self, dbname: str, *, user: str = SUPERUSER, password: str | None = None) -> str:
        """Both servers, the writable one chosen by libpq (``target_session_attrs``)."""
        auth = f"{user}:{password}" if password else user
        return (
            f"postgresql://{auth}@127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
            f"/{dbname}?target_session_attrs=read-write"
        )

    def run(self, *args: str, timeout_s: float = PG_CTL_TIMEOUT_S) -> str:
        """A PostgreSQL binary as the server's user; its output (pg_ctl's goes to a file: the
        postmaster it starts would hold a pipe open)."""
        out_path = self.root / "commands.out"
        with out_path.open("ab") as out:
            start = out.tell()
            done = subprocess.run(
                [_bin(args[0]), *args[1:]],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=self.user,
                timeout=timeout_s,
                check=False,
            )
        text = out_path.read_bytes()[start:].decode(errors="replace")
        if done.returncode != 0:
            raise ServiceError(f"{' '.join(args[:2])} failed ({done.returncode}): {text[-2000:]}")
        return text

    def start(self, node: Node) -> None:
        try:
            self.run("pg_ctl", "-D", str(node.pgdata), "-l", str(node.log), "-w", "start")
        except ServiceError as exc:
            log = node.log.read_text(errors="replace")[-2000:] if node.log.exists() else ""
            raise ServiceError(f"{exc}\n{log}") from exc

    def stop(self, node: Node, mode: str = "fast") -> None:
        if (node.pgdata / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(node.pgdata), "-m", mode, "-w", "stop")

    def stop_primary(self) -> None:
        """An immediate shutdown (no checkpoint, clients cut off), the way a crash looks."""
        self.stop(self.primary, "immediate")

    def promote(self) -> None:
        """The standby becomes the primary; returns once it accepts writes."""
        self.run("pg_ctl", "-D", str(self.standby.pgdata), "-w", "promote")

    def sql(self, node: Node, statement: str, dbname: str = "postgres") -> str:
        """Run one statement with psql (as the superuser); its unaligned output."""
        return self.run(
            "psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", node.dsn(dbname), "-c",
            statement,
        ).strip()  # fmt: skip


def _config(port: int) -> str:
    return (
        "\n# deployq.testing.replication\n"
        "listen_addresses = '127.0.0.1'\n"
        f"port = {port}\n"
        "unix_socket_directories = ''\n"
        "wal_level = replica\n"
        "max_wal_senders = 5\n"
        "hot_standby = on\n"
        "max_connections = 200\n"
        "fsync = off\n"  # a test cluster: a crash of the machine is not what it checks
    )


HBA = (
    "# deployq.testing.replication: loopback only\n"
    f"host replication {REPLICATION_USER} 127.0.0.1/32 trust\n"
    f"host all {SUPERUSER} 127.0.0.1/32 trust\n"
    "host all all 127.0.0.1/32 scram-sha-256\n"
)


@contextmanager
def start_pair(root: Path) -> Iterator[PostgresPair]:
    """A primary and a synchronous streaming standby under ``root``; both stopped on exit."""
    user = _owner()
    root.mkdir(parents=True, exist_ok=True)
    if user is not None:
        import shutil

        from pgserver.utils import ensure_prefix_permissions

        ensure_prefix_permissions(root)
        root.chmod(0o755)
        shutil.chown(root, user, user)
    pair = PostgresPair(
        root, Node(root / "primary", free_port()), Node(root / "standby", free_port()), user
    )
    try:
        pair.run("initdb", "-D", str(pair.primary.pgdata), "-U", SUPERUSER, "--auth=trust",
                 "--encoding=utf8")  # fmt: skip
        with (pair.primary.pgdata / "postgresql.conf").open("a") as conf:
            conf.write(_config(pair.primary.port))
        (pair.primary.pgdata / "pg_hba.conf").write_text(HBA)
        pair.start(pair.primary)
        pair.sql(pair.primary, named("replication_role"))
        pair.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(pair.primary.port),
                 "-U", REPLICATION_USER, "-D", str(pair.standby.pgdata), "-R",
                 "-X", "stream", "-c", "fast")  # fmt: skip
        with (pair.standby.pgdata / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"port = {pair.standby.port}\n")
        pair.start(pair.standby)
        _wait_streaming(pair)
        # synchronous from here: a commit returns once the standby has it on disk
        pair.sql(pair.primary, named("replication_synchronous"))
        pair.run("pg_ctl", "-D", str(pair.primary.pgdata), "reload")
        yield pair
    finally:
        for node in (pair.standby, pair.primary):
            try:
                pair.stop(node, "immediate")
            except ServiceError:
                pass


def _wait_streaming(pair: PostgresPair, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        state = pair.sql(pair.primary, named("replication_state"))
        if state == "streaming":
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"the standby is not streaming (state {state!r})")
        time.sleep(0.1)  # the standby connects in its own time: nothing to wait on
