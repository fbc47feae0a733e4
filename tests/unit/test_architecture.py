"""The design of record holds: docs/ARCHITECTURE.md names only what exists, the store is
reached through its public surface, and only the store and db/ know the database driver."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "deployq"
DOC = ROOT / "docs" / "ARCHITECTURE.md"
#: top-level folders a path in the document may start with
_TOP = ("src/", "sql/", "tests/", "bench/", "scripts/", "docs/", "systemd/")


def _code_spans() -> list[str]:
    return re.findall(r"`([^`\n]+)`", DOC.read_text(encoding="utf-8"))


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports (absolute names; relative imports are not used)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def _outside(*folders: str) -> list[Path]:
    inside = [SRC / f for f in folders]
    return [p for p in sorted(SRC.rglob("*.py")) if not any(p.is_relative_to(i) for i in inside)]


def test_every_path_the_architecture_names_exists() -> None:
    paths = [s for s in _code_spans() if s.startswith(_TOP) and not re.search(r"<|NNN", s)]
    assert paths, "the document names no path"
    missing = [p for p in paths if not any(ROOT.glob(p))]
    assert missing == []


def test_every_module_the_architecture_names_exists() -> None:
    modules = [s for s in _code_spans() if re.fullmatch(r"deployq(\.[a-z_]+)+", s)]
    assert modules, "the document names no module"
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    assert missing == []


def test_the_readme_links_the_architecture() -> None:
    assert "(docs/ARCHITECTURE.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_nothing_outside_the_store_imports_a_store_submodule() -> None:
    offenders = [
        f"{path.relative_to(SRC)}: {name}"
        for path in _outside("store")
        for name in _imports(path)
        if name.startswith("deployq.store.") and name.split(".")[2].startswith("_")
    ]
    assert offenders == []
    # unit tests of the store's own rules (tests/unit) may look inside it; nothing else
    users = [*ROOT.glob("tests/*/**/*.py"), *ROOT.glob("tests/*.py"), *ROOT.glob("bench/*.py")]
    for path in users:
        if path.is_relative_to(ROOT / "tests" / "unit"):
            continue
        private = [n for n in _imports(path) if re.match(r"deployq\.store\._", n)]
        assert private == [], path


def test_only_the_store_and_db_import_the_database_driver() -> None:
    offenders = [
        f"{path.relative_to(SRC)}: {name}"
        for path in _outside("store", "db")
        for name in _imports(path)
        if name.split(".")[0] in ("psycopg", "psycopg_pool")
    ]
    assert offenders == []


def test_nothing_refers_to_files_outside_the_repository() -> None:
    pattern = re.compile(r"\.\./shared|shared/(DESIGN|BENCHMARKS|STYLE)\.md|\bDESIGN\.md")
    texts = [
        ROOT / "README.md",
        *ROOT.glob("docs/*.md"),
        *SRC.rglob("*.py"),
        *ROOT.glob("bench/*.py"),
        *ROOT.glob("scripts/*"),
    ]
    offenders = [
        str(path.relative_to(ROOT))
        for path in texts
        if path.is_file() and pattern.search(path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert offenders == []
