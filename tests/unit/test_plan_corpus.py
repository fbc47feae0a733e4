"""The corpus of repository layouts in tests/fixtures/repos/: each is planned by
`deployq plan --json` and must give its expected plan (or its expected error).

Each layout is a directory holding ``repo/`` (the files), and ``expected.json`` (the plan) or
``error.txt`` (words the one-line error must contain); ``args.json`` may give a ``path``
inside the repository (monorepos) and CLI ``options``. DEPLOYQ_UPDATE_PLANS=1 rewrites the
expected plans from the current output: review the diff before committing it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from deployq.cli import main

CORPUS = Path(__file__).parent.parent / "fixtures" / "repos"
LAYOUTS = sorted(p.name for p in CORPUS.iterdir() if (p / "repo").is_dir())
#: the corpus is run with the default base images, whatever the environment says
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}


def _invoke(layout: str) -> tuple[int, str, str]:
    case = CORPUS / layout
    args = json.loads((case / "args.json").read_text()) if (case / "args.json").exists() else {}
    path = case / "repo" / args.get("path", ".")
    runner = CliRunner()
    result = runner.invoke(
        main,
        ["plan", str(path), "--json", *args.get("options", [])],
        env={k: None for k in os.environ if k.startswith("DEPLOYQ_")},
    )
    return result.exit_code, result.stdout, result.stderr


def test_the_corpus_covers_every_provider_and_package_manager() -> None:
    plans = [
        json.loads((CORPUS / name / "expected.json").read_text())
        for name in LAYOUTS
        if (CORPUS / name / "expected.json").exists()
    ]
    assert len(LAYOUTS) >= 25
    assert {p["provider"] for p in plans} == {"python", "node", "go", "static", "php", "ruby"}
    managers = {p["package_manager"] for p in plans}
    assert managers >= {"pip", "poetry", "uv", "pdm", "pipenv", "npm", "yarn", "pnpm", "bun"}
    assert managers >= {"composer", "bundler", "go modules"}
    frameworks = {p["framework"] for p in plans}
    assert frameworks >= {"django", "fastapi", "flask", "next", "vite", "rails", "laravel"}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_gets_its_expected_plan(layout: str) -> None:
    case = CORPUS / layout
    code, out, err = _invoke(layout)

    if (case / "error.txt").exists():
        assert code == 1, out
        assert err.startswith("error: ") and err.count("\n") == 1, err
        assert (case / "error.txt").read_text().strip() in err
        return
    assert code == 0, err
    plan = json.loads(out)
    if os.environ.get("DEPLOYQ_UPDATE_PLANS") == "1":
        (case / "expected.json").write_text(json.dumps(plan, indent=2) + "\n")
    assert plan == json.loads((case / "expected.json").read_text())
    assert "http.server" not in plan["start"]  # never a file server on the source tree


def test_the_real_command_prints_the_plan_as_json() -> None:
    repo = CORPUS / "python-pip-flask" / "repo"

    done = subprocess.run(
        [sys.executable, "-m", "deployq", "plan", str(repo), "--json"],
        capture_output=True,
        text=True,
        env=CLEAN_ENV,
        check=False,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert {k: plan[k] for k in ("provider", "version", "version_source", "package_manager")} == {
        "provider": "python",
        "version": "3.11",
        "version_source": ".python-version",
        "package_manager": "pip",
    }
    assert plan["start"] == "gunicorn app:app --bind 0.0.0.0:$PORT"


def test_the_example_in_docs_zero_config_is_what_the_command_prints() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "zero-config.md").read_text()
    shown = doc.split("    $ deployq plan services/api\n", 1)[1].split("\n\n", 1)[0]
    runner = CliRunner()

    result = runner.invoke(
        main,
        ["plan", str(CORPUS / "python-uv-fastapi-package" / "repo")],
        env={k: None for k in os.environ if k.startswith("DEPLOYQ_")},
    )

    assert result.exit_code == 0, result.stderr
    assert [line.removeprefix("    ") for line in shown.splitlines()] == result.stdout.splitlines()
