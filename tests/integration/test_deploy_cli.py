"""`deployq target`, the run settings of `app add`, `releases` and `rollback`, run as the real
command against a real database."""

from __future__ import annotations

import json
import subprocess

from fixtures.cli import Cli

REPO = "https://github.com/acme/web.git"


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def failure(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed command."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    return result.stderr.strip()


def test_a_target_is_added_listed_and_removed(cli: Cli) -> None:
    out = ok(cli("target", "add", "prod1", "--docker-host", "ssh://deploy@prod1.example.com"))
    assert "added deploy target prod1 (ssh://deploy@prod1.example.com)" in out

    listed = json.loads(ok(cli("target", "list", "--json")))
    assert [(t["name"], t["docker_host"]) for t in listed] == [
        ("prod1", "ssh://deploy@prod1.example.com")
    ]
    assert "not probed yet" in ok(cli("target", "list"))

    assert "exists already" in failure(cli("target", "add", "prod1", "--docker-host", "unix:///x"))
    ok(cli("target", "rm", "prod1", "--yes"))
    assert "no deploy targets yet" in ok(cli("target", "list"))
    assert "no deploy target named 'prod1'" in failure(cli("target", "rm", "prod1", "--yes"))


def test_run_settings_are_stored_and_shown_with_env_values_hidden(cli: Cli) -> None:
    ok(cli("target", "add", "local", "--docker-host", "unix:///var/run/docker.sock"))
    ok(
        cli(
            "app", "add", "--no-check", "web", "--repo", REPO,
            "--deploy-target", "local",
            "--port", "127.0.0.1:8080:80",
            "--env", "DATABASE_URL=postgresql://web:hunter2-secret@db/web",
            "--env", "MODE=prod",
            "--volume", "web-data:/data",
            "--network", "backend", "--network-alias", "web",
            "--health-path", "/healthz", "--health-timeout", "90s",
            "--keep-releases", "5",
        )
    )  # fmt: skip

    shown = ok(cli("app", "show", "web"))
    assert "hunter2-secret" not in shown
    data = json.loads(ok(cli("app", "show", "web", "--json")))
    assert "hunter2-secret" not in json.dumps(data)
    deploy = data["deploy"]
    assert deploy["targets"] == ["local"]
    assert deploy["ports"] == ["127.0.0.1:8080:80"]
    assert deploy["env"] == {"DATABASE_URL": "**********", "MODE": "**********"}
    assert deploy["volumes"] == ["web-data:/data"]
    assert (deploy["network"], deploy["network_aliases"]) == ("backend", ["web"])
    # the health port defaults to the one container port published
    assert (deploy["health_path"], deploy["health_port"]) == ("/healthz", 80)
    assert deploy["health_timeout_s"] == 90
    assert (deploy["strategy"], deploy["keep_releases"]) == ("recreate", 5)

    # a target in use cannot be removed; an app without run settings builds only
    assert "apps deploy to local: web" in failure(cli("target", "rm", "local", "--yes"))
    ok(cli("app", "add", "--no-check", "api", "--repo", REPO))
    assert json.loads(ok(cli("app", "show", "api", "--json")))["deploy"] is None


def test_bad_run_settings_are_one_line_that_says_what_to_do(cli: Cli) -> None:
    ok(cli("target", "add", "local", "--docker-host", "unix:///var/run/docker.sock"))
    unknown = failure(
        cli("app", "add", "--no-check", "web", "--repo", REPO, "--deploy-target", "nowhere")
    )
    assert "no deploy target named 'nowhere'" in unknown
    both = failure(
        cli(
            "app", "add", "--no-check", "web", "--repo", REPO, "--deploy-target", "local",
            "--strategy", "start-first", "--port", "8080:80",
        )
    )  # fmt: skip
    assert "cannot both publish host port 8080: use --strategy recreate" in both
    assert "no apps yet" in ok(cli("app", "list"))


def test_releases_and_rollback_of_an_app_that_never_deployed_say_why(cli: Cli) -> None:
    ok(cli("target", "add", "local", "--docker-host", "unix:///var/run/docker.sock"))
    ok(cli("app", "add", "--no-check", "web", "--repo", REPO, "--deploy-target", "local"))
    ok(cli("app", "add", "--no-check", "lib", "--repo", REPO))

    assert "web has no releases yet" in ok(cli("releases", "web"))
    assert json.loads(ok(cli("releases", "web", "--json"))) == []
    assert "web has no earlier release to roll back to" in failure(cli("rollback", "web"))
    assert "no succeeded job of web with #99" in failure(cli("rollback", "web", "--to", "99"))
    assert "lib has no deploy target" in failure(cli("rollback", "lib"))
    assert "no app named 'nope'" in failure(cli("releases", "nope"))
