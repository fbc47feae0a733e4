-- The operator console's reads (store/console.py).

-- name: console_queue_page
-- Running jobs, then queued ones in the order workers claim them (priority, due time, id),
-- then the newest finished ones.
(SELECT j.*, s.name AS server_name FROM jobs j LEFT JOIN build_servers s ON s.id = j.server_id
  WHERE j.status = 'running' ORDER BY j.id DESC LIMIT %(active)s)
UNION ALL
(SELECT j.*, s.name AS server_name FROM jobs j LEFT JOIN build_servers s ON s.id = j.server_id
  WHERE j.status = 'queued' ORDER BY j.priority DESC, j.run_after, j.id LIMIT %(active)s)
UNION ALL
(SELECT j.*, s.name AS server_name FROM jobs j LEFT JOIN build_servers s ON s.id = j.server_id
  WHERE j.status NOT IN ('running', 'queued') ORDER BY j.id DESC LIMIT %(history)s);

-- name: console_estimate_inputs
-- What the start estimates need: queued jobs in claim order, running builds, free build
-- slots, each app's concurrency and the median of its last successful builds.
SELECT
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
      'id', q.id, 'app', q.app_name,
      'due_in_s', greatest(0, extract(epoch FROM q.run_after - %(now)s))::float8)
      ORDER BY q.priority DESC, q.run_after, q.id), '[]')
     FROM jobs q WHERE q.status = 'queued') AS queued,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
      'app', r.app_name,
      'elapsed_s', greatest(0, extract(epoch FROM %(now)s - r.started_at))::float8)), '[]')
     FROM jobs r WHERE r.status = 'running' AND r.started_at IS NOT NULL) AS running,
  (SELECT coalesce(sum(capacity), 0) FROM build_servers WHERE healthy AND NOT draining)
     AS slots,
  (SELECT coalesce(jsonb_object_agg(name, concurrency), '{}') FROM apps) AS concurrency,
  (SELECT coalesce(jsonb_object_agg(app_name, median_s), '{}') FROM (
     SELECT app_name, percentile_cont(0.5) WITHIN GROUP (ORDER BY d) AS median_s FROM (
       SELECT app_name, extract(epoch FROM finished_at - started_at)::float8 AS d,
              row_number() OVER (PARTITION BY app_name ORDER BY finished_at DESC) AS n
       FROM jobs WHERE status = 'succeeded' AND started_at IS NOT NULL) b
     WHERE n <= %(recent)s GROUP BY app_name) m) AS build_s;
