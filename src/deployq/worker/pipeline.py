"""One attempt of a job: checkout → detect → build → push → verify.

Each step records itself on the job (current step, percent, durations) so every client sees
where a build is; each failure says what failed and where, in the job's error and its log.
The pipeline knows nothing of leases or heartbeats: the pool runs it in a task of its own,
cancels that task to interrupt a step, and turns what it returns into ``store.leases.finish``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployq.builders import Builder, BuildRequest, RegistryAuth, attempt_marker, detect
from deployq.builders.detect import BaseImages
from deployq.builders.plan import app_overrides
from deployq.durations import setting
from deployq.errors import (
    ConfigError,
    DatabaseUnavailable,
    DeployError,
    DeployqError,
    EngineUnavailable,
    LostJob,
    PipelineError,
    RegistryError,
)
from deployq.gitauth import app_git_auth
from deployq.imageref import ImageRef, docker_tag, qualify
from deployq.manual import default_branch
from deployq.models import STEP_START_PERCENT, App, BuildServer, JobStatus, ScanAction, Step
from deployq.registry import (
    SCAN_POLL_INTERVAL_S,
    HarborClient,
    Manifest,
    RegistryClient,
    registry_login,
)
from deployq.scans import ScanState, Verdict, judge, requested, scan_text, state_of, unavailable
from deployq.store import Lease, Outcome
from deployq.worker.cache import (
    KnownDigests,
    StageCache,
    pin_cache,
    plan_cache,
    read_dockerfile,
)
from deployq.worker.checkout import checkout
from deployq.worker.commits import CommitInfo
from deployq.worker.deploy import Deployer, Image
from deployq.worker.logbuffer import LogBuffer
from deployq.worker.mirror import mirror_path

if TYPE_CHECKING:
    from deployq.config import Settings
    from deployq.store import Store

log = logging.getLogger(__name__)

#: why a failure is final, in its error: "(not retried: …)"
NOT_RETRIED_SAME = "another attempt would fail the same way"
NOT_RETRIED_CONFIG = "a configuration problem; fix it, then deploy again"
NOT_RETRIED_SCAN = (
    "the image's scan will not change; fix the vulnerabilities or the app's --scan-policy"
)


def image_target(app: App, settings: Settings) -> ImageRef:
    """Where the app's images go: its ``--image`` (or ``<registry_project>/<name>``) on the
    configured registry; a reference that names that registry already is used as it is.
    Checked before checkout, so a configuration problem never looks like a git failure."""
    if not settings.registry_url:
        raise ConfigError("no registry configured: set DEPLOYQ_REGISTRY_URL")
    return qualify(app.image or f"{settings.registry_project}/{app.name}", settings.registry_url)


@dataclass(frozen=True)
class ImageNames:
    """Where an attempt's image goes: ``registry/repository:tag`` for each tag."""

    registry: str
    repository: str
    tags: list[str]

    def ref(self, tag: str) -> str:
        return f"{self.registry}/{self.repository}:{tag}"

    @property
    def refs(self) -> list[str]:
        return [self.ref(t) for t in self.tags]


def image_names(app: App, settings: Settings, *, sha: str, branch: str) -> ImageNames:
    """Tags ``<sha7>`` and ``<branch>``; for a tag push the job's branch is the git tag
    (``refs/tags/v1.2`` -> ``v1.2``), for a pull request ``pr-N``."""
    target = image_target(app, settings)
    tags = [sha[:7], docker_tag(branch)]
    return ImageNames(target.domain or "", target.path, list(dict.fromkeys(tags)))


class OperatorCancel(Exception):
    """The operator cancelled the job while it was pushing; it ends cancelled after the push."""


@dataclass
class CancelState:
    """A cancel request: the pool sets it; an unforced one waits for the push to finish."""

    requested: bool = False
    force: bool = False
    actor: str | None = None


@dataclass
class Pipeline:
    """The steps of one attempt of ``lease`` on ``server``."""

    store: Store
    lease: Lease
    app: App
    server: BuildServer
    builder: Builder
    logs: LogBuffer
    workspace: Path
    on_engine_down: Callable[[str], Awaitable[None]] | None = None
    cancel: CancelState = field(default_factory=CancelState)
    #: called once the image and its stage images are pushed: their ``repo@sha256:…`` and
    #: the login the push used (the cache prefetch, worker.prefetch)
    on_pushed: Callable[[list[str], RegistryAuth], None] | None = None
    #: the digests this worker put under its apps' cache tags (worker.cache.KnownDigests)
    known_digests: KnownDigests | None = None
    step: Step | None = None
    durations: dict[str, float] = field(default_factory=dict)
    image_ref: str | None = None
    image_digest: str | None = None
    _started: float = 0.0
    #: the latest progress write, running while its step works (see _record)
    _progress: asyncio.Task[None] | None = None
    deployer: Deployer | None = None

    @property
    def settings(self) -> Settings:
        return self.store.settings

    @property
    def interruptible(self) -> bool:
        """True while a cancel may stop the running step at once: always but during the push,
        which is left to finish so the registry is not left with half an upload, and once a
        deploy's switch has begun (it ends switched or rolled back)."""
        if self.deployer is not None and self.deployer.switching:
            return False
        return self.step is not Step.PUSH

    @property
    def deploys(self) -> bool:
        """Whether the app runs its image after verify (has a target or a deploy webhook)."""
        return self.app.deploy is not None and self.app.deploy.enabled

    # -- the steps ---------------------------------------------------------------------------

    async def run(self) -> Outcome:
        """Run every step. PipelineError becomes a failed Outcome; LostJob and task
        cancellation propagate to the pool. The outcome comes back while the last progress
        write may still be on its way: the runner waits for it (:meth:`settled`) while it
        stores the log's last lines, before it records the outcome."""
        try:
            return await self._outcome()
        except BaseException:
            # an interrupted step's progress writes land before the runner goes on
            if self._progress is not None:
                await asyncio.gather(self._progress, return_exceptions=True)
            raise

    async def settled(self) -> None:
        """Wait for the progress writes still on their way; raise what they raised (LostJob:
        the job is no longer ours)."""
        await self._settle()

    async def _outcome(self) -> Outcome:
        try:
            return await self._steps()
        except OperatorCancel:
            self.logs.write("==> cancelled after the push finished, as requested")
            return Outcome(
                JobStatus.CANCELLED,
                error=self._cancel_message(),
                image_ref=self.image_ref,
                image_digest=self.image_digest,
            )
        except LostJob:
            raise
        except DeployError as exc:  # says itself where it failed, and what runs now
            # it ends with what runs now, so nothing is appended
            return self._failed(exc.message, retryable=exc.retryable, why=None, where=False)
        except PipelineError as exc:
            if isinstance(exc, EngineUnavailable) and self.on_engine_down is not None:
                await self.on_engine_down(exc.message)
            return self._failed(exc.message, retryable=exc.retryable)
        except DeployqError as exc:  # configuration problems: another attempt will not help
            return self._failed(exc.message, retryable=False, why=NOT_RETRIED_CONFIG)
        except Exception as exc:
            log.exception("job #%s: unexpected error during %s", self.lease.id, self.step)
            return self._failed(f"internal error: {type(exc).__name__}: {exc}", retryable=True)

    def _failed(
        self,
        message: str,
        *,
        retryable: bool,
        why: str | None = NOT_RETRIED_SAME,
        where: bool = True,
    ) -> Outcome:
        """A failed outcome whose error names the step (``build failed on big1: …``) and,
        when no retry can help, says why (``why``): such a job fails at once, whatever
        attempts are left. ``where=False``: the message names its place itself (deploys)."""
        if where:
            step = f"{self.step.value} failed" if self.step else "configuration check failed"
            message = f"{step} on {self.server.name}: {message}"
        if not retryable and why:
            message += f" (not retried: {why})"
        error = self.logs.redact(message)
        self.logs.write(f"ERROR: {error}")
        if retryable and self.lease.attempt < self.lease.job.max_attempts:
            self.logs.write("==> this attempt may be retried")
        return Outcome(JobStatus.FAILED, error=error, retryable=retryable)

    def _cancel_message(self) -> str:
        return f"cancelled by {self.cancel.actor}" if self.cancel.actor else "cancelled"

    async def _steps(self) -> Outcome:
        job = self.lease.job
        if job.deploy_only:
            return await self._deploy_only()
        target = image_target(self.app, self.settings)  # fails before checkout
        # the branches' cache images are looked up while the checkout runs
        early = self._pin_cache(
            target.domain or "",
            plan_cache(
                f"{target.domain or ''}/{target.path}",
                branch=job.branch,
                default_branch=_default_branch(self.app),
                dockerfile_text=None,
                target=self.app.target,
            ).final,
        )
        try:
            return await self._build_job(early)
        finally:
            if early is not None:
                early.cancel()
                await asyncio.gather(early, return_exceptions=True)

    async def _build_job(self, early: asyncio.Future[dict[str, str | None]] | None) -> Outcome:
        job = self.lease.job
        await self._enter(Step.CHECKOUT)
        with app_git_auth(self.app, self.settings) as git_auth:  # an app's key: gone after
            commit = await checkout(
                job.repo_url,
                self.workspace,
                ref=job.ref,
                commit_sha=job.commit_sha,
                auth=git_auth,
                submodules=self.app.submodules,
                mirror=mirror_path(self.settings.data_dir, self.app.name, job.repo_url),
                log=self.logs.write,
            )
        names = image_names(self.app, self.settings, sha=commit.sha, branch=job.branch)
        self.image_ref = names.ref(names.tags[0])
        author = (
            f"{commit.author} <{commit.author_email}>" if commit.author_email else commit.author
        )
        await self._enter(
            Step.DETECT,
            commit_sha=commit.sha,
            commit_message=commit.message,
            commit_author=author,
            image_ref=self.image_ref,
        )
        dockerfile_text = self._detect()

        await self._enter(Step.BUILD)
        auth = RegistryAuth(names.registry, *registry_login(self.settings, self.app))
        request = BuildRequest(
            workspace=self.workspace,
            context=self.app.context,
            dockerfile=self.app.dockerfile,
            target=self.app.target,
            build_args=dict(self.app.build_args),
            secrets=dict(self.app.build_secrets),
            tags=names.refs,
            labels={
                "org.opencontainers.image.revision": commit.sha,
                "io.deployq.app": self.app.name,
            },
            dockerfile_text=dockerfile_text,
            attempt_marker=attempt_marker(job.id, job.attempt, job.enqueued_at),
        )
        plan = plan_cache(
            f"{names.registry}/{names.repository}",
            branch=job.branch,
            default_branch=_default_branch(self.app),
            dockerfile_text=read_dockerfile(request),
            target=self.app.target,
        )
        if early is not None:
            digests = await early
            rest = [ref for ref in plan.reused if ref not in digests]
            if rest:
                digests |= self._known(rest) or await self._pin(names.registry, rest)
            plan = plan.pinned(digests)
            for ref in plan.reused:
                self.logs.write(f"cache from {ref}")
        request = replace(request, cache_from=plan.final)
        stages = StageCache(self.builder, plan, auth, self.logs.write)
        try:
            return await self._build_and_push(names, request, auth, stages, commit)
        finally:
            await stages.cancel()

    async def _build_and_push(
        self,
        names: ImageNames,
        request: BuildRequest,
        auth: RegistryAuth,
        stages: StageCache,
        commit: CommitInfo,
    ) -> Outcome:
        # Harbor's project is made ready while the image builds; the push waits for it
        project: asyncio.Task[bool] | None = None
        if self.settings.harbor_api:
            project = asyncio.create_task(
                self._harbor().ensure_project(names.repository.split("/")[0])
            )
        try:
            await stages.build(request)
            image_id = await self.builder.build(request, self.logs.write, auth=auth)
            self.logs.write(f"==> built {image_id}")
            await self._enter(Step.PUSH)
            if project is not None:
                await project
        finally:
            if project is not None:  # done by now, unless the build failed: then stop it
                project.cancel()
                await asyncio.gather(project, return_exceptions=True)
        async with self._registry() as registry:
            tagging: asyncio.Task[Manifest | None] | None = None

            def stored(reported: str) -> None:
                # the registry has the manifest: read and tag it while the engine ends its push
                nonlocal tagging
                tagging = asyncio.create_task(self._read_and_tag(names, reported, registry))

            try:
                digest = await self.builder.push(
                    names.ref(names.tags[0]), auth, self.logs.write, on_digest=stored
                )
                served = await (tagging or self._read_and_tag(names, digest, registry))
            finally:
                if tagging is not None and not tagging.done():  # the push failed
                    tagging.cancel()
                    await asyncio.gather(tagging, return_exceptions=True)
            seen = served.digest if served is not None else None
        await stages.wait()
        self._remember(stages.tagged)
        self.image_digest = digest
        self.logs.write(f"==> pushed {names.registry}/{names.repository}@{digest}")
        if self.on_pushed is not None:
            self.on_pushed([f"{names.registry}/{names.repository}@{digest}", *stages.pushed], auth)
        if self.cancel.requested:
            raise OperatorCancel

        # when nothing follows a verify that passes (no scan, no deploy), its start and the
        # job's 100 % are written by the finish (_succeeded), not by progress writes
        last = not self.deploys and not self.scanning and self.app.scan_policy is None
        await self._enter(Step.VERIFY, record=not last, image_digest=digest)
        try:
            self._verify(names, digest, seen)
        except RegistryError:
            if last:
                await self._record(
                    Step.VERIFY, STEP_START_PERCENT[Step.VERIFY], {"image_digest": digest}
                )
            raise
        verdict = await self._scan(names, digest)
        if verdict is not None and verdict.action is ScanAction.FAIL:
            return self._failed(verdict.message, retryable=False, why=NOT_RETRIED_SCAN)
        if self.deploys and verdict is not None and verdict.action is ScanAction.BLOCK_DEPLOY:
            self.logs.write(f"==> {verdict.message}")
        elif self.deploys:
            await self._enter(Step.DEPLOY)
            await self._deploy(Image(self.image_ref or "", digest, commit.sha))
        return self._succeeded(digest)

    async def _deploy_only(self) -> Outcome:
        """A rollback: deploy the image an earlier job pushed, without building."""
        job = self.lease.job
        if not job.image_ref or not job.image_digest:
            raise _final(DeployError(f"job #{job.id} names no image to deploy"))
        if not self.deploys:
            raise _final(
                DeployError(
                    f"{self.app.name} has no deploy target any more: add one with "
                    f"`deployq app add {self.app.name} ... --deploy-target NAME --replace`"
                )
            )
        self.image_ref, self.image_digest = job.image_ref, job.image_digest
        self.logs.write(
            f"==> rollback of {self.app.name} to {job.short_sha} ({job.image_digest}), "
            "built before: no build"
        )
        await self._enter(Step.DEPLOY)
        await self._deploy(Image(job.image_ref, job.image_digest, job.commit_sha or ""))
        return self._succeeded(self.image_digest)

    def _succeeded(self, digest: str) -> Outcome:
        """Success: the last step at 100 % and the steps' durations are written by the
        finish, with the outcome (no progress write of its own before it)."""
        self._close_step()
        return Outcome(
            JobStatus.SUCCEEDED,
            image_ref=self.image_ref,
            image_digest=digest,
            step=self.step or Step.VERIFY,
            step_durations=dict(self.durations),
        )

    async def _deploy(self, image: Image) -> None:
        auth = None
        username, password = registry_login(self.settings, self.app)
        if username:
            auth = {"username": username, "password": password or ""}
        self.deployer = Deployer(
            self.store, self.app, self.lease.job, self.logs.write, registry_auth=auth
        )
        await self.deployer.run(image)

    async def _read_and_tag(
        self, names: ImageNames, digest: str, registry: RegistryClient
    ) -> Manifest | None:
        """The first tag's manifest as the registry serves it (one read: verify's check, and
        the bytes the other tags get); when it is the pushed ``digest``, the other tags too
        (else verify says what the registry served)."""
        served = await registry.manifest(names.repository, names.tags[0], push=len(names.tags) > 1)
        if served is not None and served.digest == digest:
            await self._tag(names, served, registry)
            self._remember({ref: digest for ref in names.refs[1:]})
        return served

    async def _tag(self, names: ImageNames, manifest: Manifest, registry: RegistryClient) -> None:
        """Give the pushed image (the engine pushed the first tag; ``manifest`` is what the
        registry serves for it, the pushed digest) its other tags through the registry's
        manifest API, all at once: no layer moves."""
        await asyncio.gather(
            *(registry.put_manifest(names.repository, t, manifest) for t in names.tags[1:])
        )
        for tag in names.tags[1:]:
            self.logs.write(f"tagged {names.ref(tag)} ({manifest.digest[:19]})")

    def _detect(self) -> str | None:
        """None when the repository has its Dockerfile, else one generated from the build
        plan (zero-config), which the log shows; PlanError (not retried) when there is none."""
        if (self.workspace / self.app.dockerfile).is_file():
            self.logs.write(f"==> using {self.app.dockerfile} from the repository")
            return None
        app = self.app
        detection = detect(
            self.workspace / app.context,
            app.dockerfile,
            base_images=BaseImages.from_settings(self.settings),
            overrides=app_overrides(
                app.install_cmd, app.build_cmd, app.start_cmd, app.runtime_version
            ),
        )
        if detection is None:  # the Dockerfile appeared in between: nothing to generate
            return None
        self.logs.write(f"==> no {app.dockerfile}: zero-config build plan")
        for line in detection.plan.describe():
            self.logs.write(f"    {line}")
        self.logs.write("==> generated Dockerfile:")
        for line in detection.dockerfile_text.splitlines():
            self.logs.write(f"    {line}")
        return detection.dockerfile_text

    def _registry(self) -> RegistryClient:
        return RegistryClient.from_settings(self.settings, self.app)

    def _pin_cache(
        self, registry_host: str, refs: list[str]
    ) -> asyncio.Future[dict[str, str | None]] | None:
        """With BuildKit, the digests of the cache images ``refs`` (worker.cache.pin_cache),
        looked up in a task of their own unless this worker put them there itself (then
        known at once); None with the Engine backend (it pulls them)."""
        if self.builder.backend != "buildkit" or not refs:
            return None
        known = self._known(refs)
        if known is not None:
            done: asyncio.Future[dict[str, str | None]] = asyncio.get_running_loop().create_future()
            done.set_result(known)
            return done
        return asyncio.create_task(self._pin(registry_host, refs))

    def _known(self, refs: list[str]) -> dict[str, str | None] | None:
        """The digests of ``refs`` this worker put there itself from this server, if all
        are known (worker.cache.KnownDigests); the log says so."""
        if self.known_digests is None:
            return None
        known = self.known_digests.digests(refs, self.server.id)
        if known is not None:
            self.logs.write(
                f"cache images {', '.join(refs)}: as this worker pushed them from "
                f"{self.server.name} (no registry lookup)"
            )
        return known

    def _remember(self, tags: dict[str, str]) -> None:
        if self.known_digests is not None and tags:
            self.known_digests.remember(self.app.name, self.server.id, tags)

    async def _pin(self, registry_host: str, refs: list[str]) -> dict[str, str | None]:
        async with self._registry() as registry:
            return await pin_cache(registry, registry_host, refs)

    def _verify(self, names: ImageNames, digest: str, seen: str | None) -> None:
        """The registry serves the pushed digest for the first tag (``seen``: the digest of
        the bytes it served)."""
        if seen != digest:
            raise RegistryError(
                f"the registry serves {seen or 'nothing'} for {names.ref(names.tags[0])}, "
                f"not the pushed {digest}: another push raced this one, retry the job"
            )
        self.logs.write(f"==> verified: the registry serves {digest}")

    def _harbor(self) -> HarborClient:
        return HarborClient.from_settings(self.settings, self.app)

    @property
    def scanning(self) -> bool:
        return self.settings.harbor_api and self.settings.harbor_scan

    async def _scan(self, names: ImageNames, digest: str) -> Verdict | None:
        """Ask Harbor to scan the pushed image and record it on the job; the background
        collector (worker.scans) attaches the result later. Only an app with a scan policy
        waits for the result here, and gets the policy's verdict. A scan that cannot be had
        is recorded as unavailable, with the reason: it never fails the build."""
        policy = self.app.scan_policy
        if policy is not None and policy.action is ScanAction.BLOCK_DEPLOY and not self.deploys:
            policy = None  # nothing to block: the scan is only recorded
        if not self.scanning and policy is None:
            return None
        project, _, repository = names.repository.partition("/")
        if not self.scanning:
            summary = unavailable("scanning is off (DEPLOYQ_HARBOR_API, DEPLOYQ_HARBOR_SCAN)")
        else:
            summary = await self._request_scan(project, repository, digest)
            if policy is not None and state_of(summary) is ScanState.REQUESTED:
                summary = await self._wait_for_scan(project, repository, digest)
        verdict = judge(policy, summary) if policy is not None else None
        if verdict is not None:
            summary["policy"] = verdict.message
        await self.store.scans.record(
            self.lease,
            project=project,
            repository=repository,
            digest=digest,
            summary=summary,
            first_poll_s=self.settings.harbor_scan_poll,
            deadline_s=self.settings.harbor_scan_deadline,
        )
        self.logs.write(f"==> {scan_text(summary)}")
        if verdict is not None and verdict.action is None:
            self.logs.write(f"==> {verdict.message}")
        return verdict

    async def _request_scan(self, project: str, repository: str, digest: str) -> dict[str, Any]:
        self.logs.write(f"==> vulnerability scan of {project}/{repository}@{digest[:19]} requested")
        try:
            await self._harbor().scan(project, repository, digest)
        except RegistryError as exc:
            return unavailable(exc.message)
        return requested()

    async def _wait_for_scan(self, project: str, repository: str, digest: str) -> dict[str, Any]:
        """The one wait for a scan in a job: its app's policy needs the result."""
        wait = self.settings.harbor_scan_wait
        self.logs.write(
            f"==> waiting up to {setting(wait)} for the scan: the app's scan policy needs it"
        )
        try:
            summary = await self._harbor().wait_for_scan(
                project,
                repository,
                digest,
                wait,
                poll_interval_s=min(self.settings.harbor_scan_poll, SCAN_POLL_INTERVAL_S),
            )
        except RegistryError as exc:  # the collector keeps looking
            self.logs.write(f"WARNING: cannot read the scan: {exc.message}")
            return {"state": ScanState.RUNNING.value}
        if not state_of(summary) or not ScanState(summary["state"]).is_final:
            self.logs.write(f"WARNING: no scan result within {setting(wait)}")
        return summary

    # -- bookkeeping -------------------------------------------------------------------------

    async def _enter(self, step: Step, *, record: bool = True, **fields: Any) -> None:
        """Start ``step``; with ``record``, write it to the job (else the caller does)."""
        self._close_step()
        self.step = step
        self._started = time.monotonic()
        self.logs.write(f"==> {step.value}")
        if record:
            await self._record(step, STEP_START_PERCENT[step], fields or None)

    async def _record(self, step: Step, percent: int, fields: dict[str, Any] | None = None) -> None:
        """Write step and percent to the job while the step goes on: a write goes out once
        the previous one has landed (so they land in order) and never holds up a step; a
        LostJob surfaces at the next step that finds its write over, or at the end."""
        previous = self._progress
        if previous is not None and previous.done():
            self._progress = None
            previous.result()  # what it raised (LostJob) is raised here
            previous = None
        self._progress = asyncio.create_task(
            self._write_progress_after(previous, step, percent, dict(self.durations), fields)
        )

    async def _write_progress_after(
        self,
        previous: asyncio.Task[None] | None,
        step: Step,
        percent: int,
        durations: dict[str, float],
        fields: dict[str, Any] | None,
    ) -> None:
        if previous is not None:
            await asyncio.shield(previous)  # its LostJob is this write's too
        await self._write_progress(step, percent, durations, fields)

    async def _write_progress(
        self,
        step: Step,
        percent: int,
        durations: dict[str, float],
        fields: dict[str, Any] | None,
    ) -> None:
        """Progress is for the eyes: while the database is away the build goes on (the next
        write, or the finish, carries the state); a lease taken over (LostJob) still stops it.
        """
        try:
            await self.store.leases.set_progress(
                self.lease, step=step, progress=percent, step_durations=durations, fields=fields
            )
        except DatabaseUnavailable as exc:
            log.info(
                "job #%s: step %s not recorded, the build goes on: %s",
                self.lease.id,
                step.value,
                exc,
            )

    async def _settle(self) -> None:
        """Wait for the latest progress write; raise what it raised (LostJob)."""
        progress = self._progress
        if progress is not None:
            # shielded: a cancelled step leaves its write to finish, and run() waits for it
            await asyncio.shield(progress)
            self._progress = None

    def _close_step(self) -> None:
        if self.step is not None and self.step.value not in self.durations:
            self.durations[self.step.value] = round(time.monotonic() - self._started, 3)


def _default_branch(app: App) -> str | None:
    """The branch whose cache a new branch starts from (None: the app names none)."""
    try:
        return default_branch(app)
    except DeployqError:
        return None


def _final(exc: PipelineError) -> PipelineError:
    """``exc``, marked as one another attempt cannot fix."""
    exc.retryable = False
    return exc


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None
