-- The claim writes its jobs in one statement (issue #15 point 5: its per-job loop cost ~4x
-- the finish per job). Before, each candidate ran its own server query, UPDATE, event INSERT
-- and pg_notify, all under the claim lock; now:
-- 1. one query reads the servers this claim may use that have a free slot (their free slots
--    counted once: this replaces the free-capacity pre-scan and the per-candidate count);
-- 2. one query reads the candidates as before (sql/020: per app its first free-concurrency
--    jobs, at most p_limit, in queue order; app-less jobs; at most p_scan in all); one that
--    requires an arch or labels comes with the positions of the servers it may run on;
-- 3. the servers are chosen in PL/pgSQL over arrays, in queue order, as before: each
--    candidate takes the fitting server with the most free slots (then the lowest id), and
--    every taken slot counts for the next candidates; a candidate no server fits is passed
--    over, the claim stops at p_limit jobs or when no slot is left;
-- 4. one statement UPDATEs the chosen jobs that are still queued, taken by id = ANY so always
--    through the primary key (a join with the chosen ids may be planned, generically on a
--    young table's statistics, as a hash join over all of jobs) (a cancel or supersede may
--    have committed since the scan: that job is left out, and the claim is one job short,
--    as sql/020 allowed already), INSERTs their 'claimed' events and sends their NOTIFYs, in
--    queue order, and returns them.
-- The rules are the same and so is the lock: server capacity, app concurrency and order,
-- draining and unhealthy servers, p_only / p_excluded, run_after.
CREATE OR REPLACE FUNCTION deployq_claim(
    p_worker text, p_limit integer, p_ttl interval, p_only bigint[], p_excluded bigint[],
    p_scan integer
) RETURNS SETOF jobs LANGUAGE plpgsql
-- custom plans were made at each call (0.2 ms: the UPDATE is cheaper for a known number of
-- jobs, so the generic plan never won), and the generic ones are as good
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_sid bigint[];      -- the usable servers with a free slot, by id
    v_sname text[];
    v_sfree integer[];   -- their free slots, less what this claim took
    v_left bigint;       -- free slots of all of them
    v_ids bigint[] := '{}';
    v_pos integer[] := '{}';
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
        v_ids := v_ids || cand.id;
        v_pos := v_pos || v_best;
        v_sfree[v_best] := v_most - 1;
        v_left := v_left - 1;
        EXIT WHEN cardinality(v_ids) >= p_limit OR v_left <= 0;
    END LOOP;
    IF cardinality(v_ids) = 0 THEN
        RETURN;
    END IF;
    -- status is checked again: a cancel or supersede may have committed since the scan
    RETURN QUERY
    WITH taken AS (
        -- by id = ANY: the primary key whatever the planner thinks of the table (a join with
        -- the chosen ids could be planned as a hash join over all of jobs)
        UPDATE jobs j SET status = 'running', attempt = j.attempt + 1,
               server_id = v_sid[v_pos[array_position(v_ids, j.id)]], worker_id = p_worker,
               lease_expires_at = v_now + p_ttl, started_at = v_now, updated_at = now(),
               progress = 0, step = NULL, wait_reason = NULL, error = NULL, finished_at = NULL
         WHERE j.id = ANY (v_ids) AND j.status = 'queued'
        RETURNING j, array_position(v_ids, j.id) AS ord
    ), logged AS (
        INSERT INTO job_events (job_id, kind, from_status, to_status, actor, message, data)
        SELECT (t.j).id, 'claimed', 'queued', 'running', p_worker,
               format('attempt %s/%s on %s', (t.j).attempt, (t.j).max_attempts,
                      v_sname[v_pos[t.ord]]),
               jsonb_build_object('server', v_sname[v_pos[t.ord]], 'attempt', (t.j).attempt)
          FROM taken t
         ORDER BY t.ord
    )
    SELECT (n.j).* FROM (
        -- a volatile target is computed after the sort: the NOTIFYs go out in queue order
        SELECT t.j, pg_notify('deployq_jobs', jsonb_build_object(
                   'id', (t.j).id, 'app', (t.j).app_name, 'status', 'running',
                   'kind', 'claimed')::text)
          FROM taken t
         ORDER BY t.ord
    ) n;
END $$;
