"""The console's views do not import its app: the app imports the views, and they talk back
with Textual messages (``deployq.tui.messages``), so there is no import cycle to hide."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import deployq.tui

TUI = Path(deployq.tui.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_view_or_widget_imports_the_app() -> None:
    modules = sorted(TUI.glob("screens/*.py")) + sorted(TUI.glob("widgets/*.py"))
    modules += [TUI / "context.py", TUI / "messages.py", TUI / "commands.py"]
    offenders = {
        str(path.relative_to(TUI)): sorted(
            name for name in _imports(path) if name in {"deployq.tui.app", "deployq.tui.DeployqApp"}
        )
        for path in modules
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_a_view_imports_without_the_app() -> None:
    code = (
        "import sys, deployq.tui.screens.queue, deployq.tui.screens.job; "
        "print('deployq.tui.app' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
