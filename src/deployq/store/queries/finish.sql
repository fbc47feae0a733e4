-- The end of attempts (store/_leases.py: finish and finish_many).

-- name: finish_jobs
-- The fenced end of two or more attempts, their timeline rows and their NOTIFYs, in one
-- statement. ``items`` is a JSON array with one object per attempt: one parameter whatever
-- the number of attempts, so one cached plan. A failure with attempts left goes back to the
-- queue after the backoff delay. Rows are locked in id order (two batches cannot deadlock).
-- One attempt alone goes through finish_job (same rules, same columns). Each attempt's last
-- log lines and its last step come with it (see finish_job).
WITH i AS (
    SELECT * FROM jsonb_to_recordset(%(items)s::jsonb)
        AS i(id bigint, attempt integer, status text, may_retry boolean, delay_s double precision,
             error text, image_ref text, image_digest text, message text,
             retry_message text, step text, step_durations jsonb, log_lines jsonb)
), cur AS (
    SELECT i.*, (i.may_retry AND jobs.attempt < jobs.max_attempts) AS retry,
        jobs.step AS old_step, jobs.progress AS old_progress
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
        step = coalesce(cur.step, jobs.step),
        step_durations = coalesce(cur.step_durations, jobs.step_durations),
        updated_at = now()
    FROM cur WHERE jobs.id = cur.id
    RETURNING jobs.*, cur.message AS _message, cur.retry_message AS _retry_message,
        cur.image_digest AS _image_digest, cur.step AS _step, cur.old_step AS _old_step,
        cur.old_progress AS _old_progress, cur.log_lines AS _log_lines
), e AS (
    INSERT INTO job_events (job_id, kind, from_status, to_status, message, data)
    SELECT job_id, kind, from_status, to_status, message, data FROM (
        SELECT id AS job_id, 1 AS nth,
               CASE WHEN step IS DISTINCT FROM _old_step THEN 'step' ELSE 'progress' END AS kind,
               NULL AS from_status, NULL AS to_status, step || ' ' || progress || '%%' AS message,
               jsonb_build_object('step', step, 'progress', progress, 'attempt', attempt) AS data
        FROM u WHERE _step IS NOT NULL
          AND (step IS DISTINCT FROM _old_step OR progress <> _old_progress)
        UNION ALL
        SELECT id, 2, CASE WHEN status = 'queued' THEN 'retry_scheduled' ELSE status END,
               'running', status,
               CASE WHEN status = 'queued' THEN _retry_message ELSE _message END,
               jsonb_build_object('attempt', attempt, 'image_digest', _image_digest)
        FROM u
    ) ev ORDER BY job_id, nth
), logs AS (
    INSERT INTO job_logs (job_id, seq, stream, line)
    SELECT u.id, base.seq + l.n, 'build', l.line
    FROM u CROSS JOIN LATERAL (
        SELECT coalesce(max(seq), 0) AS seq FROM job_logs WHERE job_id = u.id
    ) base CROSS JOIN LATERAL jsonb_array_elements_text(coalesce(u._log_lines, '[]'))
        WITH ORDINALITY AS l(line, n)
    RETURNING job_id, seq
), logs_notified AS (
    SELECT job_id, pg_notify('deployq_logs',
        jsonb_build_object('job', job_id, 'seq', max(seq))::text) AS notified
    FROM logs GROUP BY job_id
)
SELECT u.*, s.name AS server_name, ln.notified AS logs_notified,
    pg_notify('deployq_jobs', jsonb_build_object(
    'id', u.id, 'app', u.app_name, 'status', u.status, 'kind', 'finished')::text) AS notified
FROM u LEFT JOIN build_servers s ON s.id = u.server_id
LEFT JOIN logs_notified ln ON ln.job_id = u.id
ORDER BY u.id

-- name: finish_job
-- finish_jobs for one attempt, its fields as parameters: the lone finish (a one-slot worker,
-- a group commit of one) costs 25-35 % less server CPU than through the JSON array (a hash
-- join over every running job, a sort, the array parsed; bench/README.md, issue #11).
-- Keep the two alike: the same update, timeline rows, NOTIFYs and columns.
-- The attempt's last log lines (``log_lines``, after the job's last one, with their NOTIFY)
-- and its last step (``step``, ``step_durations``: a success's last step at 100 %%, with its
-- timeline row as the progress trigger would write it) come with the finish: the end of a
-- job is one round trip, not a log flush and a progress write before it.
WITH cur AS (
    SELECT id, (%(may_retry)s::boolean AND attempt < max_attempts) AS retry,
        step AS old_step, progress AS old_progress FROM jobs
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
        step = coalesce(%(step)s::text, jobs.step),
        step_durations = coalesce(%(step_durations)s::jsonb, jobs.step_durations),
        updated_at = now()
    FROM cur WHERE jobs.id = cur.id
    RETURNING jobs.*, cur.old_step AS _old_step, cur.old_progress AS _old_progress
), e AS (
    INSERT INTO job_events (job_id, kind, from_status, to_status, message, data)
    SELECT job_id, kind, from_status, to_status, message, data FROM (
        SELECT id AS job_id, 1 AS nth,
               CASE WHEN step IS DISTINCT FROM _old_step THEN 'step' ELSE 'progress' END AS kind,
               NULL AS from_status, NULL AS to_status, step || ' ' || progress || '%%' AS message,
               jsonb_build_object('step', step, 'progress', progress, 'attempt', attempt) AS data
        FROM u WHERE %(step)s::text IS NOT NULL
          AND (step IS DISTINCT FROM _old_step OR progress <> _old_progress)
        UNION ALL
        SELECT id, 2, CASE WHEN status = 'queued' THEN 'retry_scheduled' ELSE status END,
               'running', status,
               CASE WHEN status = 'queued' THEN %(retry_message)s::text
                    ELSE %(message)s::text END,
               jsonb_build_object('attempt', attempt, 'image_digest', %(image_digest)s::text)
        FROM u
    ) ev ORDER BY nth
), logs AS (
    INSERT INTO job_logs (job_id, seq, stream, line)
    SELECT u.id, base.seq + l.n, 'build', l.line
    FROM u, (SELECT coalesce(max(seq), 0) AS seq FROM job_logs WHERE job_id = %(id)s) base,
        unnest(%(log_lines)s::text[]) WITH ORDINALITY AS l(line, n)
    RETURNING seq
)
SELECT u.*, s.name AS server_name,
    (SELECT pg_notify('deployq_logs', jsonb_build_object('job', %(id)s::bigint,
        'seq', max(seq))::text) FROM logs HAVING count(*) > 0) AS logs_notified,
    pg_notify('deployq_jobs', jsonb_build_object(
    'id', u.id, 'app', u.app_name, 'status', u.status, 'kind', 'finished')::text) AS notified
FROM u LEFT JOIN build_servers s ON s.id = u.server_id
