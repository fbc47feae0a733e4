"""The operator console (``deployq tui``): a Textual client of deployq.store.

``DeployqApp`` is imported on first use, so a view module (``deployq.tui.screens.*``) loads
without the app that imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deployq.tui.app import DeployqApp

__all__ = ["DeployqApp"]


def __getattr__(name: str) -> Any:
    if name == "DeployqApp":
        from deployq.tui.app import DeployqApp

        return DeployqApp
    raise AttributeError(f"module 'deployq.tui' has no attribute {name!r}")
