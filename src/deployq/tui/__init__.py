"""The operator console (``deployq tui``): a Textual client of deployq.store."""

from deployq.tui.app import DeployqApp

__all__ = ["DeployqApp"]
