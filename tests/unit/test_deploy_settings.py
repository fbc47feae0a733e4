"""Run settings (`app add --port/--env/--volume/--health-*`): what is accepted, what is refused."""

from __future__ import annotations

from typing import Any

import click
import pytest

from deployq.cli.deploy_options import pop_deploy_settings
from deployq.errors import InvalidInput
from deployq.models import DeploySettings, PortSpec

NO_OPTIONS: dict[str, Any] = {
    "deploy_targets": (),
    "deploy_webhook": None,
    "deploy_webhook_secret": None,
    "ports": (),
    "env": (),
    "volumes": (),
    "network": None,
    "network_aliases": (),
    "health_path": None,
    "health_port": None,
    "health_cmd": None,
    "health_timeout": None,
    "strategy": None,
    "keep_releases": None,
}


def settings(**given: Any) -> DeploySettings | None:
    options = {**NO_OPTIONS, "deploy_targets": ("local",), **given, "other": 1}
    result = pop_deploy_settings(options)
    assert options == {"other": 1}  # the run settings are taken out, the rest stays
    return result


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8080:80", (None, 8080, 80, "tcp")),
        ("127.0.0.1:8080:80", ("127.0.0.1", 8080, 80, "tcp")),
        ("[::1]:8080:80/udp", ("::1", 8080, 80, "udp")),
        ("80", (None, None, 80, "tcp")),
        ("127.0.0.1::80", ("127.0.0.1", None, 80, "tcp")),
    ],
)
def test_ports_are_read_as_docker_run_p_reads_them(
    text: str, expected: tuple[str | None, int | None, int, str]
) -> None:
    port = PortSpec.parse(text)
    assert (port.ip, port.host_port, port.container_port, port.proto) == expected


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ({"deploy_targets": (), "ports": ("8080",)}, "without a place to run"),
        ({"ports": ("80:80:80",)}, "port '80:80:80': expected [IP:]HOST:CONTAINER"),
        ({"ports": ("70000:80",)}, "70000 is not a port number"),
        ({"volumes": ("data",)}, "volume 'data': expected NAME:/path"),
        ({"env": ("1X=y",)}, "environment variable name '1X'"),
        ({"health_path": "/h"}, "--health-path needs --health-port"),
        ({"health_path": "h", "health_port": 80}, "health path 'h' must start with /"),
        ({"health_path": "/h", "health_cmd": "true", "health_port": 80}, "not both"),
        ({"network_aliases": ("web",)}, "--network-alias needs --network"),
        (
            {"strategy": "start-first", "ports": ("8080:80",)},
            "cannot both publish host port 8080: use --strategy recreate",
        ),
    ],
)
def test_bad_run_settings_say_what_is_wrong(given: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        settings(**given)
    assert error in raised.value.message


def test_an_env_option_without_a_value_is_refused_without_echoing_it() -> None:
    with pytest.raises(click.BadParameter) as raised:
        settings(env=("s3cr3t-token",))
    assert "s3cr3t-token" not in str(raised.value)


def test_no_run_option_means_build_and_push_only() -> None:
    assert settings(deploy_targets=()) is None


def test_the_health_port_defaults_to_the_one_published_container_port() -> None:
    result = settings(ports=("127.0.0.1:8080:80",), health_path="/healthz")
    assert result is not None and result.health_port == 80
    start_first = settings(strategy="start-first", ports=("80",), network="n")
    assert start_first is not None and start_first.strategy.value == "start-first"
