-- The claim's cost no longer grows with the queue (issue #11: one-job claims by separate
-- claimers were ~30 % slower with sql/021). Two plans read every queued job on a young table
-- (no statistics yet: a fresh install, the benchmark's database, a burst of pushes before
-- autovacuum's next ANALYZE), under the claim lock that every claimer waits on:
-- - sql/021's UPDATE of the chosen jobs by `id = ANY (v_ids)`: its generic plan took the
--   partial index of queued jobs and filtered all of them (0.55 ms of a 1 ms claim with
--   1,000 queued). Each chosen job is now written as soon as it is chosen, by `id = $1`
--   through the primary key (see the UPDATE): its UPDATE, its 'claimed' event and its NOTIFY, as
--   sql/020 did; the servers are still chosen over arrays (sql/021's gain for many-job
--   claims, which no longer count running jobs per candidate);
-- - the app-less candidates were found by reading the whole queue (jobs_claim_idx) for rows
--   with no app: they get their own partial index, empty in most installations.
-- A candidate whose UPDATE finds it no longer queued (a cancel or supersede committed since
-- the scan) is passed over and its server keeps the slot.
CREATE INDEX jobs_appless_queue_idx ON jobs (priority DESC, run_after, id)
    WHERE status = 'queued' AND app_id IS NULL;

CREATE OR REPLACE FUNCTION deployq_claim(
    p_worker text, p_limit integer, p_ttl interval, p_only bigint[], p_excluded bigint[],
    p_scan integer
) RETURNS SETOF jobs LANGUAGE plpgsql
-- custom plans were made at each call (0.2 ms), and the generic ones are as good
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_sid bigint[];      -- the usable servers with a free slot, by id
    v_sname text[];
    v_sfree integer[];   -- their free slots, less what this claim took
    v_left bigint;       -- free slots of all of them
    v_taken integer := 0;
    v_job jobs;
    v_best integer;
    v_most integer;
    v_now timestamptz;
    k integer;
    cand record;
BEGIN
    IF p_limit <= 0 THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(427020085613);
    -- now() is when the statement began, maybe long before the lock was ours
    v_now := clock_timestamp();
    SELECT array_agg(f.id), array_agg(f.name), array_agg(f.free), sum(f.free)
      INTO v_sid, v_sname, v_sfree, v_left
      FROM (SELECT s.id, s.name, (s.capacity - (
                   SELECT count(*) FROM jobs r
                    WHERE r.server_id = s.id AND r.status = 'running'))::integer AS free
              FROM build_servers s
             WHERE s.healthy AND NOT s.draining
               AND (p_only IS NULL OR s.id = ANY (p_only))
               AND NOT (s.id = ANY (coalesce(p_excluded, '{}')))
             ORDER BY s.id) f
     WHERE f.free > 0;
    IF v_left IS NULL OR v_left <= 0 THEN
        RETURN;
    END IF;
    FOR cand IN
        SELECT c.id,
               -- NULL: any of the servers (the job requires no arch nor label)
               CASE WHEN coalesce(c.required_arch, '') <> ''
                      OR coalesce(c.required_labels, '{}') <> '{}' THEN
                   ARRAY(SELECT i FROM generate_subscripts(v_sid, 1) AS i
                           JOIN build_servers s ON s.id = v_sid[i]
                          WHERE (coalesce(c.required_arch, '') = ''
                                 OR s.arch = c.required_arch)
                            AND coalesce(c.required_labels, '{}') <@ s.labels
                          ORDER BY i)
               END AS fits
          FROM (
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
        -- with a LIMIT the fits are computed after the sort, for the candidates fetched
        LIMIT p_scan
    LOOP
        -- the fitting server with the most free slots, the lowest id first (v_sid is sorted)
        v_best := NULL;
        v_most := 0;
        IF cand.fits IS NULL THEN
            FOR k IN 1 .. cardinality(v_sid) LOOP
                IF v_sfree[k] > v_most THEN
                    v_best := k;
                    v_most := v_sfree[k];
                END IF;
            END LOOP;
        ELSE
            FOREACH k IN ARRAY cand.fits LOOP
                IF v_sfree[k] > v_most THEN
                    v_best := k;
                    v_most := v_sfree[k];
                END IF;
            END LOOP;
        END IF;
        CONTINUE WHEN v_best IS NULL;
        -- status is checked again: a cancel or supersede may have committed since the scan.
        -- COLLATE "C" (the same equality) keeps the queued jobs' partial indexes out of this
        -- plan: on a young table the planner took jobs_app_queue_idx, whose fourth column is
        -- id, and read it all to find one row; now only the primary key can serve it.
        UPDATE jobs SET status = 'running', attempt = attempt + 1, server_id = v_sid[v_best],
               worker_id = p_worker, lease_expires_at = v_now + p_ttl, started_at = v_now,
               updated_at = now(), progress = 0, step = NULL, wait_reason = NULL,
               error = NULL, finished_at = NULL
         WHERE id = cand.id AND status COLLATE "C" = 'queued'
        RETURNING * INTO v_job;
        CONTINUE WHEN NOT FOUND;
        INSERT INTO job_events (job_id, kind, from_status, to_status, actor, message, data)
        VALUES (v_job.id, 'claimed', 'queued', 'running', p_worker,
                format('attempt %s/%s on %s', v_job.attempt, v_job.max_attempts,
                       v_sname[v_best]),
                jsonb_build_object('server', v_sname[v_best], 'attempt', v_job.attempt));
        PERFORM pg_notify('deployq_jobs', jsonb_build_object(
            'id', v_job.id, 'app', v_job.app_name, 'status', 'running', 'kind', 'claimed')::text);
        RETURN NEXT v_job;
        v_sfree[v_best] := v_most - 1;
        v_left := v_left - 1;
        v_taken := v_taken + 1;
        EXIT WHEN v_taken >= p_limit OR v_left <= 0;
    END LOOP;
END $$;
