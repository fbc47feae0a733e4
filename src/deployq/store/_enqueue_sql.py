"""The SQL of enqueue: the job statement, and its variant that looks the app up itself."""

from __future__ import annotations

from deployq.models import INTERRUPTIBLE_STEPS
from deployq.store._channels import CHANNEL_CANCEL, CHANNEL_JOBS

_JOB_COLUMNS = (
    "app_id",
    "app_name",
    "provider",
    "trigger",
    "delivery_id",
    "repo_url",
    "ref",
    "ref_type",
    "branch",
    "commit_sha",
    "commit_message",
    "commit_author",
    "pusher",
    "pusher_email",
    "priority",
    "max_attempts",
    "timeout_s",
    "retry_of",
)


def _literal(word: str) -> str:
    """A constant of ours as an SQL literal (only plain words, so no quoting issue)."""
    assert word.replace("_", "").replace("-", "").isalnum(), word
    return f"'{word}'"


# constants are written into the statement rather than passed: each parameter costs a
# conversion per job, which shows at a thousand jobs a second
_STEPS = "ARRAY[" + ", ".join(_literal(s.value) for s in sorted(INTERRUPTIBLE_STEPS)) + "]"
_JOBS_CHANNEL = _literal(CHANNEL_JOBS)
_CANCEL_CHANNEL = _literal(CHANNEL_CANCEL)

# One statement, so atomic without a transaction of its own: the job, its timeline row, the
# supersede of older queued jobs of the branch (and, with cancel-running, the cancel request
# to the running one while it is interruptible), with their events and NOTIFYs.
ENQUEUE = f"""
WITH j AS (
    INSERT INTO jobs ({", ".join(_JOB_COLUMNS)})
    VALUES ({", ".join(f"%({c})s" for c in _JOB_COLUMNS)})
    ON CONFLICT (provider, delivery_id, app_id) WHERE delivery_id IS NOT NULL DO NOTHING
    RETURNING *
), e AS (
    INSERT INTO job_events (job_id, kind, to_status, actor, message, data)
    SELECT id, 'enqueued', 'queued', %(actor)s::text, %(message)s::text,
           jsonb_build_object('delivery_id', delivery_id, 'retry_of', retry_of)
    FROM j
), s AS (
    UPDATE jobs o SET status = 'superseded', finished_at = now(), updated_at = now(),
        error = 'superseded by #' || j.id
    FROM j
    WHERE %(supersede)s::boolean AND o.app_id = j.app_id AND o.branch = j.branch
      AND o.status = 'queued' AND o.ref_type = 'branch' AND o.id < j.id
    RETURNING o.id, o.app_name, j.id AS by, j.branch
), se AS (
    INSERT INTO job_events (job_id, kind, from_status, to_status, message, data)
    SELECT id, 'superseded', 'queued', 'superseded',
           'a newer push to ' || branch || ' arrived: #' || by, jsonb_build_object('by', by)
    FROM s
), c AS (
    UPDATE jobs o SET cancel_requested = true, updated_at = now()
    FROM j
    WHERE %(cancel_running)s::boolean AND o.app_id = j.app_id AND o.branch = j.branch
      AND o.status = 'running' AND o.id < j.id AND NOT o.cancel_requested
      AND (o.step IS NULL OR o.step = ANY({_STEPS}::text[]))
    RETURNING o.id, j.id AS by, j.branch
), ce AS (
    INSERT INTO job_events (job_id, kind, message, data)
    SELECT id, 'cancel_requested', 'a newer push to ' || branch || ' arrived: #' || by,
           jsonb_build_object('by', by)
    FROM c
), sn AS (
    SELECT s.id, pg_notify({_JOBS_CHANNEL}, jsonb_build_object(
        'id', s.id, 'app', s.app_name, 'status', 'superseded', 'kind', 'superseded')::text)
    FROM s
), cn AS (
    SELECT c.id, pg_notify({_CANCEL_CHANNEL},
        jsonb_build_object('id', c.id, 'force', false)::text)
    FROM c
)
SELECT j.*,
    (SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM sn) AS superseded_ids,
    (SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM cn) AS cancel_ids,
    pg_notify({_JOBS_CHANNEL}, jsonb_build_object(
        'id', j.id, 'app', j.app_name, 'status', 'queued', 'kind', 'enqueued')::text) AS notified
FROM j
"""


# What the app contributes to its job, when the statement looks the app up itself
_FROM_APP = {
    "app_id": "a.id",
    "app_name": "a.name",
    "repo_url": "a.repo_url",
    "priority": "coalesce(%(priority)s::smallint, a.priority)",
    "max_attempts": "coalesce(a.max_attempts, %(max_attempts)s::integer)",
    "timeout_s": "coalesce(a.timeout_s, %(timeout_s)s::double precision)",
}
_COLUMN_TYPES = {"retry_of": "bigint"}

# ENQUEUE for a trigger naming its app, with the app lookup folded in: one round trip. It
# writes nothing when the app may want outbox rows for "queued" (a superset of what
# wants_notification says, so never too few), nor on a delivery id seen before: the caller
# then takes the general path. The row says whether the app exists (app_found).


def _swap(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced; a change to ENQUEUE that breaks this fails loudly."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


ENQUEUE_NAMED = ENQUEUE
for _old, _new in (
    (
        "WITH j AS (\n    INSERT INTO jobs ("
        + ", ".join(_JOB_COLUMNS)
        + ")\n    VALUES ("
        + ", ".join(f"%({c})s" for c in _JOB_COLUMNS)
        + ")\n",
        "WITH a AS (\n    SELECT id, name, repo_url, priority, max_attempts, timeout_s, "
        "supersede_policy,\n        'queued' = ANY(notify_events)"
        " AND (cardinality(notify_emails) > 0\n"
        "            OR notify_pusher OR notify_webhook_url IS NOT NULL) AS outbox"
        "\n    FROM apps WHERE name = %(app_name)s\n), j AS (\n    INSERT INTO jobs ("
        + ", ".join(_JOB_COLUMNS)
        + ")\n    SELECT "
        + ", ".join(
            _FROM_APP.get(c, f"%({c})s::{_COLUMN_TYPES.get(c, 'text')}") for c in _JOB_COLUMNS
        )
        + "\n    FROM a WHERE NOT a.outbox\n",
    ),
    (
        "WHERE %(supersede)s::boolean AND",
        "WHERE %(supersede)s::boolean AND (SELECT supersede_policy FROM a) <> 'queue' AND",
    ),
    (
        "WHERE %(cancel_running)s::boolean AND",
        "WHERE %(cancel_running)s::boolean\n"
        "      AND (SELECT supersede_policy FROM a) = 'cancel-running' AND",
    ),
    ("SELECT j.*,", "SELECT a.id AS app_found, j.*,"),
    (
        "    pg_notify(" + _JOBS_CHANNEL + ", jsonb_build_object(\n"
        "        'id', j.id, 'app', j.app_name, 'status', 'queued', 'kind', 'enqueued')::text)"
        " AS notified\nFROM j\n",
        "    CASE WHEN j.id IS NOT NULL THEN pg_notify(" + _JOBS_CHANNEL + ", jsonb_build_object(\n"
        "        'id', j.id, 'app', j.app_name, 'status', 'queued', 'kind', 'enqueued')::text)"
        " END AS notified\nFROM a LEFT JOIN j ON true\n",
    ),
):
    ENQUEUE_NAMED = _swap(ENQUEUE_NAMED, _old, _new)
