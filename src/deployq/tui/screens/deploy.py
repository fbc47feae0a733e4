"""The deploy dialog: app, ref, priority. Dismisses with a DeployRequest or None."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from deployq.models import Priority
from deployq.tui.format import RED, YELLOW


@dataclass(frozen=True)
class DeployRequest:
    app: str
    ref: str
    """As typed: a branch, ``tags/NAME`` or a full ref (``deployq.manual`` resolves it)."""
    priority: Priority


#: what a check of a request found: ("error", why) refuses it; ("warning", why) lets a second
#: ctrl+s deploy anyway (the check itself could not be made)
RefProblem = tuple[str, str]
RefCheck = Callable[[DeployRequest], Awaitable[RefProblem | None]]


class DeployScreen(ModalScreen[DeployRequest | None]):
    """Ask which app to build, from which ref, at which priority; check the ref first.

    Focus starts on the app, so Enter never deploys at once; Enter in the ref field moves to
    the Deploy button. A ref the repository does not have is refused in the dialog.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Close", id="deploy_close"),
        Binding("ctrl+s", "submit", "Deploy", id="deploy_submit"),
    ]

    def __init__(
        self,
        apps: dict[str, str],
        *,
        check: RefCheck,
        app: str | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> None:
        """``apps``: app name -> its default ref (first branch); ``check`` looks a request up."""
        super().__init__()
        self.apps = apps
        self.check = check
        self.initial_app = app if app in apps else next(iter(apps), None)
        self.initial_priority = priority
        self._override: DeployRequest | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Deploy an app", classes="question")
            yield Label("App")
            yield Select(
                [(name, name) for name in self.apps],
                value=self.initial_app if self.initial_app else Select.NULL,
                allow_blank=self.initial_app is None,
                id="deploy-app",
            )
            yield Label("Ref (branch, tags/NAME or a full ref)")
            yield Input(self.apps.get(self.initial_app or "", "main"), id="deploy-ref")
            yield Label("Priority")
            yield Select(
                [(p.name.lower(), p) for p in Priority],
                value=self.initial_priority,
                allow_blank=False,
                id="deploy-priority",
            )
            yield Static("", id="deploy-problem")
            with Horizontal(classes="buttons"):
                yield Button("Deploy (ctrl+s)", variant="primary", id="deploy")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#deploy-problem", Static).display = False
        self.query_one("#deploy-app", Select).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "deploy-app" and isinstance(event.value, str):
            self.query_one("#deploy-ref", Input).value = self.apps.get(event.value, "main")

    def on_input_submitted(self) -> None:
        self.query_one("#deploy", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "deploy":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        app = self.query_one("#deploy-app", Select).value
        ref = self.query_one("#deploy-ref", Input).value.strip()
        priority = self.query_one("#deploy-priority", Select).value
        if not isinstance(app, str) or not ref or not isinstance(priority, Priority):
            self._show(("error", "choose an app and a ref"))
            return
        request = DeployRequest(app, ref, priority)
        if request == self._override:
            self.dismiss(request)
            return
        self._show(("checking", f"checking {ref} in {app}'s repository…"))
        self._check(request)

    @work(exclusive=True, group="deploy-check", exit_on_error=False)
    async def _check(self, request: DeployRequest) -> None:
        problem = await self.check(request)
        if problem is None:
            self.dismiss(request)
            return
        self._override = request if problem[0] == "warning" else None
        self._show(problem)

    def _show(self, problem: RefProblem) -> None:
        severity, text = problem
        style = {"error": f"bold {RED}", "warning": YELLOW}.get(severity, "dim")
        box = self.query_one("#deploy-problem", Static)
        box.update(Text(text, style=style))
        box.display = True
