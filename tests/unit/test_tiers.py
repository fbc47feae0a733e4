"""The fast tier stays fast: a unit test cannot start a service, even through a fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFTEST = Path(__file__).parents[1] / "conftest.py"

SERVICE = """
import pytest

@pytest.fixture
def database_url():
    raise AssertionError("a service was started")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A copy of the harness with one service fixture (run without the installed plugins,
    which take seconds to load and play no part here)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(**{"fixtures/__init__": "", "fixtures/database": SERVICE})
    return pytester


def test_a_unit_test_using_a_service_fixture_is_refused_by_name(suite: pytest.Pytester) -> None:
    suite.makepyfile(
        **{
            "unit/test_fast": """
import pytest

@pytest.fixture
def store(database_url):
    return database_url

def test_pure():
    assert sorted("tier") == ["e", "i", "r", "t"]

def test_sneaky(store):
    assert store
"""
        }
    )

    result = suite.runpytest_subprocess("unit")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*unit tests run without services*", "*unit/test_fast.py::test_sneaky uses database_url*"]
    )
    assert "test_pure uses" not in result.stderr.str()


def test_integration_tests_may_use_services(suite: pytest.Pytester) -> None:
    suite.makepyfile(**{"integration/test_slow": "def test_db(database_url):\n    pass\n"})

    result = suite.runpytest_subprocess("integration")

    result.assert_outcomes(errors=1)  # the fixture ran: "a service was started"
    result.stdout.fnmatch_lines(["*a service was started*"])
