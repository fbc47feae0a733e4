-- Estimates (store/_estimates.py, deployq/estimates.py): the queue now and the apps' usual
-- build times.

-- name: estimate_queue
-- Running jobs first, then the queued ones in the order the claim takes them; times as of
-- %(now)s.
SELECT j.id, j.app_id, j.status, j.started_at,
       greatest(0, extract(epoch FROM j.run_after - %(now)s))::float8 AS due_in_s,
       greatest(0, coalesce(extract(epoch FROM %(now)s - j.started_at), 0))::float8
           AS elapsed_s,
       coalesce(a.concurrency, 1) AS concurrency,
       row_number() OVER (PARTITION BY j.status = 'queued'
                          ORDER BY j.priority DESC, j.run_after, j.id) AS position
FROM jobs j LEFT JOIN apps a ON a.id = j.app_id
WHERE j.status IN ('queued', 'running')
ORDER BY j.status = 'queued', j.priority DESC, j.run_after, j.id;

-- name: estimate_capacity
-- The build slots that take new jobs, and the time the estimates count from (the caller's,
-- for a frozen clock, or the database's).
SELECT coalesce(%(now)s::timestamptz, now()) AS now, coalesce(sum(capacity), 0) AS capacity
FROM build_servers WHERE healthy AND NOT draining;

-- name: estimate_durations
-- Each app's usual build time: the median of its last %(last)s successful builds (NULL app
-- id: of every app's), and how many builds that is.
SELECT a.id AS app_id, m.median_s, m.builds
FROM unnest(%(app_ids)s::bigint[]) AS a(id)
CROSS JOIN LATERAL (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY b.s) AS median_s, count(*) AS builds
    FROM (SELECT extract(epoch FROM j.finished_at - j.started_at)::float8 AS s
            FROM jobs j
           WHERE j.status = 'succeeded' AND j.started_at IS NOT NULL AND NOT j.deploy_only
             AND (a.id IS NULL OR j.app_id = a.id)
           ORDER BY j.finished_at DESC LIMIT %(last)s) b
) m;
