"""One home for masking secrets: known values, credentials in URLs, chat webhook URLs."""

from __future__ import annotations

import pytest

from deployq.redact import MASK, Redactor, redact_urls, scrub_url, url_origin
from deployq.worker.logbuffer import collapse_cr


def test_the_mask_is_the_one_secretstr_prints() -> None:
    from pydantic import SecretStr

    assert str(SecretStr("hunter2")) == MASK


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "https://bot:t0ken@git.example.com/a/b.git",
            f"https://bot:{MASK}@git.example.com/a/b.git",
        ),
        ("https://ghp_abcdef@github.com/a/b.git", f"https://{MASK}@github.com/a/b.git"),
        (
            "clone http://u:p@h:8080/x and http://v:q@h/y",
            f"clone http://u:{MASK}@h:8080/x and http://v:{MASK}@h/y",
        ),
        ("postgresql://deployq:pw@db/deployq", f"postgresql://deployq:{MASK}@db/deployq"),
        ("ssh://git@github.com/acme/web.git", "ssh://git@github.com/acme/web.git"),
        ("git@github.com:acme/web.git", "git@github.com:acme/web.git"),
        ("https://github.com/acme/web.git", "https://github.com/acme/web.git"),
        ("mail ann@example.com", "mail ann@example.com"),
    ],
)
def test_url_credentials_are_masked_and_nothing_else(text: str, shown: str) -> None:
    assert redact_urls(text) == shown


def test_known_secrets_longest_first_and_url_passwords_are_masked() -> None:
    redact = Redactor(["hunter2-token", "hunter2", None, "ab"])
    line = redact("git clone https://bot:p4ss@git.example.com/x.git with hunter2-token ab")
    assert line == f"git clone https://bot:{MASK}@git.example.com/x.git with {MASK} ab"


def test_secrets_added_later_are_masked_too() -> None:
    redact = Redactor()
    redact.add("s3cret-value", "xy")
    assert redact("token is s3cret-value, xy") == f"token is {MASK}, xy"


def test_chat_webhook_urls_show_their_origin_only() -> None:
    url = "https://hooks.example.com:8443/services/T0001/B0002/SeCrEtToKeN?x=1"
    assert url_origin(url) == "https://hooks.example.com:8443"
    message = scrub_url(f"cannot reach {url}; path /services/T0001/B0002/SeCrEtToKeN?x=1", url)
    assert "SeCrEtToKeN" not in message
    assert message.startswith("cannot reach https://hooks.example.com:8443;")


def test_carriage_returns_keep_the_last_state_of_a_progress_bar() -> None:
    assert collapse_cr("pulling 10%\rpulling 50%\rpulling 100%") == "pulling 100%"
    assert collapse_cr("done\r") == "done"
    assert collapse_cr("plain line") == "plain line"
