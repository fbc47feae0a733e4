-- Triggers become jobs (store/_queue.py).

-- name: enqueue_job
-- One statement, so atomic without a transaction of its own: the app looked up by name, the
-- job, its timeline row, the supersede of older queued jobs of the branch (and, with the
-- app's cancel-running policy, the cancel request to the running one while it is
-- interruptible), with their events and NOTIFYs. Always one row when the app exists
-- (app_found), none when it does not. The job columns are NULL when nothing was inserted:
-- a delivery id seen before (ON CONFLICT), or, unless %(outbox_ok)s, an app that may want
-- outbox rows for "queued" (a superset of wants_notification, so never too few: the caller
-- then writes the job in a transaction with them).
-- The steps a running job may be cancelled in are models.INTERRUPTIBLE_STEPS; the channels
-- are deployq_jobs and deployq_cancel (tests/unit/test_queries.py checks both). Constants are
-- written into the statement rather than passed: each parameter costs a conversion per job.
WITH a AS (
    SELECT id, name, repo_url, priority, max_attempts, timeout_s, supersede_policy,
        forge_status OR ('queued' = ANY(notify_events) AND (cardinality(notify_emails) > 0
            OR notify_pusher OR notify_webhook_url IS NOT NULL)) AS outbox
    FROM apps WHERE name = %(app_name)s
), j AS (
    INSERT INTO jobs (app_id, app_name, provider, trigger, delivery_id, repo_url, ref, ref_type,
        branch, commit_sha, commit_message, commit_author, pusher, pusher_email, priority,
        max_attempts, timeout_s, retry_of)
    SELECT a.id, a.name, %(provider)s::text, %(trigger)s::text, %(delivery_id)s::text,
        a.repo_url, %(ref)s::text, %(ref_type)s::text, %(branch)s::text, %(commit_sha)s::text,
        %(commit_message)s::text, %(commit_author)s::text, %(pusher)s::text,
        %(pusher_email)s::text, coalesce(%(priority)s::smallint, a.priority),
        coalesce(a.max_attempts, %(max_attempts)s::integer),
        coalesce(a.timeout_s, %(timeout_s)s::double precision), %(retry_of)s::bigint
    FROM a WHERE %(outbox_ok)s::boolean OR NOT a.outbox
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
    WHERE %(supersede)s::boolean AND (SELECT supersede_policy FROM a) <> 'queue'
      AND o.app_id = j.app_id AND o.branch = j.branch
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
    WHERE %(supersede)s::boolean AND (SELECT supersede_policy FROM a) = 'cancel-running'
      AND o.app_id = j.app_id AND o.branch = j.branch
      AND o.status = 'running' AND o.id < j.id AND NOT o.cancel_requested
      AND (o.step IS NULL OR o.step = ANY(ARRAY['build', 'checkout', 'detect']::text[]))
    RETURNING o.id, j.id AS by, j.branch
), ce AS (
    INSERT INTO job_events (job_id, kind, message, data)
    SELECT id, 'cancel_requested', 'a newer push to ' || branch || ' arrived: #' || by,
           jsonb_build_object('by', by)
    FROM c
), sn AS (
    SELECT s.id, pg_notify('deployq_jobs', jsonb_build_object(
        'id', s.id, 'app', s.app_name, 'status', 'superseded', 'kind', 'superseded')::text)
    FROM s
), cn AS (
    SELECT c.id, pg_notify('deployq_cancel',
        jsonb_build_object('id', c.id, 'force', false)::text)
    FROM c
)
SELECT a.id AS app_found, j.*,
    (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM sn) AS superseded_ids,
    (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM cn) AS cancel_ids,
    CASE WHEN j.id IS NOT NULL THEN pg_notify('deployq_jobs', jsonb_build_object(
        'id', j.id, 'app', j.app_name, 'status', 'queued', 'kind', 'enqueued')::text)
    END AS notified
FROM a LEFT JOIN j ON true

-- name: apps_for_triggers
-- The apps of a set of triggers: by name, or by repository identity.
SELECT * FROM apps WHERE name = ANY(%(names)s) OR repo_identity = ANY(%(repos)s) ORDER BY name

-- name: job_by_delivery
-- ON CONFLICT waited for the other transaction to commit (or the conflicting row is this
-- transaction's own), so the row is visible now.
SELECT * FROM jobs WHERE provider = %(provider)s AND delivery_id = %(delivery_id)s
    AND app_id = %(app_id)s
