"""The real `deployq` command, run as a subprocess against a real database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fixtures.cli import run_deployq


def test_help_lists_the_commands(cli) -> None:  # type: ignore[no-untyped-def]
    out = cli("--help").stdout
    for command in ("up", "serve", "worker", "migrate", "db-url", "app"):
        assert f"  {command} " in out


def test_migrate_twice_applies_nothing_the_second_time(cli) -> None:  # type: ignore[no-untyped-def]
    first = cli("migrate")
    assert first.returncode == 0, first.stderr
    assert cli("migrate").stdout.strip() == "database is up to date"


def test_unreachable_database_is_one_readable_line(tmp_path: Path) -> None:
    result = run_deployq(
        "migrate", database_url="postgresql://nobody@127.0.0.1:1/x", data_dir=tmp_path
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: cannot connect to PostgreSQL at 127.0.0.1:1/x")
    assert "Connection refused" in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_setting_is_one_readable_line(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("migrate", env={"DEPLOYQ_LEASE_TTL": "soon"})
    assert result.returncode == 1
    assert result.stderr.startswith("error: invalid configuration: DEPLOYQ_LEASE_TTL='soon'")


def test_app_add_list_show_rm(cli) -> None:  # type: ignore[no-untyped-def]
    added = cli(
        "app",
        "add",
        "--no-check",
        "web",
        "--repo",
        "https://github.com/Acme/Web.git",
        "--branch",
        "main",
        "--branch",
        "release/*",
        "--build-arg",
        "MODE=prod",
        "--webhook-secret",
        "s3cret",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["repo_identity"] == "github.com/acme/web"

    listed = json.loads(cli("app", "list", "--json").stdout)
    assert [a["name"] for a in listed] == ["web"]
    assert listed[0]["branches"] == ["main", "release/*"]

    shown = cli("app", "show", "web")
    assert "s3cret" not in shown.stdout
    assert "MODE" in shown.stdout

    duplicate = cli("app", "add", "--no-check", "web", "--repo", "https://github.com/acme/web")
    assert duplicate.returncode == 1
    assert "exists already" in duplicate.stderr

    assert cli("app", "rm", "web", "--yes").returncode == 0
    missing = cli("app", "show", "web")
    assert missing.returncode == 1
    assert "no app named 'web'" in missing.stderr


def test_invalid_app_name_is_explained(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("app", "add", "--no-check", "Bad Name", "--repo", "https://x/y/z")
    assert result.returncode == 1
    assert "app names are" in result.stderr


REGISTRY = {"DEPLOYQ_REGISTRY_URL": "127.0.0.1:5000"}


@pytest.mark.parametrize(
    "image", ["web", "team/web", "127.0.0.1:5000/team/web", "127.0.0.1:5000/web"]
)
def test_app_add_accepts_images_as_docker_writes_them(cli, image: str) -> None:  # type: ignore[no-untyped-def]
    added = cli(
        "app",
        "add",
        "--no-check",
        "demo",
        "--repo",
        "https://example.invalid/d.git",
        "--image",
        image,
        "--json",
        env=REGISTRY,
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["image"] == image


@pytest.mark.parametrize(
    ("image", "rule"),
    [
        ("team/web:1.0", "names a tag (:1.0): give the repository only (team/web)"),
        ("Team/Web", "repository name 'Team/Web' must be lowercase (try 'team/web')"),
        ("team//web", "path component '(empty)' is invalid"),
        (
            "registry.example.com/team/web",
            "is on registry registry.example.com, but the configured registry is 127.0.0.1:5000",
        ),
    ],
)
def test_app_add_refuses_an_invalid_image_with_the_rule_it_breaks(  # type: ignore[no-untyped-def]
    cli, image: str, rule: str
) -> None:
    refused = cli(
        "app",
        "add",
        "--no-check",
        "demo",
        "--repo",
        "https://example.invalid/d.git",
        "--image",
        image,
        env=REGISTRY,
    )
    assert refused.returncode == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: image "), refused.stderr
    assert rule in lines[0]
    assert "demo" not in cli("app", "list", env=REGISTRY).stdout


def test_app_add_checks_the_repository_its_branches_and_the_registry(  # type: ignore[no-untyped-def]
    cli, git_repo_factory, registry, tmp_path: Path
) -> None:
    repo = git_repo_factory({"Dockerfile": "FROM scratch\n"})
    good = {
        "DEPLOYQ_REGISTRY_URL": registry.url,
        "DEPLOYQ_REGISTRY_INSECURE": "true",
        "DEPLOYQ_REGISTRY_USERNAME": registry.username,
        "DEPLOYQ_REGISTRY_PASSWORD": registry.password,
    }

    missing = (tmp_path / "no-such-repo").as_uri()
    refused = cli("app", "add", "web", "--repo", missing, env=good)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"error: app web not added: repository: git ls-remote {missing}"
    )
    assert refused.stderr.strip().endswith("(--no-check adds it anyway)")

    refused = cli("app", "add", "web", "--repo", repo.url, "--branch", "main", "--branch", "dev",
                  env=good)  # fmt: skip
    assert refused.returncode == 1
    assert f"branch 'dev' does not exist in {repo.url} (it has: main); fix --branch" in (
        refused.stderr
    )

    wrong = {**good, "DEPLOYQ_REGISTRY_PASSWORD": "wrong-password-123"}
    refused = cli("app", "add", "web", "--repo", repo.url, "--branch", "rel/*", env=wrong)
    assert refused.returncode == 1
    assert f"registry: registry http://{registry.url} refused user 'deployq'" in refused.stderr
    assert "wrong-password-123" not in refused.stderr
    assert "web" not in cli("app", "list", env=good).stdout

    added = cli("app", "add", "web", "--repo", repo.url, env=good)
    assert added.returncode == 0, added.stderr
    offline = cli("app", "add", "api", "--no-check", "--repo", missing, env=wrong)
    assert offline.returncode == 0, offline.stderr


def test_app_show_prints_the_options_app_add_takes(cli) -> None:  # type: ignore[no-untyped-def]
    env = {"DEPLOYQ_REGISTRY_URL": "127.0.0.1:5000"}
    added = cli("app", "add", "web", "--no-check", "--repo", "https://github.com/acme/web.git",
                "--branch", "main", "--branch", "release/*", "--image", "team/web",
                "--timeout", "10m", "--reconcile-interval", "1h", "--build-arg", "MODE=prod",
                "--secret", "NPM_TOKEN=s3cret-npm", "--tags", env=env)  # fmt: skip
    assert added.returncode == 0, added.stderr

    shown = cli("app", "show", "web", env=env)

    assert shown.stdout.splitlines() == [
        "app web (github.com/acme/web)",
        "  --repo https://github.com/acme/web.git",
        "  --branch main --branch 'release/*'",
        "  --image 127.0.0.1:5000/team/web",
        "  --dockerfile Dockerfile",
        "  --context .",
        "  --build-arg MODE=prod",
        "  --secret 'NPM_TOKEN=**********'",
        "  --tags",
        "  --on-new-push supersede",
        "  --concurrency 1",
        "  --priority normal",
        "  --timeout 10m",
        "  --reconcile-interval 1h",
    ]
    listed = cli("app", "list", env={**env, "COLUMNS": "200"}).stdout.splitlines()
    assert listed[1].split()[3] == "127.0.0.1:5000/team/web"


def test_usage_errors_exit_1_like_every_other_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("deploy", "web", "--bogus")
    assert result.returncode == 1
    assert "No such option '--bogus'" in result.stderr
    result = cli("app", "add", "web", "--repo", "x", "--timeout", "soon")
    assert result.returncode == 1
    assert "'soon': expected seconds or a duration like 90s, 5m, 2h, 30d" in result.stderr
