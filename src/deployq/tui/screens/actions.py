"""The verbs on a job, shared by the queue and the job view: c r + - d (and C, force).

Every verb goes through a store method that takes ``actor=``, so job_events records the
operator's user name. Destructive verbs ask first; a read-only console has none of them.
"""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType

from deployq.errors import CheckoutError, InvalidInput
from deployq.gitauth import app_git_auth, ls_remote
from deployq.manual import default_branch, manual_trigger
from deployq.models import AppSpec, Job, JobStatus, Priority
from deployq.redact import redact_urls
from deployq.tui.screens.base import LiveScreen
from deployq.tui.screens.confirm import ConfirmScreen
from deployq.tui.screens.deploy import DeployRequest, DeployScreen, RefProblem

PRIO = Binding.Group("Prio", compact=True)
#: how long the deploy dialog waits for `git ls-remote` to check a ref
REF_CHECK_TIMEOUT_S = 10.0


class JobActionsScreen(LiveScreen):
    """A view with a current job and the verbs that act on it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "cancel", "Cancel", id="cancel", tooltip="cancel the job (asks first)"),
        Binding(
            "C",
            "force_cancel",
            "Kill",
            id="force_cancel",
            tooltip="force-cancel (asks first)",
            show=False,  # the key bar has room for one cancel at 80 columns; ? lists it
        ),
        Binding("r", "retry", "Retry", id="retry", tooltip="queue a new attempt"),
        Binding(
            "plus", "priority_up", "Prio+", id="priority_up", tooltip="raise priority", group=PRIO
        ),
        Binding(
            "minus",
            "priority_down",
            "Prio-",
            id="priority_down",
            tooltip="lower priority",
            group=PRIO,
        ),
        Binding("d", "deploy", "Deploy", id="deploy", tooltip="build an app from a ref"),
    ]

    def current_job(self) -> Job | None:
        """The job the verbs act on."""
        raise NotImplementedError

    def key_applies(self, action: str) -> bool:
        """Whether the key bar offers ``action`` for the current job (its key still answers
        with a reason when pressed anyway)."""
        job = self.current_job()
        if action in {"cancel", "force_cancel"}:
            return job is not None and not job.status.is_final
        if action == "retry":
            return job is not None and job.status.is_final
        if action in {"priority_up", "priority_down"}:
            return job is not None and job.status is JobStatus.QUEUED
        return True

    def _target(self) -> Job | None:
        if self.ctx.refuse_if_read_only():
            return None
        job = self.current_job()
        if job is None:
            self.notify("no job selected", severity="warning")
        return job

    def action_cancel(self) -> None:
        self._ask_cancel(force=False)

    def action_force_cancel(self) -> None:
        self._ask_cancel(force=True)

    def _ask_cancel(self, *, force: bool) -> None:
        job = self._target()
        if job is None:
            return
        if job.status.is_final:
            self.notify(f"job #{job.id} is {job.status.value} already", severity="warning")
            return
        what = "Force-cancel (kill the build of)" if force else "Cancel"
        question = f"{what} job #{job.id} — {job.app_name} {job.branch} ({job.status.value})?"

        async def answered(yes: bool | None) -> None:
            if not yes:
                return
            done = await self.ctx.act(
                self.ctx.store.jobs.cancel(job.id, actor=self.ctx.user, force=force),
                what=f"{'force-cancel' if force else 'cancel'} #{job.id}",
            )
            if done is not None:
                state = "cancelled" if done.status is JobStatus.CANCELLED else "asked to stop"
                self.notify(f"job #{job.id} {state}")

        self.app.push_screen(
            ConfirmScreen(question, verb="Force cancel" if force else "Cancel"), answered
        )

    async def action_retry(self) -> None:
        job = self._target()
        if job is None:
            return
        new = await self.ctx.act(
            self.ctx.store.jobs.retry(job.id, actor=self.ctx.user), what=f"retry #{job.id}"
        )
        if new is not None:
            self.notify(f"job #{job.id} retried as #{new.id}")

    async def action_priority_up(self) -> None:
        await self._shift_priority(+1)

    async def action_priority_down(self) -> None:
        await self._shift_priority(-1)

    async def _shift_priority(self, step: int) -> None:
        job = self._target()
        if job is None:
            return
        value = int(job.priority) + step
        if not int(Priority.LOW) <= value <= int(Priority.CRITICAL):
            self.notify(f"job #{job.id} is {job.priority.name.lower()} already")
            return
        changed = await self.ctx.act(
            self.ctx.store.jobs.set_priority(job.id, Priority(value), actor=self.ctx.user),
            what=f"priority of #{job.id}",
        )
        if changed is not None:
            self.notify(f"job #{job.id} priority {changed.priority.name.lower()}")

    async def action_deploy(self) -> None:
        if self.ctx.refuse_if_read_only():
            return
        apps = await self.ctx.act(self.ctx.store.apps.all(), what="deploy")
        if apps is None:
            return
        if not apps:
            self.notify("no apps yet: add one with `deployq app add`", severity="warning")
            return
        job = self.current_job()
        choices = {a.name: _default_ref(a) for a in apps}
        self.app.push_screen(
            DeployScreen(choices, check=self._check_ref, app=job.app_name if job else None),
            self._deploy,
        )

    async def _check_ref(self, request: DeployRequest) -> RefProblem | None:
        """Refuse what would fail at checkout: a ref git would refuse, or one the repository
        does not have (``git ls-remote``)."""
        app = await self.ctx.attempt(self.ctx.store.apps.get(request.app))
        if app is None:
            return ("error", f"cannot read app {request.app}: see the banner or the toast")
        try:
            trigger = manual_trigger(
                app, actor=self.ctx.user, ref=request.ref, priority=request.priority
            )
        except InvalidInput as exc:
            return ("error", exc.message)
        try:
            with app_git_auth(app, self.ctx.store.settings) as auth:  # the checkout's
                found = await ls_remote(
                    app.repo_url, trigger.ref, auth=auth, timeout_s=REF_CHECK_TIMEOUT_S
                )
        except CheckoutError as exc:
            return ("warning", f"could not check the ref ({exc.message}); ctrl+s deploys anyway")
        if trigger.ref not in found:
            return (
                "error",
                f"{redact_urls(app.repo_url)} has no {trigger.ref}: nothing was queued "
                "(check the name; a tag is tags/NAME)",
            )
        return None

    async def _deploy(self, request: DeployRequest | None) -> None:
        if request is None:
            return
        app = await self.ctx.act(self.ctx.store.apps.get(request.app), what=f"deploy {request.app}")
        if app is None:
            return
        try:
            trigger = manual_trigger(
                app, actor=self.ctx.user, ref=request.ref, priority=request.priority
            )
        except InvalidInput as exc:
            self.notify(f"{request.app} not queued: {exc.message}", severity="error")
            return
        result = await self.ctx.act(
            self.ctx.store.queue.enqueue(trigger), what=f"deploy {request.app}"
        )
        if result is None:
            return
        if result.jobs:
            ids = ", ".join(f"#{j.id}" for j in result.jobs)
            self.notify(f"{request.app} {trigger.short_ref} queued: {ids}")
        else:
            reasons = "; ".join(result.skipped.values()) or "nothing to build"
            self.notify(f"{request.app} not queued: {reasons}", severity="warning")


def _default_ref(app: AppSpec) -> str:
    """The deploy dialog's ref: the app's default branch, or empty when it has none."""
    try:
        return default_branch(app)
    except InvalidInput:
        return ""
