-- A job taken back from a dead worker keeps its place in its app's queue: its run_after stays
-- what it was (when it was queued, or its retry's due time) instead of becoming now(), which
-- let every later job of the app be claimed before it (per-app order broken by a rescue;
-- tests/e2e/test_many_workers.py). The rest of deployq_rescue is as in 001_initial.sql.
CREATE OR REPLACE FUNCTION deployq_rescue() RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    r jobs;
BEGIN
    -- the common case, nothing expired, costs one index probe
    IF NOT EXISTS (SELECT 1 FROM jobs WHERE status = 'running' AND lease_expires_at < now()) THEN
        RETURN;
    END IF;
    FOR r IN
        UPDATE jobs SET
            status = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
            finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
            error = CASE WHEN attempt >= max_attempts THEN
                'the worker ' || worker_id || ' stopped answering during attempt '
                || attempt || ' (the last one)' END,
            lease_expires_at = NULL, updated_at = now(),
            cancel_requested = false, cancel_force = false
        WHERE status = 'running' AND lease_expires_at < now()
        RETURNING *
    LOOP
        INSERT INTO job_events (job_id, kind, from_status, to_status, actor, message, data)
        VALUES (r.id, 'rescued', 'running', r.status, 'rescuer',
                format('lease of worker %s expired during attempt %s: %s', r.worker_id,
                       r.attempt, CASE WHEN r.status = 'queued' THEN 'queued again'
                                       ELSE 'no attempts left' END),
                jsonb_build_object('worker', r.worker_id, 'attempt', r.attempt));
        PERFORM pg_notify('deployq_jobs', jsonb_build_object(
            'id', r.id, 'app', r.app_name, 'status', r.status, 'kind', 'rescued')::text);
        RETURN NEXT r;
    END LOOP;
END $$;
