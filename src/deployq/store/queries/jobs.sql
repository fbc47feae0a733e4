-- Jobs: what clients read, the running attempt, operator actions, the timeline.

-- name: job_get
SELECT j.*, s.name AS server_name FROM jobs j LEFT JOIN build_servers s ON s.id = j.server_id
WHERE j.id = %(id)s

-- name: jobs_by_ids
SELECT j.*, s.name AS server_name FROM jobs j LEFT JOIN build_servers s ON s.id = j.server_id
WHERE j.id = ANY(%(ids)s)

-- name: jobs_recent
-- Newest first; every filter is optional (NULL: no filter).
SELECT j.*, s.name AS server_name FROM jobs j LEFT JOIN build_servers s ON s.id = j.server_id
WHERE (%(statuses)s::text[] IS NULL OR j.status = ANY(%(statuses)s::text[]))
  AND (%(app)s::text IS NULL OR j.app_name = %(app)s::text)
  AND (%(server)s::text IS NULL OR s.name = %(server)s::text)
  AND (%(since)s::timestamptz IS NULL OR j.enqueued_at >= %(since)s::timestamptz)
  AND (%(since_id)s::bigint IS NULL OR j.id > %(since_id)s::bigint)
  AND (%(before_id)s::bigint IS NULL OR j.id < %(before_id)s::bigint)
ORDER BY j.id DESC LIMIT %(limit)s OFFSET %(offset)s

-- name: job_events
-- The timeline, oldest first; the step and progress events (for the live feed) are left out:
-- step_durations tells the steps.
SELECT id, job_id, at, kind, from_status, to_status, actor, message, data
FROM job_events WHERE job_id = %(job_id)s AND kind NOT IN ('step', 'progress')
ORDER BY id

-- name: job_event_add
INSERT INTO job_events (job_id, kind, from_status, to_status, actor, message, data)
VALUES (%(job_id)s, %(kind)s, %(from_status)s, %(to_status)s, %(actor)s, %(message)s, %(data)s)

-- name: notify
SELECT pg_notify(%(channel)s, %(payload)s)

-- name: job_heartbeat
-- Renew the leases of (job id, attempt) pairs held by a worker in one statement.
UPDATE jobs SET lease_expires_at = now() + %(ttl)s, updated_at = now()
FROM unnest(%(ids)s::bigint[], %(attempts)s::int[]) AS h(job_id, attempt)
WHERE jobs.id = h.job_id AND jobs.attempt = h.attempt
  AND jobs.status = 'running' AND jobs.worker_id = %(worker_id)s
RETURNING jobs.id, jobs.cancel_requested, jobs.cancel_force

-- name: job_progress
-- The current step and percent of a running attempt (fenced), and the worker's fields that
-- are given (set_x true: x is written, NULL included).
UPDATE jobs SET
    step = %(step)s, progress = %(progress)s, updated_at = now(),
    step_durations = CASE WHEN %(set_step_durations)s THEN %(step_durations)s::jsonb
                     ELSE step_durations END,
    commit_sha = CASE WHEN %(set_commit_sha)s THEN %(commit_sha)s::text ELSE commit_sha END,
    commit_message = CASE WHEN %(set_commit_message)s THEN %(commit_message)s::text
                     ELSE commit_message END,
    commit_author = CASE WHEN %(set_commit_author)s THEN %(commit_author)s::text
                    ELSE commit_author END,
    image_ref = CASE WHEN %(set_image_ref)s THEN %(image_ref)s::text ELSE image_ref END,
    image_digest = CASE WHEN %(set_image_digest)s THEN %(image_digest)s::text
                   ELSE image_digest END,
    wait_reason = CASE WHEN %(set_wait_reason)s THEN %(wait_reason)s::text ELSE wait_reason END,
    scan_summary = CASE WHEN %(set_scan_summary)s THEN %(scan_summary)s::jsonb
                   ELSE scan_summary END
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
RETURNING id, pg_notify('deployq_jobs', jsonb_build_object('id', id, 'app', app_name,
    'status', status, 'kind', 'progress')::text)

-- name: jobs_release
-- A worker's running jobs back in the queue now (hard shutdown); the interrupted attempt
-- does not count against max_attempts. run_after stays: each keeps its place in its app's
-- queue, ahead of the app's later jobs.
UPDATE jobs SET status = 'queued', lease_expires_at = NULL, worker_id = NULL,
    updated_at = now(), max_attempts = max_attempts + 1
FROM unnest(%(ids)s::bigint[], %(attempts)s::int[]) AS h(job_id, attempt)
WHERE jobs.id = h.job_id AND jobs.attempt = h.attempt
  AND jobs.status = 'running' AND jobs.worker_id = %(worker_id)s
RETURNING jobs.id, jobs.app_name, jobs.status

-- name: job_lock
SELECT * FROM jobs WHERE id = %(id)s FOR UPDATE

-- name: job_cancel_queued
UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now(), error = %(error)s
WHERE id = %(id)s RETURNING *

-- name: job_cancel_running
UPDATE jobs SET cancel_requested = true, cancel_force = cancel_force OR %(force)s,
    updated_at = now()
WHERE id = %(id)s RETURNING *

-- name: job_set_priority
UPDATE jobs SET priority = %(priority)s, updated_at = now()
WHERE id = %(id)s AND status = 'queued' RETURNING *
