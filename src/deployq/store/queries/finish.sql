-- The end of attempts (store/_leases.py: finish and finish_many).

-- name: finish_jobs
-- The fenced end of two or more attempts, their timeline rows and their NOTIFYs, in one
-- statement. ``items`` is a JSON array with one object per attempt: one parameter whatever
-- the number of attempts, so one cached plan. A failure with attempts left goes back to the
-- queue after the backoff delay. Rows are locked in id order (two batches cannot deadlock).
-- One attempt alone goes through finish_job (same rules, same columns).
WITH i AS (
    SELECT * FROM jsonb_to_recordset(%(items)s::jsonb)
        AS i(id bigint, attempt integer, status text, may_retry boolean, delay_s double precision,
             error text, image_ref text, image_digest text, message text,
             retry_message text)
), cur AS (
    SELECT i.*, (i.may_retry AND jobs.attempt < jobs.max_attempts) AS retry
    FROM jobs JOIN i ON jobs.id = i.id AND jobs.attempt = i.attempt
    WHERE jobs.status = 'running'
    ORDER BY jobs.id
    FOR UPDATE OF jobs
), u AS (
    UPDATE jobs SET
        status = CASE WHEN cur.retry THEN 'queued' ELSE cur.status END,
        run_after = CASE WHEN cur.retry THEN now() + cur.delay_s * interval '1 second'
                    ELSE run_after END,
        finished_at = CASE WHEN cur.retry THEN NULL ELSE now() END,
        worker_id = CASE WHEN cur.retry THEN NULL ELSE worker_id END,
        cancel_requested = cancel_requested AND NOT cur.retry,
        cancel_force = cancel_force AND NOT cur.retry,
        lease_expires_at = NULL,
        error = cur.error,
        image_ref = coalesce(cur.image_ref, jobs.image_ref),
        image_digest = coalesce(cur.image_digest, jobs.image_digest),
        progress = CASE WHEN cur.status = 'succeeded' THEN 100 ELSE progress END,
        updated_at = now()
    FROM cur WHERE jobs.id = cur.id
    RETURNING jobs.*, cur.message AS _message, cur.retry_message AS _retry_message,
        cur.image_digest AS _image_digest
), e AS (
    INSERT INTO job_events (job_id, kind, from_status, to_status, message, data)
    SELECT id, CASE WHEN status = 'queued' THEN 'retry_scheduled' ELSE status END,
           'running', status,
           CASE WHEN status = 'queued' THEN _retry_message ELSE _message END,
           jsonb_build_object('attempt', attempt, 'image_digest', _image_digest)
    FROM u ORDER BY id
)
SELECT u.*, s.name AS server_name, pg_notify('deployq_jobs', jsonb_build_object(
    'id', u.id, 'app', u.app_name, 'status', u.status, 'kind', 'finished')::text) AS notified
FROM u LEFT JOIN build_servers s ON s.id = u.server_id
ORDER BY u.id

-- name: finish_job
-- finish_jobs for one attempt, its fields as parameters: the lone finish (a one-slot worker,
-- a group commit of one) costs 25-35 % less server CPU than through the JSON array (a hash
-- join over every running job, a sort, the array parsed; bench/README.md, issue #11).
-- Keep the two alike: the same update, timeline row, NOTIFY and columns.
WITH cur AS (
    SELECT id, (%(may_retry)s::boolean AND attempt < max_attempts) AS retry FROM jobs
    WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
    FOR UPDATE
), u AS (
    UPDATE jobs SET
        status = CASE WHEN cur.retry THEN 'queued' ELSE %(status)s::text END,
        run_after = CASE WHEN cur.retry
                    THEN now() + %(delay_s)s::double precision * interval '1 second'
                    ELSE run_after END,
        finished_at = CASE WHEN cur.retry THEN NULL ELSE now() END,
        worker_id = CASE WHEN cur.retry THEN NULL ELSE worker_id END,
        cancel_requested = cancel_requested AND NOT cur.retry,
        cancel_force = cancel_force AND NOT cur.retry,
        lease_expires_at = NULL,
        error = %(error)s::text,
        image_ref = coalesce(%(image_ref)s::text, image_ref),
        image_digest = coalesce(%(image_digest)s::text, image_digest),
        progress = CASE WHEN %(status)s::text = 'succeeded' THEN 100 ELSE progress END,
        updated_at = now()
    FROM cur WHERE jobs.id = cur.id
    RETURNING jobs.*
), e AS (
    INSERT INTO job_events (job_id, kind, from_status, to_status, message, data)
    SELECT id, CASE WHEN status = 'queued' THEN 'retry_scheduled' ELSE status END,
           'running', status,
           CASE WHEN status = 'queued' THEN %(retry_message)s::text ELSE %(message)s::text END,
           jsonb_build_object('attempt', attempt, 'image_digest', %(image_digest)s::text)
    FROM u
)
SELECT u.*, s.name AS server_name, pg_notify('deployq_jobs', jsonb_build_object(
    'id', u.id, 'app', u.app_name, 'status', u.status, 'kind', 'finished')::text) AS notified
FROM u LEFT JOIN build_servers s ON s.id = u.server_id
