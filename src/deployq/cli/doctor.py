"""deployq doctor: a ✔/✘ (! warning) line per check, with the fix; exit status 1 when
something is broken (not for warnings)."""

from __future__ import annotations

import sys

import click

from deployq.cli.common import CliState, common_options, emit, pass_state, run
from deployq.doctor import Check, run_checks

OK_MARK = "✔"
FAIL_MARK = "✘"
SKIP_MARK = "-"
WARN_MARK = "!"


def render(checks: list[Check]) -> str:
    """One line per check, the fix indented under a failed one or a warning, and a summary
    line."""
    width = max(len(c.name) for c in checks)
    lines = []
    for check in checks:
        mark = _mark(check)
        lines.append(f"{mark} {check.name.ljust(width)}  {check.detail}")
        if (not check.ok or check.warning) and check.fix:
            lines.append(f"  {' ' * width}  fix: {check.fix}")
    failed = sum(not c.ok for c in checks)
    warned = sum(c.warning for c in checks)
    if failed:
        lines.append(f"{failed} of {len(checks)} checks failed")
    elif warned:
        lines.append(f"nothing is broken; {warned} warning(s)")
    else:
        lines.append("everything looks right")
    return "\n".join(lines)


def _mark(check: Check) -> str:
    if check.skipped:
        return SKIP_MARK
    if check.warning:
        return WARN_MARK
    return OK_MARK if check.ok else FAIL_MARK


@click.command("doctor")
@common_options
@pass_state
def doctor_cmd(state: CliState) -> None:
    """Check configuration, database and migrations, build servers (engine and BuildKit),
    registry login, SMTP login, disk space and the workspace; print the fix for each
    problem. Exit status 1 when a check fails (skipped checks do not count)."""
    checks = run(run_checks(state.config_file))
    ok = all(c.ok for c in checks)
    emit(state, {"ok": ok, "checks": [c.to_dict() for c in checks]}, lambda: render(checks))
    if not ok:
        sys.exit(1)


def register(main: click.Group) -> None:
    main.add_command(doctor_cmd)
