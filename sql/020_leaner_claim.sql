-- The claim does less under its lock (issue #11: separate one-slot claimers queue on it, so
-- every statement inside deployq_claim is paid once per claim by all of them):
-- - it no longer calls deployq_rescue(), which does nothing since
--   015_engine_aware_rescue.sql (expired leases are the rescuer's, store/queries/rescue.sql);
-- - each app offers at most p_limit candidates, no longer up to its free concurrency (64 for
--   a one-job claim of a busy app: 64 queued rows read and sorted to take one). The jobs an
--   app can get in one claim are its first p_limit in queue order, so the claim takes the
--   same jobs: an app's candidates all need the same kind of server, so when its first does
--   not fit none of the others would. Only a job cancelled or superseded between the scan
--   and its UPDATE now leaves the claim one job short of p_limit (the next claim takes it).
-- Everything else is as in 001_initial.sql.
CREATE OR REPLACE FUNCTION deployq_claim(
    p_worker text, p_limit integer, p_ttl interval, p_only bigint[], p_excluded bigint[],
    p_scan integer
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    v_free bigint;
    v_taken integer := 0;
    v_server bigint;
    v_server_name text;
    v_job jobs;
    v_now timestamptz;
    cand record;
BEGIN
    PERFORM pg_advisory_xact_lock(427020085613);
    -- now() is when the statement began, maybe long before the lock was ours
    v_now := clock_timestamp();
    SELECT coalesce(sum(greatest(0, s.capacity - (
               SELECT count(*) FROM jobs r WHERE r.server_id = s.id AND r.status = 'running'))), 0)
      INTO v_free
      FROM build_servers s
     WHERE s.healthy AND NOT s.draining
       AND (p_only IS NULL OR s.id = ANY (p_only))
       AND NOT (s.id = ANY (coalesce(p_excluded, '{}')));
    IF v_free <= 0 OR p_limit <= 0 THEN
        RETURN;
    END IF;
    FOR cand IN
        SELECT c.* FROM (
            SELECT q.id, q.priority, q.run_after, a.required_arch, a.required_labels
              FROM apps a
             CROSS JOIN LATERAL (
                   SELECT count(*) AS n FROM jobs r
                    WHERE r.app_id = a.id AND r.status = 'running') run
             CROSS JOIN LATERAL (
                   SELECT j.id, j.priority, j.run_after FROM jobs j
                    WHERE j.app_id = a.id AND j.status = 'queued' AND j.run_after <= v_now
                    ORDER BY j.priority DESC, j.run_after, j.id
                    LIMIT least(greatest(a.concurrency - run.n, 0), p_limit)) q
            UNION ALL
            (SELECT j.id, j.priority, j.run_after, NULL::text, NULL::text[] FROM jobs j
              WHERE j.app_id IS NULL AND j.status = 'queued' AND j.run_after <= v_now
              ORDER BY j.priority DESC, j.run_after, j.id LIMIT p_scan)
        ) c
        ORDER BY c.priority DESC, c.run_after, c.id
        LIMIT p_scan
    LOOP
        SELECT s.id, s.name INTO v_server, v_server_name
          FROM build_servers s
         CROSS JOIN LATERAL (
               SELECT count(*) AS n FROM jobs r
                WHERE r.server_id = s.id AND r.status = 'running') run
         WHERE s.healthy AND NOT s.draining
           AND (p_only IS NULL OR s.id = ANY (p_only))
           AND NOT (s.id = ANY (coalesce(p_excluded, '{}')))
           AND (coalesce(cand.required_arch, '') = '' OR s.arch = cand.required_arch)
           AND coalesce(cand.required_labels, '{}') <@ s.labels
           AND s.capacity > run.n
         ORDER BY s.capacity - run.n DESC, s.id
         LIMIT 1;
        CONTINUE WHEN v_server IS NULL;
        -- status is checked again: a cancel or supersede may have committed since the scan
        UPDATE jobs SET status = 'running', attempt = attempt + 1, server_id = v_server,
               worker_id = p_worker, lease_expires_at = v_now + p_ttl, started_at = v_now,
               updated_at = now(), progress = 0, step = NULL, wait_reason = NULL,
               error = NULL, finished_at = NULL
         WHERE id = cand.id AND status = 'queued'
        RETURNING * INTO v_job;
        CONTINUE WHEN NOT FOUND;
        INSERT INTO job_events (job_id, kind, from_status, to_status, actor, message, data)
        VALUES (v_job.id, 'claimed', 'queued', 'running', p_worker,
                format('attempt %s/%s on %s', v_job.attempt, v_job.max_attempts, v_server_name),
                jsonb_build_object('server', v_server_name, 'attempt', v_job.attempt));
        PERFORM pg_notify('deployq_jobs', jsonb_build_object(
            'id', v_job.id, 'app', v_job.app_name, 'status', 'running', 'kind', 'claimed')::text);
        RETURN NEXT v_job;
        v_taken := v_taken + 1;
        v_free := v_free - 1;
        EXIT WHEN v_taken >= p_limit OR v_free <= 0;
    END LOOP;
END $$;
