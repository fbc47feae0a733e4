"""`deployq doctor`'s Harbor scanner check against the FAKE Harbor API
(tests/fixtures/harbor_fake.py; Harbor cannot run here): a project without a scanner is a
warning that says scans will be 'scan unavailable', never a failure."""

from __future__ import annotations

from typing import Any

from deployq.cli.doctor import render
from deployq.config import Settings
from deployq.doctor import Check, check_harbor_scanner
from fixtures.harbor_fake import FakeHarbor


def harbor_settings(url: str, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "registry_url": url,
        "registry_username": "robot$deployq",
        "registry_password": "harbor-robot-secret",
        "registry_insecure": True,
        "harbor_api": True,
        "harbor_scan": True,
    }
    return Settings(**(values | extra))


async def test_a_project_with_a_scanner_passes(harbor_fake: tuple[FakeHarbor, str]) -> None:
    fake, url = harbor_fake
    fake.projects |= {"deployq-old": 1, "deployq": 2}  # Harbor's name filter is fuzzy

    check = await check_harbor_scanner(
        harbor_settings(url, harbor_admin_username="admin", harbor_admin_password="Harbor12345")
    )

    assert check.ok and not check.warning and not check.skipped
    assert check.detail == "Harbor project deployq scans with Trivy"
    # asked by the project's id (Harbor 2.0), with the administrator's login
    assert ("GET", "/api/v2.0/projects/2/scanner") in fake.requests
    assert fake.users[-1] == "admin"


async def test_no_scanner_is_a_warning_not_a_failure(harbor_fake: tuple[FakeHarbor, str]) -> None:
    fake, url = harbor_fake
    fake.projects["deployq"] = 1
    fake.scanner = False

    check = await check_harbor_scanner(harbor_settings(url))
    text = render([Check("database", True, "PostgreSQL 16"), check])

    assert check.ok and check.warning and not check.skipped  # doctor still exits 0
    assert check.detail == (
        "Harbor project deployq has no scanner: scan results will be 'scan unavailable'"
    )
    assert "Interrogation Services" in check.fix and "DEPLOYQ_HARBOR_SCAN=false" in check.fix
    assert "! harbor scanner  Harbor project deployq has no scanner" in text
    assert "fix: a Harbor administrator adds one" in text
    assert text.endswith("nothing is broken; 1 warning(s)")
    assert fake.users[-1] == "robot$deployq"  # no admin login: the one scans are asked with


async def test_the_check_is_skipped_without_scans_or_before_the_project_exists(
    harbor_fake: tuple[FakeHarbor, str],
) -> None:
    fake, url = harbor_fake

    off = await check_harbor_scanner(harbor_settings(url, harbor_scan=False))
    missing = await check_harbor_scanner(harbor_settings(url))

    assert off.skipped and "DEPLOYQ_HARBOR_SCAN" in off.detail
    assert fake.requests == [("GET", "/api/v2.0/projects?name=deployq")]
    assert missing.skipped and missing.ok
    assert missing.detail == "skipped: Harbor has no project deployq yet (made on first push)"


async def test_a_refused_login_is_a_warning_that_says_why(
    harbor_fake: tuple[FakeHarbor, str],
) -> None:
    fake, url = harbor_fake
    fake.projects["deployq"] = 1

    check = await check_harbor_scanner(harbor_settings(url, registry_password="not-it"))

    assert check.ok and check.warning
    assert check.detail.startswith("cannot tell whether Harbor project deployq has a scanner:")
    assert "HTTP 401" in check.detail and "not-it" not in check.detail + check.fix
