"""The deploy dialog: app, ref, priority. Dismisses with a DeployRequest or None."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from deployq.models import Priority


@dataclass(frozen=True)
class DeployRequest:
    app: str
    ref: str
    """As typed: a branch, ``tags/NAME`` or a full ref (``deployq.manual`` resolves it)."""
    priority: Priority


class DeployScreen(ModalScreen[DeployRequest | None]):
    """Ask which app to build, from which ref, at which priority."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Close", id="deploy_close"),
        Binding("ctrl+s", "submit", "Deploy", id="deploy_submit"),
    ]

    def __init__(
        self, apps: dict[str, str], *, app: str | None = None, priority: Priority = Priority.NORMAL
    ) -> None:
        """``apps``: app name -> its default ref (first branch)."""
        super().__init__()
        self.apps = apps
        self.initial_app = app if app in apps else next(iter(apps), None)
        self.initial_priority = priority

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
            yield Label("Ref (branch, or refs/tags/…)")
            yield Input(self.apps.get(self.initial_app or "", "main"), id="deploy-ref")
            yield Label("Priority")
            yield Select(
                [(p.name.lower(), p) for p in Priority],
                value=self.initial_priority,
                allow_blank=False,
                id="deploy-priority",
            )
            with Horizontal(classes="buttons"):
                yield Button("Deploy (ctrl+s)", variant="primary", id="deploy")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#deploy-ref", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "deploy-app" and isinstance(event.value, str):
            self.query_one("#deploy-ref", Input).value = self.apps.get(event.value, "main")

    def on_input_submitted(self) -> None:
        self.action_submit()

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
            self.notify("choose an app and a ref", severity="warning")
            return
        self.dismiss(DeployRequest(app, ref, priority))
