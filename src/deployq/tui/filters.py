"""The queue filter: ``app:NAME ref:BRANCH status:STATUS server:NAME`` and free text, plus
status groups that can be hidden.

``app:web status:failed timeout`` keeps failed jobs of apps whose name contains ``web`` and
whose text (app, ref, sha, step, server, error, commit message, pusher) contains ``timeout``.
Every term must match; matching ignores case.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from deployq.models import Job, JobStatus

GROUPS: dict[str, frozenset[JobStatus]] = {
    "active": frozenset({JobStatus.QUEUED, JobStatus.RUNNING}),
    "succeeded": frozenset({JobStatus.SUCCEEDED}),
    "failed": frozenset({JobStatus.FAILED, JobStatus.TIMED_OUT}),
    "other": frozenset({JobStatus.CANCELLED, JobStatus.SUPERSEDED}),
}

_FIELDS = ("app", "ref", "status", "server")


@dataclass(frozen=True)
class JobFilter:
    text: str = ""
    hidden: frozenset[str] = frozenset()
    terms: dict[str, list[str]] = field(default_factory=dict)
    words: list[str] = field(default_factory=list)

    def with_text(self, text: str) -> JobFilter:
        terms: dict[str, list[str]] = {}
        words: list[str] = []
        for token in text.lower().split():
            name, sep, value = token.partition(":")
            if sep and name in _FIELDS and value:
                terms.setdefault(name, []).append(value)
            else:
                words.append(token)
        return replace(self, text=text.strip(), terms=terms, words=words)

    def toggled(self, group: str) -> JobFilter:
        return replace(self, hidden=self.hidden ^ {group})

    def matches(self, job: Job) -> bool:
        for group in self.hidden:
            if job.status in GROUPS[group]:
                return False
        fields = {
            "app": job.app_name.lower(),
            "ref": f"{job.branch} {job.ref}".lower(),
            "status": job.status.value,
            "server": (job.server_name or "").lower(),
        }
        for name, values in self.terms.items():
            if not all(v in fields[name] for v in values):
                return False
        if self.words:
            haystack = " ".join(
                [
                    f"#{job.id}",
                    fields["app"],
                    fields["ref"],
                    job.status.value,
                    job.commit_sha or "",
                    job.step or "",
                    fields["server"],
                    job.error or "",
                    job.commit_message or "",
                    job.pusher or "",
                ]
            ).lower()
            return all(word in haystack for word in self.words)
        return True
