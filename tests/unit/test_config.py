from pathlib import Path

import pytest

from deployq.config import load_settings
from deployq.errors import ConfigError


def test_durations_accept_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYQ_LEASE_TTL", "2m")
    monkeypatch.setenv("DEPLOYQ_BUILD_TIMEOUT", "1h")
    settings = load_settings()
    assert settings.lease_ttl == 120
    assert settings.build_timeout == 3600


def test_bad_value_names_setting_value_and_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYQ_SMTP_TLS", "maybe")
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert "DEPLOYQ_SMTP_TLS='maybe'" in message
    assert "'none', 'starttls' or 'tls'" in message


def test_toml_file_is_read_and_env_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "deployq.toml"
    config.write_text('listen = "127.0.0.1:9999"\nworker_concurrency = 7\n')
    monkeypatch.setenv("DEPLOYQ_WORKER_CONCURRENCY", "3")
    settings = load_settings(config)
    assert settings.listen_port == 9999
    assert settings.worker_concurrency == 3


def test_unknown_setting_in_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "deployq.toml"
    config.write_text("lease_tll = 5\n")
    with pytest.raises(ConfigError, match="DEPLOYQ_LEASE_TLL: unknown setting"):
        load_settings(config)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYQ_SMTP_PASSWORD", "hunter2")
    monkeypatch.setenv("DEPLOYQ_DATABASE_URL", "postgresql://u:pw-secret@db/x")
    settings = load_settings()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "hunter2" not in shown
    assert "pw-secret" not in shown
    assert settings.smtp_password is not None
    assert settings.smtp_password.get_secret_value() == "hunter2"


def test_listen_must_be_host_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYQ_LISTEN", "8080")
    with pytest.raises(ConfigError, match=r"DEPLOYQ_LISTEN='8080': .*HOST:PORT"):
        load_settings()


def test_delivery_body_retention_is_a_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().delivery_body_retention == 14 * 86400
    monkeypatch.setenv("DEPLOYQ_DELIVERY_BODY_RETENTION", "36h")
    assert load_settings().delivery_body_retention == 36 * 3600
    monkeypatch.setenv("DEPLOYQ_DELIVERY_BODY_RETENTION", "a fortnight")
    with pytest.raises(ConfigError, match="DEPLOYQ_DELIVERY_BODY_RETENTION='a fortnight'"):
        load_settings()
