"""The rules of vulnerability scans (deployq.scans): how a summary reads, what a policy makes
of it, how Harbor's artifact JSON becomes a summary, how often the collector looks."""

from __future__ import annotations

from typing import Any

import pytest

from deployq.models import ScanAction, ScanPolicy
from deployq.registry import summarize
from deployq.scans import judge, requested, scan_text, unavailable
from deployq.worker.scans import MAX_POLL_S, next_poll_s

DONE = {"state": "done", "critical": 2, "high": 1, "medium": 0}
MIME = "application/vnd.security.vulnerability.report; version=1.1"


def test_a_summary_reads_as_one_line() -> None:
    assert scan_text(None) is None
    assert scan_text(requested()) == "scan pending"
    assert scan_text({"state": "running"}) == "scan pending"
    assert scan_text(unavailable("no scanner")) == "scan unavailable: no scanner"
    assert scan_text(DONE) == "critical 2, high 1"
    assert scan_text({"state": "done", "critical": 0}) == "no vulnerabilities"
    assert scan_text({**DONE, "policy": "deploy skipped"}) == "critical 2, high 1; deploy skipped"
    # a summary written by a deployq that waited for the scan in the job
    assert scan_text({"status": "Success", "critical": 1}) == "critical 1"


@pytest.mark.parametrize(
    ("action", "max_critical", "summary", "acts", "message"),
    [
        (ScanAction.FAIL, 1, DONE, True, "the scan policy failed the job: 2 critical"),
        (ScanAction.FAIL, 2, DONE, False, "scan policy passed: 2 critical (at most 2)"),
        (ScanAction.BLOCK_DEPLOY, 0, DONE, True, "deploy skipped by the scan policy: 2 crit"),
        # no result: a build never fails for it, a deploy is not risked
        (ScanAction.FAIL, 0, unavailable("x"), False, "scan policy not checked (scan unava"),
        (ScanAction.BLOCK_DEPLOY, 0, requested(), True, "deploy skipped: the scan policy could"),
    ],
)
def test_a_policy_acts_on_more_criticals_than_allowed(
    action: ScanAction, max_critical: int, summary: dict[str, Any], acts: bool, message: str
) -> None:
    verdict = judge(ScanPolicy(action=action, max_critical=max_critical), summary)

    assert (verdict.action is action) if acts else verdict.action is None
    assert verdict.message.startswith(message)


def test_harbors_artifact_becomes_a_summary() -> None:
    assert summarize({})["state"] == "running"  # no scan overview yet
    running = {"scan_overview": {MIME: {"scan_status": "Running"}}}
    assert summarize(running) == {"state": "running", "status": "Running"}
    failed = summarize({"scan_overview": {MIME: {"scan_status": "Error"}}})
    assert failed == {"state": "unavailable", "reason": "Harbor's scan ended with status Error"}
    done = summarize(
        {
            "scan_overview": {
                MIME: {
                    "scan_status": "Success",
                    "severity": "Critical",
                    "summary": {"total": 3, "fixable": 1, "summary": {"Critical": 1, "Low": 2}},
                }
            }
        }
    )
    assert done["state"] == "done"
    assert (done["critical"], done["high"], done["low"], done["total"]) == (1, 0, 2, 3)


def test_the_collector_looks_less_often_the_longer_a_scan_takes() -> None:
    assert [next_poll_s(5, n) for n in (0, 1, 2, 3)] == [5, 10, 20, 40]
    assert next_poll_s(5, 30) == MAX_POLL_S
