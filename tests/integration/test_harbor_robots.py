"""`deployq harbor robot create` (docs/harbor.md), the real command against a real database and
the FAKE Harbor API (tests/fixtures/harbor_fake.py, Harbor's published v2.0 robot API): a
project robot with push and pull only, its secret sealed as the app's registry login and
never in any output nor in a dump of the database; Harbor's refusals are one line; a robot
made with --allow-delete lets `deployq prune` delete the app's old tags."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pgserver
import pytest

from deployq.config import Settings
from deployq.models import AppSpec
from deployq.redact import MASK
from deployq.registry import HarborClient
from deployq.store import Store
from fixtures.harbor_fake import FakeHarbor
from integration.test_harbor_retention import pushed, tags_of

PG_DUMP = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
DIGEST = "sha256:" + "ab" * 32
PUSH_PULL = [
    {"resource": "repository", "action": "push"},
    {"resource": "repository", "action": "pull"},
]


@pytest.fixture
def harbor(harbor_fake: tuple[FakeHarbor, str]) -> tuple[FakeHarbor, str]:
    fake, url = harbor_fake
    fake.projects["deployq"] = 1
    return fake, url


def _env(settings: Settings, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYQ_")}
    assert settings.database_url is not None
    env |= {
        "DEPLOYQ_DATABASE_URL": settings.database_url.get_secret_value(),
        "DEPLOYQ_DATA_DIR": str(settings.data_dir),
        "DEPLOYQ_REGISTRY_URL": url,
        "DEPLOYQ_REGISTRY_USERNAME": "robot$deployq",
        "DEPLOYQ_REGISTRY_PASSWORD": "harbor-robot-secret",
        "DEPLOYQ_HARBOR_ADMIN_USERNAME": "admin",
        "DEPLOYQ_HARBOR_ADMIN_PASSWORD": "Harbor12345",
    }
    return env | extra


async def deployq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command, in a thread: the fake Harbor answers from this test's event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "deployq", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _dump(database_url: str) -> str:
    return subprocess.run(
        [str(PG_DUMP), "--dbname", database_url],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout


async def test_a_robot_for_an_app_pushes_and_pulls_only_and_its_secret_stays_sealed(
    store: Store, settings: Settings, database_url: str, harbor: tuple[FakeHarbor, str]
) -> None:
    fake, url = harbor
    await store.apps.add(AppSpec(name="web", repo_url="https://github.com/example/web.git"))
    env = _env(settings, url)

    created = await deployq(env, "harbor", "robot", "create", "deployq", "--app", "web")

    assert created.returncode == 0, created.stderr
    [(name, robot)] = fake.robots.items()
    secret = robot["secret"]
    assert name == "robot$deployq+web"
    assert robot["body"]["level"] == "project"
    assert robot["body"]["permissions"] == [
        {"kind": "project", "namespace": "deployq", "access": PUSH_PULL}
    ]
    assert fake.users[-1] == "admin"
    assert "created robot account robot$deployq+web in Harbor project deployq" in created.stdout
    shown = await deployq(env, "app", "show", "web", "--json")
    assert json.loads(shown.stdout)["registry_username"] == "robot$deployq+web"
    assert json.loads(shown.stdout)["registry_password"] == MASK
    # the app keeps its robot when it is changed with --replace
    replaced = await deployq(
        env, "app", "add", "web", "--repo", "https://github.com/example/web2.git", "--no-check",
        "--replace",
    )  # fmt: skip
    assert replaced.returncode == 0, replaced.stderr
    dump = _dump(database_url)

    for output in (created, shown, replaced):
        assert secret not in output.stdout + output.stderr
    assert "robot$deployq+web" in dump and secret not in dump
    app = await store.apps.get("web")
    assert (app.registry_username, app.registry_password) == ("robot$deployq+web", secret)
    # the app's images are scanned (pushed, tagged, pulled) with its robot
    fake.add_artifact("deployq", "web", DIGEST, {})
    await HarborClient.from_settings(Settings(registry_url=url), app).scan("deployq", "web", DIGEST)
    assert fake.users[-1] == "robot$deployq+web"


async def test_a_robot_without_app_goes_to_a_secret_file_of_mode_0600(
    settings: Settings, harbor: tuple[FakeHarbor, str], tmp_path: Path
) -> None:
    fake, url = harbor
    env = _env(settings, url)
    nowhere = await deployq(env, "harbor", "robot", "create", "deployq")
    assert nowhere.returncode == 1
    assert "nowhere to keep the robot's secret" in nowhere.stderr
    assert fake.robots == {}

    path = tmp_path / "robot.secret"
    created = await deployq(env, "harbor", "robot", "create", "deployq", "--secret-file", str(path))

    assert created.returncode == 0, created.stderr
    [(name, robot)] = fake.robots.items()
    assert name == "robot$deployq+deployq"
    assert path.read_text() == robot["secret"] + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    assert robot["secret"] not in created.stdout + created.stderr


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("conflict", "a robot account named 'web' exists already in project deployq (HTTP 409)"),
        (
            "not admin",
            "does not let this login create robot accounts in project deployq (HTTP 403)",
        ),
        ("wrong password", "Harbor refused the login (HTTP 401)"),
        ("no project", "Harbor has no project nope (HTTP 404)"),
        ("other project", "app web pushes to Harbor project deployq (deployq/web), not other"),
    ],
)
async def test_harbors_refusals_are_one_line(
    store: Store,
    settings: Settings,
    harbor: tuple[FakeHarbor, str],
    tmp_path: Path,
    case: str,
    message: str,
) -> None:
    fake, url = harbor
    fake.projects["other"] = 2
    await store.apps.add(AppSpec(name="web", repo_url="https://github.com/example/web.git"))
    env = _env(settings, url)
    project = {"no project": "nope", "other project": "other"}.get(case, "deployq")
    if case == "conflict":
        first = await deployq(env, "harbor", "robot", "create", "deployq", "--app", "web")
        assert first.returncode == 0, first.stderr
    if case == "not admin":  # the registry's robot may push, not create robots
        env.pop("DEPLOYQ_HARBOR_ADMIN_USERNAME")
    if case == "wrong password":
        env["DEPLOYQ_HARBOR_ADMIN_PASSWORD"] = "not-it"
    path = tmp_path / "secret"
    args = ["harbor", "robot", "create", project, "--secret-file", str(path)]
    if case != "no project":  # (an app would say first that it pushes elsewhere)
        args += ["--app", "web"]

    refused = await deployq(env, *args)

    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert message in line
    assert not path.exists()  # made for the secret, removed when there is none
    assert len(fake.robots) == (1 if case == "conflict" else 0)


async def test_a_robot_made_with_allow_delete_lets_prune_delete_the_apps_old_tags(
    store: Store, settings: Settings, harbor: tuple[FakeHarbor, str]
) -> None:
    fake, url = harbor
    await store.apps.add(AppSpec(name="web", repo_url="https://github.com/example/web.git"))
    env = _env(settings, url)
    created = await deployq(
        env, "harbor", "robot", "create", "deployq", "--app", "web", "--allow-delete", "--json"
    )
    assert created.returncode == 0, created.stderr
    [(name, robot)] = fake.robots.items()
    assert robot["body"]["permissions"] == [
        {
            "kind": "project",
            "namespace": "deployq",
            "access": [*PUSH_PULL, {"resource": "repository", "action": "delete"}],
        }
    ]
    assert json.loads(created.stdout)["access"] == [
        "repository:push",
        "repository:pull",
        "repository:delete",
    ]
    old, middle, new = await pushed(store, fake, url.removeprefix("http://"), "web", 3)

    pruned = await deployq(env, "prune", "--app", "web", "--keep-tags", "2")

    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert f"deleted 1 of 4 tags, keeping 2 per branch: {old}" in pruned.stdout
    assert tags_of(fake, "web") == {middle, new, "main"}
    # deleted with the app's robot: Harbor's token service granted it the delete action
    assert fake.users[-1] == name == "robot$deployq+web"
    assert "repository:deployq/web:delete" in fake.tokens.values()
    assert robot["secret"] not in pruned.stdout + pruned.stderr
