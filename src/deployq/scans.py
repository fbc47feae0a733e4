"""Vulnerability scans of pushed images (docs/harbor.md): their states, how a result reads,
and what an app's scan policy makes of it. One home for these rules: the pipeline, the
background collector (``deployq.worker.scans``), ``job show``, the e-mails use them.

A scan's summary is the JSON kept on the job (``jobs.scan_summary``)::

    {"state": "requested"}                                 sent to Harbor, no result yet
    {"state": "running", ...}                              Harbor is scanning
    {"state": "done", "critical": 1, "high": 2, ...}       the counts by severity
    {"state": "unavailable", "reason": "no scanner ..."}   no result will come

A scan never fails or retries a build by itself; only a policy the app asked for does.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from deployq.models import ScanAction, ScanPolicy

#: Harbor's severities, most severe first, as deployq names them in a summary
SEVERITIES = ("critical", "high", "medium", "low", "negligible", "unknown")
#: Harbor's scan_status values that mean "not finished yet"
HARBOR_PENDING = frozenset({"Pending", "Running", "Scheduled", "NotScanned"})


class ScanState(StrEnum):
    REQUESTED = "requested"
    RUNNING = "running"
    DONE = "done"
    UNAVAILABLE = "unavailable"

    @property
    def is_final(self) -> bool:
        return self in (ScanState.DONE, ScanState.UNAVAILABLE)


def requested() -> dict[str, Any]:
    return {"state": ScanState.REQUESTED.value}


def unavailable(reason: str) -> dict[str, Any]:
    return {"state": ScanState.UNAVAILABLE.value, "reason": reason}


def state_of(summary: dict[str, Any] | None) -> ScanState | None:
    if not summary:
        return None
    try:
        return ScanState(str(summary.get("state")))
    except ValueError:  # a summary of an older deployq (it waited in the job): a result
        return ScanState.DONE if "critical" in summary else None


def counts_text(summary: dict[str, Any]) -> str:
    """``critical 1, high 2`` (severities with findings), or ``no vulnerabilities``."""
    found = [f"{s} {summary[s]}" for s in SEVERITIES if summary.get(s)]
    return ", ".join(found) or "no vulnerabilities"


def scan_text(summary: dict[str, Any] | None) -> str | None:
    """One line for people: ``critical 1, high 2``, ``scan pending``,
    ``scan unavailable: no scanner ...``; None when no scan was asked for."""
    state = state_of(summary)
    if state is None or summary is None:
        return None
    if state is ScanState.UNAVAILABLE:
        text = f"scan unavailable: {summary.get('reason') or 'no reason given'}"
    elif not state.is_final:
        text = "scan pending"
    else:
        text = counts_text(summary)
    policy = summary.get("policy")  # the verdict of the app's scan policy, when it has one
    return f"{text}; {policy}" if policy else text


@dataclass(frozen=True)
class Verdict:
    """What the policy makes of a scan: ``action`` None lets the job go on as usual."""

    action: ScanAction | None
    message: str


def judge(policy: ScanPolicy, summary: dict[str, Any]) -> Verdict:
    """The app's ``policy`` (its action for more than ``max_critical`` critical
    vulnerabilities) applied to a scan summary. A scan without result cannot show the image
    is clean: ``block-deploy`` keeps the image off the servers, ``fail`` lets the job
    succeed (scan errors never fail a build) and says the policy could not be checked."""
    action, max_critical = policy.action, policy.max_critical
    state = state_of(summary)
    if state is not ScanState.DONE:
        why = scan_text({**summary, "policy": None}) or "no scan"
        if action is ScanAction.BLOCK_DEPLOY:
            return Verdict(action, f"deploy skipped: the scan policy could not be checked ({why})")
        return Verdict(None, f"scan policy not checked ({why})")
    critical = int(summary.get("critical") or 0)
    if critical <= max_critical:
        return Verdict(None, f"scan policy passed: {critical} critical (at most {max_critical})")
    noun = "vulnerability" if critical == 1 else "vulnerabilities"
    found = (
        f"{critical} critical {noun}, at most {max_critical} allowed (found {counts_text(summary)})"
    )
    if action is ScanAction.BLOCK_DEPLOY:
        return Verdict(action, f"deploy skipped by the scan policy: {found}")
    return Verdict(action, f"the scan policy failed the job: {found}")
