-- Vulnerability scans of pushed images (store/_scans.py, docs/harbor.md): job_scans is the
-- background collector's worklist; jobs.scan_summary is what people see of it.

-- name: scan_record
-- The worker's record of the scan it asked Harbor for (fenced on the running attempt): the
-- worklist row (a later attempt starts it again), the summary on the job, a timeline line.
WITH j AS (
    UPDATE jobs SET scan_summary = %(summary)s::jsonb, updated_at = now()
    WHERE id = %(job_id)s AND attempt = %(attempt)s AND status = 'running'
    RETURNING id, app_name, status
), s AS (
    INSERT INTO job_scans (job_id, project, repository, digest, state, reason, next_poll_at,
        deadline_at, finished_at)
    SELECT id, %(project)s, %(repository)s, %(digest)s, %(state)s, %(reason)s,
        now() + %(first_poll)s, now() + %(deadline)s,
        CASE WHEN %(state)s IN ('done', 'unavailable') THEN now() END
    FROM j
    ON CONFLICT (job_id) DO UPDATE SET project = EXCLUDED.project,
        repository = EXCLUDED.repository, digest = EXCLUDED.digest, state = EXCLUDED.state,
        reason = EXCLUDED.reason, polls = 0, next_poll_at = EXCLUDED.next_poll_at,
        deadline_at = EXCLUDED.deadline_at, requested_at = now(),
        finished_at = EXCLUDED.finished_at
    RETURNING job_id
), e AS (
    INSERT INTO job_events (job_id, kind, message, data)
    SELECT id, 'scan', %(message)s, %(summary)s::jsonb FROM j
)
SELECT j.id, pg_notify('deployq_jobs', jsonb_build_object('id', j.id, 'app', j.app_name,
    'status', j.status, 'kind', 'scan')::text) AS notified
FROM j JOIN s ON s.job_id = j.id

-- name: scans_claim_due
-- Scans due for a look, taken for %(lease)s (another collector skips them meanwhile): the
-- look counted, whether the deadline passed, and the job's app (whose login may be its own).
WITH due AS (
    SELECT job_id FROM job_scans
    WHERE state IN ('requested', 'running') AND next_poll_at <= now()
    ORDER BY next_poll_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
UPDATE job_scans s SET next_poll_at = now() + %(lease)s, polls = s.polls + 1
FROM due, jobs j
WHERE s.job_id = due.job_id AND j.id = s.job_id
RETURNING s.job_id, j.app_id, s.project, s.repository, s.digest, s.state, s.polls,
    s.requested_at, s.deadline_at, s.deadline_at <= now() AS overdue

-- name: scans_next_due_in
SELECT extract(epoch FROM min(next_poll_at) - now()) AS wait
FROM job_scans WHERE state IN ('requested', 'running')

-- name: scan_wait
-- No result yet: look again after %(delay)s; the job shows the state when it changed.
WITH s AS (
    UPDATE job_scans SET state = %(state)s, reason = %(reason)s,
        next_poll_at = now() + %(delay)s
    WHERE job_id = %(job_id)s AND state IN ('requested', 'running')
    RETURNING job_id
)
UPDATE jobs SET scan_summary = %(summary)s::jsonb
FROM s WHERE jobs.id = s.job_id AND jobs.scan_summary IS DISTINCT FROM %(summary)s::jsonb
RETURNING jobs.id, pg_notify('deployq_jobs', jsonb_build_object('id', jobs.id,
    'app', jobs.app_name, 'status', jobs.status, 'kind', 'scan')::text) AS notified

-- name: scan_finish
-- The collector's result (done, or unavailable with the reason), attached to the job, on
-- its timeline, and announced; a scan already final is left alone.
WITH s AS (
    UPDATE job_scans SET state = %(state)s, reason = %(reason)s, finished_at = now()
    WHERE job_id = %(job_id)s AND state IN ('requested', 'running')
    RETURNING job_id
), j AS (
    UPDATE jobs SET scan_summary = %(summary)s::jsonb
    FROM s WHERE jobs.id = s.job_id
    RETURNING jobs.id, jobs.app_name, jobs.status
), e AS (
    INSERT INTO job_events (job_id, kind, actor, message, data)
    SELECT id, 'scan', 'scan collector', %(message)s, %(summary)s::jsonb FROM j
)
SELECT j.id, pg_notify('deployq_jobs', jsonb_build_object('id', j.id, 'app', j.app_name,
    'status', j.status, 'kind', 'scan')::text) AS notified
FROM j
