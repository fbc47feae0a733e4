"""One home for durations: what operators type, what measured times and settings print as."""

from __future__ import annotations

import pytest

from deployq.config import DEFAULT_DOCKER_HOST, Settings
from deployq.durations import DURATION_HINT, elapsed, parse_duration, setting


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        (" 5m ", 300.0),
        ("2h", 7200.0),
        ("30d", 2_592_000.0),
        ("1.5s", 1.5),
        ("250ms", 0.25),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_durations_parse_as_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "5 minutes", "-5m", "5m3s", "", "1w"])
def test_anything_else_is_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="90s, 5m, 2h, 30d") as err:
        parse_duration(text)
    assert str(err.value) == DURATION_HINT


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, ""),
        (-3, "0s"),
        (0.4, "0s"),
        (42, "42s"),
        (59.6, "1m00s"),
        (192, "3m12s"),
        (3900, "1h05m"),
        (90_000, "1d01h"),
    ],
)
def test_measured_times_print_in_two_units(seconds: float | None, shown: str) -> None:
    assert elapsed(seconds) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0s"),
        (90, "90s"),
        (600, "10m"),
        (5400, "90m"),
        (7200, "2h"),
        (2_592_000, "30d"),
        (0.25, "250ms"),
    ],
)
def test_settings_print_exactly_as_options_take_them(seconds: float, shown: str) -> None:
    assert setting(seconds) == shown
    assert parse_duration(shown) == pytest.approx(seconds)


def test_the_local_engine_is_the_setting_then_docker_host_then_the_socket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert Settings().local_docker_host == DEFAULT_DOCKER_HOST
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2376")
    assert Settings().local_docker_host == "tcp://127.0.0.1:2376"
    assert Settings(docker_host="ssh://builder@big1").local_docker_host == "ssh://builder@big1"
