"""A bare mirror of each app's repository on every worker host: a checkout is a local copy.

``<data_dir>/mirrors/<app>-<hash of the URL>.git`` keeps every commit fetched before, so a
checkout fetches only what is new (one ``git fetch`` of the ref into the mirror, skipped when
the commit is there already) and writes the commit's files into the workspace with one
``git read-tree -u`` through a workspace ``.git`` that borrows the mirror's objects
(``objects/info/alternates``). The commit's message and author are read from the mirror's
objects in-process (gitdb), without another git.

Worker processes of one host share the mirrors: one checkout at a time per mirror, under an
exclusive ``flock`` of ``<mirror>.lock``. A mirror that git fails in for any reason but the
remote's answer is set aside: the checkout is done again in a new one, which replaces it
when that works (a corrupted mirror heals itself; a remote that refuses fails as before).
Credentials reach the fetch through the same environment as every git call of the checkout
(deployq.worker.checkout), never the mirror's config. The fetch makes its pack a promisor
pack (README.md, "Checkout"), so git skips the connectivity walk after it; the mirror itself
is no partial clone.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import struct
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import gitdb  # type: ignore[import-untyped]
import gitdb.db.pack  # type: ignore[import-untyped]
import gitdb.exc  # type: ignore[import-untyped]
import gitdb.pack  # type: ignore[import-untyped]

from deployq.builders.base import LogSink
from deployq.builders.process import run_streaming
from deployq.errors import CheckoutError
from deployq.worker.commits import CommitInfo, parse_commit

MIRRORS_DIR = "mirrors"
#: more packs than this in a mirror: repack them into one (each fetch adds one)
MAX_PACKS = 32
#: what reading a damaged object store raises
_UNREADABLE = (gitdb.exc.ODBError, ValueError, OSError, binascii.Error, struct.error, zlib.error)
#: a fetch keeps what it receives as a pack (never loose objects), and starts no automatic
#: gc or maintenance (one more git process each fetch): the mirror's packs are repacked here
#: once there are more than MAX_PACKS
_FETCH_CONFIG = (
    "-c", "transfer.unpackLimit=1", "-c", "maintenance.auto=false", "-c", "gc.auto=0",
)  # fmt: skip
#: the remote as the fetch names it: given on the fetch's command line only, never written
#: to the mirror's config
_REMOTE = "deployq"
#: a filter that leaves nothing out (no blob is 4 GiB; the largest limit a server whose
#: ``unsigned long`` is 32 bits still parses): with it and ``promisor``, git marks the
#: fetched pack a promisor pack and skips its connectivity ``rev-list`` (one process, 3-4 ms
#: a fetch). A server without filters sends the same pack and git says so: _IGNORED_FILTER
_FILTER = "blob:limit=4294967295"
_IGNORED_FILTER = "warning: filtering not recognized by server, ignoring"
#: what the remote says when it has no such ref or will not serve a bare sha
_REMOTE_MISSING = re.compile(
    r"couldn't find remote ref|no such remote ref|not our ref|unadvertised object",
    re.IGNORECASE,
)


def mirror_path(data_dir: Path, app: str, repo_url: str) -> Path:
    """The mirror of ``app``'s repository on this host (a new URL gets a new mirror)."""
    digest = hashlib.sha256(repo_url.encode()).hexdigest()[:12]
    return data_dir / MIRRORS_DIR / f"{app}-{digest}.git"


class _MirrorBroken(Exception):
    """git failed in the mirror for a reason that is not the remote's answer."""

    def __init__(self, tail: str) -> None:
        super().__init__(tail)
        self.tail = tail


@dataclass
class MirrorCheckout:
    """One checkout through the mirror: the git environment and messages of the checkout."""

    url: str
    shown_url: str
    env: Mapping[str, str]
    redact: Callable[[str], str]
    log: LogSink
    #: the error for a remote that refused (its last lines of output)
    refused: Callable[[str], CheckoutError]
    #: a CheckoutError another attempt cannot fix
    final: Callable[[CheckoutError], CheckoutError]
    #: the reason git gave, from its last lines of output
    reason: Callable[[str], str]
    #: whether the output says the remote refused for good (a credential, a host key): no
    #: new mirror can help then
    refused_for_good: Callable[[str], bool] = lambda tail: False

    async def run(
        self, mirror: Path, dest: Path, *, ref: str, sha: str | None, short: bool = False
    ) -> CommitInfo:
        """Check ``sha`` (None: the head of ``ref``; ``short``: an abbreviated sha, found in
        the history of ``ref``) out into ``dest``."""
        mirror.parent.mkdir(parents=True, exist_ok=True)
        async with _locked(mirror.with_name(mirror.name + ".lock")):
            try:
                return await self._once(mirror, dest, ref=ref, sha=sha, short=short)
            except _MirrorBroken as broken:
                if self.refused_for_good(broken.tail):
                    raise self.refused(broken.tail) from None
                self.log(
                    f"git failed in the mirror {mirror} ({self.reason(broken.tail)}): "
                    "checking out through a new mirror"
                )
            fresh = mirror.with_name(mirror.name + ".new")
            await asyncio.to_thread(shutil.rmtree, fresh, True)
            await asyncio.to_thread(_empty, dest)
            try:
                info = await self._once(fresh, dest, ref=ref, sha=sha, short=short)
            except _MirrorBroken as again:  # a new mirror fails too: it is the remote
                await asyncio.to_thread(shutil.rmtree, fresh, True)
                raise self.refused(again.tail) from None
            except BaseException:
                await asyncio.to_thread(shutil.rmtree, fresh, True)
                raise
            await asyncio.to_thread(shutil.rmtree, mirror, True)
            fresh.rename(mirror)
            _borrow(dest, mirror)
            return info

    async def _git(self, cwd: Path, *args: str, bounded: bool = False) -> tuple[int, str]:
        result = await run_streaming(
            ["git", *args],
            env=self.env,
            cwd=cwd,
            on_line=self._log_git,
            redact=self.redact,
            bounded=bounded,
        )
        return result.returncode, result.last_lines(8)

    def _log_git(self, line: str) -> None:
        if line != _IGNORED_FILTER:  # every fetch from a server without filters says it
            self.log(line)

    async def _once(
        self, mirror: Path, dest: Path, *, ref: str, sha: str | None, short: bool
    ) -> CommitInfo:
        if not (mirror / "HEAD").is_file():
            await asyncio.to_thread(shutil.rmtree, mirror, True)
            rc, tail = await self._git(
                mirror.parent, "init", "--bare", "--quiet", "--template=", mirror.name
            )
            if rc != 0:
                raise CheckoutError(f"cannot create the mirror {mirror}: {self.reason(tail)}")
        #: once made: the commit read (None: it is no commit), dest/.git made for it
        ready: tuple[CommitInfo | None] | None = None
        # a full sha may be in the mirror already: a ref or a short sha is always fetched
        known = None if sha is None or short else await asyncio.to_thread(_holding, mirror, sha)
        if known is None or sha is None:
            self.log(f"fetching {ref}{f' at {sha[:7]}' if sha else ''} from {self.shown_url}")
            local = ref if ref.startswith("refs/") else f"refs/deployq/{ref}"
            rc, tail = await self._fetch(mirror, f"+{ref}:{local}")
            if rc != 0:
                if _REMOTE_MISSING.search(tail):
                    raise self.final(
                        CheckoutError(f"ref {ref!r} does not exist in {self.shown_url}")
                    )
                raise _MirrorBroken(tail)
            head = None if short else _read_ref(mirror, local)
            if head is not None and sha in (None, head):  # what the fetch brought
                return await self._write_while_reading(mirror, dest, head)
            # a short sha, or one the ref no longer names: the objects as fetched, the commit
            # and, when it is there, the commit read and the workspace's .git made for it:
            # one trip to a thread
            objects, found, ready = await asyncio.to_thread(
                _fetched, mirror, local, sha, dest, short
            )
            if found is None:
                raise _MirrorBroken(f"fatal: the fetch of {ref} stored no {local}")
            sha = await self._resolve(mirror, found, ref) if short else found
            if not short and ready is None:  # no longer on the ref (a force push): ask for it
                rc, tail = await self._fetch(mirror, sha)
                if rc != 0 and _REMOTE_MISSING.search(tail):
                    missing = f"commit {sha[:7]} does not exist in {self.shown_url} ({ref})"
                    raise self.final(CheckoutError(missing))
                objects = await asyncio.to_thread(_objects, mirror)
                if rc != 0 or not objects.has(sha):
                    raise _MirrorBroken(tail or f"fatal: {sha[:7]} fetched, but not readable")
        else:
            self.log(f"commit {sha[:7]} is in the mirror already: nothing to fetch")
            return await self._write_while_reading(mirror, dest, sha, known)
        if ready is None:  # the commit read, and the workspace's .git made for it
            ready = (await asyncio.to_thread(_commit_and_borrow, objects, sha, dest, mirror),)
        (info,) = ready
        if info is None:
            raise self.final(CheckoutError(f"{sha[:12]} is not a commit in {self.shown_url}"))
        rc, tail = await self._read_tree(dest, sha)
        if rc != 0:
            raise _MirrorBroken(tail)
        return info

    async def _write_while_reading(
        self, mirror: Path, dest: Path, sha: str, objects: _Objects | None = None
    ) -> CommitInfo:
        """Check ``sha``, which the mirror holds, out into ``dest``: its files are written
        (``read-tree``) while its commit is read (gitdb, in a thread), not one after the
        other."""
        _borrow(dest, mirror, sha)
        writing = asyncio.ensure_future(self._read_tree(dest, sha))
        try:
            info = await asyncio.to_thread(_read_commit, objects or _Objects(mirror), sha)
        except BaseException:
            writing.cancel()
            await asyncio.wait({writing})
            raise
        rc, tail = await writing
        if info is None:
            raise self.final(CheckoutError(f"{sha[:12]} is not a commit in {self.shown_url}"))
        if rc != 0:
            raise _MirrorBroken(tail)
        return info

    async def _read_tree(self, dest: Path, sha: str) -> tuple[int, str]:
        # local, short and into the job's workspace only: no parent-death wrapper
        # (deployq.builders.orphans)
        return await self._git(
            dest, "--git-dir", ".git", "--work-tree", ".", "read-tree", "--reset", "-u", sha,
            bounded=True,
        )  # fmt: skip

    async def _resolve(self, mirror: Path, short: str, ref: str) -> str:
        """The full sha of ``short``, a commit in the history of ``ref``."""
        result = await run_streaming(
            ["git", "rev-parse", "--verify", "--quiet", f"{short}^{{commit}}"],
            env=self.env,
            cwd=mirror,
            on_line=lambda line: None,
        )
        found = result.last_lines(1).strip()
        if result.returncode != 0 or not found:
            raise self.final(
                CheckoutError(
                    f"commit {short} is not in the history of {ref} in {self.shown_url} "
                    "(or is ambiguous): give more of its sha, or the right --ref"
                )
            )
        return found

    async def _fetch(self, mirror: Path, what: str) -> tuple[int, str]:
        promisor = (
            "-c", f"remote.{_REMOTE}.url={self.url}", "-c", f"remote.{_REMOTE}.promisor=true",
            "-c", f"remote.{_REMOTE}.partialCloneFilter={_FILTER}",
        )  # fmt: skip
        rc, tail = await self._git(
            mirror, *_FETCH_CONFIG, *promisor, "fetch", "--quiet", "--no-tags", _REMOTE, what
        )
        if rc == 0 and _pack_count(mirror) > MAX_PACKS:
            self.log(f"repacking the mirror {mirror.name}")
            await self._git(mirror, "repack", "-a", "-d", "-q")
        return rc, tail


#: the smallest a pack (its header and checksum) and its index (v1: the fan-out table and
#: two checksums) can be
_MIN_PACK, _MIN_INDEX = 12 + 20, 256 * 4 + 2 * 20


class _NewestPacksFirst(gitdb.db.pack.PackedDB):  # type: ignore[misc]
    """A mirror's packs, looked up newest first: a fetch's commit is in the pack it just
    wrote. (gitdb ranks packs by size, opening every one of them to read it: ~50 us a pack,
    up to MAX_PACKS of them, and the new pack, the smallest, looked up last.)"""

    def update_cache(self, force: bool = False) -> bool:
        with os.scandir(self.root_path()) as listing:
            entries = {entry.name: entry for entry in listing}
        found = []
        for name, entry in entries.items():
            index = entries.get(name.removesuffix(".pack") + ".idx")
            if not name.startswith("pack-") or not name.endswith(".pack") or index is None:
                continue  # git too ignores a pack without its index
            pack = entry.stat()
            if pack.st_size < _MIN_PACK or index.stat().st_size < _MIN_INDEX:
                # what gitdb's ranking by size found out by reading each pack's header
                raise ValueError(f"{entry.path} or its index is damaged (too small)")
            entity = gitdb.pack.PackEntity(entry.path)  # opens nothing yet
            found.append([pack.st_mtime_ns, entity, entity.index().sha_to_index])
        self._entities = found
        self._sort_entities()  # by rank, highest first (a hit adds 1 to its pack's rank)
        return True


class _MirrorDB(gitdb.GitDB):  # type: ignore[misc]
    PackDBCls = _NewestPacksFirst


class _Objects:
    """The objects of a mirror, read in-process."""

    def __init__(self, path: Path) -> None:
        self.db = _MirrorDB(str(path / "objects"))

    def has(self, sha: str) -> bool:
        """False as well when the store cannot be read (the fetch then says why)."""
        try:
            return bool(self.db.has_object(binascii.unhexlify(sha)))
        except _UNREADABLE:
            return False

    def commit(self, sha: str) -> CommitInfo | None:
        stream = self.db.stream(binascii.unhexlify(sha))
        if stream.type != b"commit":
            return None
        return parse_commit(sha, stream.read())


def _objects(mirror: Path) -> _Objects:
    return _Objects(mirror)


def _holding(mirror: Path, sha: str) -> _Objects | None:
    """The mirror's objects when they hold ``sha`` (a lookup in every pack when they do
    not: in the thread, not the event loop), else None."""
    objects = _Objects(mirror)
    return objects if objects.has(sha) else None


def _fetched(
    mirror: Path, ref: str, sha: str | None, dest: Path, short: bool
) -> tuple[_Objects, str | None, tuple[CommitInfo | None] | None]:
    """After a fetch: the mirror's objects, the commit (``sha``, as given when ``short``;
    None: the one its ``ref`` names now, None when none) and, when the objects hold that
    full sha, what :func:`_commit_and_borrow` gives for it (else None)."""
    objects = _Objects(mirror)
    if sha is None:
        sha = _read_ref(mirror, ref)
    if sha is None or short or not objects.has(sha):
        return objects, sha, None
    return objects, sha, (_commit_and_borrow(objects, sha, dest, mirror),)


def _read_commit(objects: _Objects, sha: str) -> CommitInfo | None:
    """The commit ``sha`` (None: it is no commit)."""
    try:
        return objects.commit(sha)
    except _UNREADABLE as exc:
        raise _MirrorBroken(f"fatal: cannot read commit {sha}: {exc}") from exc


def _commit_and_borrow(objects: _Objects, sha: str, dest: Path, mirror: Path) -> CommitInfo | None:
    """The commit ``sha`` (None: it is no commit), with ``dest/.git`` made ready for it."""
    info = _read_commit(objects, sha)
    if info is not None:
        _borrow(dest, mirror, sha)
    return info


def _read_ref(mirror: Path, ref: str) -> str | None:
    """The sha a ref of the mirror names (loose, else packed), or None."""
    loose = mirror / ref
    with contextlib.suppress(OSError):
        return loose.read_text().strip() or None
    with contextlib.suppress(OSError):
        for line in (mirror / "packed-refs").read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    return None


def _borrow(dest: Path, mirror: Path, sha: str | None = None) -> None:
    """Make ``dest/.git`` a repository that reads its objects from ``mirror`` (detached at
    ``sha`` when given)."""
    git_dir = dest / ".git"
    alternates = git_dir / "objects" / "info" / "alternates"
    borrowed = f"{mirror.resolve()}/objects\n"
    try:  # a warm workspace's borrows from its mirror already
        done = alternates.read_text() == borrowed
    except OSError:
        done = False
    if not done:
        alternates.parent.mkdir(parents=True, exist_ok=True)
        (git_dir / "refs").mkdir(exist_ok=True)
        alternates.write_text(borrowed)
    if sha is not None:
        _overwrite(git_dir / "HEAD", f"{sha}\n".encode())


def _overwrite(path: Path, data: bytes) -> None:
    """Write ``data`` over ``path``'s bytes in place: a file truncated to nothing and written
    again is flushed to disk on its close by ext4 (``auto_da_alloc``), ~0.25 ms."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _empty(dest: Path) -> None:
    """Remove what a failed attempt left in ``dest``."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True, exist_ok=True)


def _pack_count(mirror: Path) -> int:
    try:
        return sum(1 for name in os.listdir(mirror / "objects" / "pack") if name.endswith(".pack"))
    except OSError:
        return 0


@contextlib.asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[None]:
    """Hold an exclusive flock on ``path`` (across processes, and between tasks of one: each
    opens the file itself). Waiting happens in a thread; a cancel while waiting lets the
    lock go as soon as that thread gets it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:  # a free lock is taken at once, without a trip to a thread
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        waiting = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX))
        try:
            await asyncio.shield(waiting)
        except BaseException:
            waiting.add_done_callback(lambda _: os.close(fd))
            raise
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock
