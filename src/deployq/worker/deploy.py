"""The deploy step: run the exact pushed digest on each of the app's targets and prove it
healthy, or put back what ran before.

Per target, under the app+target deploy lock: pull by digest, create ``deployq-<app>-<job>-
<attempt>`` labelled with app, job, commit and digest, then

- ``start-first``: start it beside the old one (same network alias), wait until healthy,
  then take the old one off the network and stop it: clients of the alias see no gap;
- ``recreate``: stop the old one, start the new one, wait until healthy.

Until the switch begins the step can be cancelled (the new container is removed); once it
has begun it runs to its end even when cancelled: switched, or rolled back. A failure on one
target rolls back the targets already switched. What runs is always read from the engine by
label, so an attempt after a killed worker finds and finishes what the dead one left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp

from deployq.builders.base import split_ref
from deployq.errors import DeployError, DeployqError, NotFound, PipelineError
from deployq.models import App, DeploySettings, DeployStrategy, DeployTarget, Job
from deployq.notify.webhook import SIGNATURE_HEADER, sign
from deployq.worker.deploy_engine import (
    LABEL_APP,
    LABEL_COMMIT,
    LABEL_DIGEST,
    LABEL_JOB,
    ContainerSpec,
    Deployed,
    DeployEngine,
)
from deployq.worker.deploy_health import describe, wait_healthy

if TYPE_CHECKING:
    from deployq.store import Store

T = TypeVar("T")

#: lines of a failed container's own log copied into the job log
FAILED_LOG_LINES = 20
#: the release name of the webhook "target"
WEBHOOK_TARGET = "webhook"


@dataclass(frozen=True)
class Image:
    """What is deployed: ``ref`` is the pushed tag, ``pull`` the same image by digest."""

    ref: str
    digest: str
    commit: str

    @property
    def pull(self) -> str:
        return f"{split_ref(self.ref)[0]}@{self.digest}"


@dataclass
class Switched:
    """A target now running the new release, and how to put the old one back."""

    target: DeployTarget
    engine: DeployEngine
    container: str
    previous: Deployed | None
    stopped: list[Deployed]
    """containers that ran before and were stopped by the switch"""
    timings: dict[str, float] = field(default_factory=dict)


async def finish_even_if_cancelled(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end; a cancel that arrives meanwhile is raised afterwards."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                break
            cancelled = True
    if cancelled:
        task.exception()  # retrieved, so it is not reported as never retrieved
        raise asyncio.CancelledError
    return task.result()


class Deployer:
    """One deploy step of one job attempt."""

    def __init__(
        self,
        store: Store,
        app: App,
        job: Job,
        log: Callable[[str], None],
        *,
        registry_auth: dict[str, str] | None = None,
    ) -> None:
        assert app.deploy is not None
        self.store = store
        self.app = app
        self.deploy: DeploySettings = app.deploy
        self.job = job
        self.log = log
        self.auth = registry_auth
        #: True from the moment the switch began: the step then finishes whatever happens
        self.switching = False
        self.switched: list[Switched] = []

    async def run(self, image: Image) -> None:
        """Deploy ``image`` everywhere, or raise DeployError after rolling back."""
        targets = [await self._target(name) for name in self.deploy.targets]
        async with contextlib.AsyncExitStack() as locks, aiohttp.ClientSession() as session:
            for name in sorted({t.name for t in targets}):
                await locks.enter_async_context(self.store.deploy.lock(self.app.name, name))
            where = ""
            try:
                try:
                    for target in targets:
                        where = target.name
                        self.switched.append(await self._deploy_to(target, image, session))
                    if self.deploy.webhook_url:
                        where = f"the deploy webhook {self.deploy.webhook_url}"
                        await self._webhook(image, session)
                except BaseException as exc:
                    # a failure (or a cancel) after some targets switched: they go back too
                    await finish_even_if_cancelled(self._roll_back_switched())
                    if not isinstance(exc, PipelineError):
                        raise
                    failed = DeployError(f"deploy failed on {where}: {exc.message}")
                    failed.retryable = exc.retryable and not isinstance(exc, DeployError)
                    raise failed from exc
                await self._record(image)
            finally:
                for done in self.switched:
                    done.engine.close()

    async def _target(self, name: str) -> DeployTarget:
        try:
            return await self.store.deploy.target(name)
        except NotFound as exc:
            error = DeployError(f"deploy target {name!r} does not exist: {exc.message}")
            error.retryable = False
            raise error from exc

    # -- one target --------------------------------------------------------------------------

    async def _deploy_to(
        self, target: DeployTarget, image: Image, session: aiohttp.ClientSession
    ) -> Switched:
        engine = DeployEngine(target.docker_host)
        timings: dict[str, float] = {}
        started = time.monotonic()
        self.log(f"==> deploy to {target.name} ({target.docker_host}): pulling {image.pull}")
        await engine.pull(image.pull, self.auth)
        timings["pull"] = time.monotonic() - started
        found = await engine.containers(self.app.name)
        previous = await self._previous(target, found)
        running = [c for c in found if c.running]
        name = f"deployq-{self.app.name}-{self.job.id}-{self.job.attempt}"
        for leftover in (c for c in found if c.name == name):
            await engine.remove(leftover.id)
        if previous is not None:
            self.log(f"    {target.name} runs {previous.name} ({previous.label})")
        if self.deploy.network:
            await engine.ensure_network(self.deploy.network)
        new = await engine.create(self._spec(name, image))
        begun = False  # the switch of this target
        try:
            has_check = False
            if not (self.deploy.health_cmd or self.deploy.health_path):
                has_check = await engine.image_healthcheck(image.pull)
            check = describe(self.deploy, has_check)
            timings["create"] = time.monotonic() - started - timings["pull"]
            mark = time.monotonic()
            if self.deploy.strategy is DeployStrategy.START_FIRST:
                await engine.start(new)
                timings["start"] = time.monotonic() - mark
                self.log(f"    started {name} beside the old release; waiting for {check}")
                try:
                    timings["healthy"] = await self._healthy(engine, new, name, has_check, session)
                except DeployError as exc:  # the old release never stopped serving
                    raise DeployError(f"{exc.message}; {_rolled_back_to(previous)}") from exc
                self.switching = begun = True
                mark = time.monotonic()
                stopped = await finish_even_if_cancelled(self._retire(engine, running))
                timings["switch"] = time.monotonic() - mark
            else:
                self.switching = begun = True
                stopped = await finish_even_if_cancelled(
                    self._recreate(engine, new, name, running, previous, has_check, check, session,
                                   timings)
                )  # fmt: skip
        except BaseException:
            if not begun:  # (a failed switch removed the new container itself)
                with contextlib.suppress(DeployqError):
                    await finish_even_if_cancelled(engine.remove(new))
            engine.close()
            raise
        total = time.monotonic() - started
        self.log(
            f"==> {target.name} runs {name} (#{self.job.id} {image.commit[:7]}) after "
            f"{total:.2f}s: " + ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        )
        return Switched(target, engine, name, previous, stopped, timings)

    async def _previous(self, target: DeployTarget, found: list[Deployed]) -> Deployed | None:
        """What runs there now: the recorded release when its container exists, else the
        newest running container of the app (a release a killed worker did not record)."""
        current = {
            r.container
            for r in await self.store.deploy.current_releases(self.app.name)
            if r.target == target.name
        }
        recorded = next((c for c in found if c.name in current), None)
        return recorded or next((c for c in found if c.running), None)

    def _spec(self, name: str, image: Image) -> ContainerSpec:
        ports: dict[str, Any] = {}
        for port in self.deploy.port_specs:
            key = f"{port.container_port}/{port.proto}"
            binding = port.host_port
            ports[key] = (port.ip, binding) if port.ip else binding
        return ContainerSpec(
            name=name,
            image=image.pull,
            labels={
                LABEL_APP: self.app.name,
                LABEL_JOB: str(self.job.id),
                LABEL_COMMIT: image.commit,
                LABEL_DIGEST: image.digest,
            },
            env=dict(self.deploy.env),
            ports=ports,
            volumes=list(self.deploy.volumes),
            network=self.deploy.network,
            aliases=list(self.deploy.network_aliases),
        )

    async def _healthy(
        self,
        engine: DeployEngine,
        container: str,
        name: str,
        has_check: bool,
        session: aiohttp.ClientSession,
    ) -> float:
        """Seconds to healthy; on failure the container's last lines go to the job log and
        the container is removed before DeployError is raised."""
        try:
            seconds = await wait_healthy(
                engine, container, self.deploy, image_has_check=has_check, session=session
            )
        except DeployError:
            with contextlib.suppress(DeployqError):
                lines = await engine.logs_tail(container, FAILED_LOG_LINES)
                self.log(f"    last lines of {name}:")
                for line in lines:
                    self.log(f"    | {line}")
            await engine.remove(container)
            raise
        self.log(f"    {name} is healthy after {seconds:.2f}s")
        return seconds

    async def _retire(self, engine: DeployEngine, running: list[Deployed]) -> list[Deployed]:
        """start-first's switch: the old containers leave the alias, then stop."""
        for old in running:
            if self.deploy.network:
                await engine.disconnect(old.id, self.deploy.network)
            await engine.stop(old.id)
            self.log(f"    stopped {old.name} ({old.label})")
        return running

    async def _recreate(
        self,
        engine: DeployEngine,
        new: str,
        name: str,
        running: list[Deployed],
        previous: Deployed | None,
        has_check: bool,
        check: str,
        session: aiohttp.ClientSession,
        timings: dict[str, float],
    ) -> list[Deployed]:
        """recreate's switch: stop the old, start the new; unhealthy: the old starts again."""
        mark = time.monotonic()
        for old in running:
            await engine.stop(old.id)
            self.log(f"    stopped {old.name} ({old.label})")
        timings["switch"] = time.monotonic() - mark
        mark = time.monotonic()
        try:
            await engine.start(new)
            timings["start"] = time.monotonic() - mark
            self.log(f"    started {name}; waiting for {check}")
            timings["healthy"] = await self._healthy(engine, new, name, has_check, session)
        except PipelineError as exc:
            await self._restore(engine, previous, running)
            raise DeployError(f"{exc.message}; {_rolled_back_to(previous)}") from exc
        return running

    async def _restore(
        self, engine: DeployEngine, previous: Deployed | None, stopped: list[Deployed]
    ) -> None:
        """Start the previous release again (it may have been stopped before this attempt)."""
        if previous is None:
            self.log("    nothing ran before: nothing to put back")
            return
        if self.deploy.network and previous in stopped:
            await engine.connect(previous.id, self.deploy.network, self.deploy.network_aliases)
        await engine.start(previous.id)
        self.log(f"==> rolled back: {previous.name} ({previous.label}) runs again")

    async def _roll_back_switched(self) -> None:
        """A later target failed: the targets already switched get their old release back."""
        for done in reversed(self.switched):
            try:
                await done.engine.remove(done.container)
                await self._restore(done.engine, done.previous, done.stopped)
                self.log(f"    {done.target.name} rolled back too")
            except DeployqError as exc:
                self.log(f"ERROR: rolling back {done.target.name} failed: {exc.message}")

    # -- webhook target, records -------------------------------------------------------------

    async def _webhook(self, image: Image, session: aiohttp.ClientSession) -> None:
        url = self.deploy.webhook_url
        assert url is not None
        body = json.dumps(
            {
                "app": self.app.name,
                "image": image.pull,
                "digest": image.digest,
                "commit": image.commit,
                "job": self.job.id,
            },
            separators=(",", ":"),
            sort_keys=True,
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.deploy.webhook_secret:
            headers[SIGNATURE_HEADER] = sign(self.deploy.webhook_secret, body)
        self.log(f"==> deploy webhook: POST {url}")
        timeout = aiohttp.ClientTimeout(total=self.deploy.health_timeout_s)
        try:
            async with session.post(url, data=body, headers=headers, timeout=timeout) as answer:
                text = (await answer.text(errors="replace")).strip()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeployError(f"no answer: {type(exc).__name__} {exc}".rstrip()) from exc
        first = text.splitlines()[0][:200] if text else ""
        if not 200 <= status < 300:
            error = DeployError(f"answered {status}" + (f": {first}" if first else ""))
            error.retryable = False
            raise error
        self.log(f"    the deploy webhook answered {status}" + (f": {first}" if first else ""))

    async def _record(self, image: Image) -> None:
        """The releases (what runs now), then old stopped containers beyond keep_releases."""
        for done in self.switched:
            await self.store.deploy.record_release(
                self.job,
                target=done.target.name,
                image_ref=image.ref,
                digest=image.digest,
                commit_sha=image.commit or None,
                container=done.container,
            )
        if self.deploy.webhook_url:
            await self.store.deploy.record_release(
                self.job, target=WEBHOOK_TARGET, image_ref=image.ref, digest=image.digest,
                commit_sha=image.commit or None, container=None,
            )  # fmt: skip
        for done in self.switched:
            try:
                await self._prune(done)
            except DeployqError as exc:  # the release runs; old containers wait for next time
                self.log(f"    removing old containers on {done.target.name} failed: {exc.message}")

    async def _prune(self, done: Switched) -> None:
        stopped = [
            c
            for c in await done.engine.containers(self.app.name)
            if not c.running and c.name != done.container
        ]
        for old in stopped[self.deploy.keep_releases :]:
            await done.engine.remove(old.id)
            self.log(f"    removed {old.name} ({old.label}): beyond --keep-releases")


def _rolled_back_to(previous: Deployed | None) -> str:
    if previous is None:
        return "nothing ran before, so nothing was rolled back"
    return f"rolled back to {previous.commit[:7]} ({previous.digest})"
