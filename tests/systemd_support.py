"""The shipped systemd units and environment file, read the way systemd reads them
(shared by the unit tests of their directives and the integration tests that run them)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYSTEMD_DIR = ROOT / "systemd"
ENV_EXAMPLE = SYSTEMD_DIR / "deployq.env.example"
SHIPPED_EXEC = "/opt/deployq/venv/bin/deployq"
UNITS = ("deployq-web.service", "deployq-worker.service", "deployq-worker@.service")
WORKER_UNITS = ("deployq-worker.service", "deployq-worker@.service")
ALL_UNITS = (*UNITS, "deployq.target")


def directives(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, comment_prefixes="#")
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD_DIR / name).read_text())
    return parser


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)
