-- What clients see of the queue as a whole (store/_jobs.py, store/_waits.py): statistics and
-- the reasons queued jobs wait.

-- name: queue_stats
-- Queue depth by priority, running jobs, server load, the last %(window)s in numbers.
WITH durations AS (
  SELECT extract(epoch FROM finished_at - started_at)::float8 AS d FROM jobs
  WHERE finished_at > now() - %(window)s AND started_at IS NOT NULL
    AND status IN ('succeeded', 'failed', 'timed_out'))
SELECT
  (SELECT coalesce(jsonb_object_agg(priority, n), '{}') FROM (
     SELECT priority, count(*) AS n FROM jobs WHERE status = 'queued' GROUP BY priority) q)
     AS queued_by_priority,
  (SELECT count(*) FROM jobs WHERE status = 'running') AS running,
  (SELECT coalesce(jsonb_agg(jsonb_build_object(
      'name', s.name, 'capacity', s.capacity, 'running', r.n, 'healthy', s.healthy,
      'draining', s.draining, 'arch', s.arch,
      'load', CASE WHEN s.capacity > 0 THEN round(r.n::numeric / s.capacity, 3) END)
      ORDER BY s.name), '[]')
     FROM build_servers s CROSS JOIN LATERAL (
       SELECT count(*) AS n FROM jobs j WHERE j.server_id = s.id AND j.status = 'running') r)
     AS servers,
  (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM (
     SELECT status, count(*) AS n FROM jobs WHERE finished_at > now() - %(window)s
     GROUP BY status) f) AS finished,
  (SELECT avg(d) FROM durations) AS mean_duration_s,
  (SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY d) FROM durations) AS p95_duration_s,
  (SELECT extract(epoch FROM now() - min(enqueued_at))::float8 FROM jobs
    WHERE status = 'queued') AS oldest_queued_age_s

-- name: wait_jobs
-- What the wait reason of queued jobs is made of.
SELECT j.id, j.app_id, j.priority, j.run_after, j.attempt, j.wait_reason,
       greatest(0, extract(epoch FROM j.run_after - now()))::float8 AS due_in_s,
       a.concurrency, a.required_arch, a.required_labels,
       (SELECT coalesce(array_agg(r.id ORDER BY r.id), '{}') FROM jobs r
         WHERE r.app_id = j.app_id AND r.status = 'running') AS app_running,
       (SELECT count(*) FROM jobs q WHERE q.status = 'queued' AND q.run_after <= now()
         AND (q.priority > j.priority OR (q.priority = j.priority
              AND (q.run_after, q.id) < (j.run_after, j.id)))) AS ahead
FROM jobs j LEFT JOIN apps a ON a.id = j.app_id
WHERE j.id = ANY(%(ids)s) AND j.status = 'queued'

-- name: wait_servers
-- host_alive: the server is anyone's, or a worker of its owner host sent a heartbeat within
-- %(alive)s (a unix:// server gets jobs only from its own host's workers).
SELECT s.name, s.arch, s.labels, s.healthy, s.draining, s.capacity, s.host_id,
       (SELECT count(*) FROM jobs r WHERE r.server_id = s.id AND r.status = 'running') AS running,
       s.host_id IS NULL OR EXISTS (
           SELECT 1 FROM workers w
            WHERE w.host_id = s.host_id AND NOT w.stopping
              AND w.heartbeat_at > now() - %(alive)s) AS host_alive
FROM build_servers s ORDER BY s.name

-- name: wait_reason_set
-- A worker's view of why these queued jobs cannot start; NULL clears it. Each job whose
-- reason changed is announced (kind "waiting": it frees no slot, so workers ignore it).
WITH changed AS (
    UPDATE jobs SET wait_reason = %(reason)s, updated_at = now()
    WHERE id = ANY(%(ids)s) AND status = 'queued' AND wait_reason IS DISTINCT FROM %(reason)s
    RETURNING id, app_name, status
)
SELECT id, pg_notify('deployq_jobs', jsonb_build_object('id', id, 'app', app_name,
    'status', status, 'kind', 'waiting')::text)
FROM changed

-- name: wait_reason_set_due
-- Why the due queued jobs are not being started (e.g. low disk); NULL clears it.
-- Announced like wait_reason_set.
WITH changed AS (
    UPDATE jobs SET wait_reason = %(reason)s, updated_at = now()
    WHERE status = 'queued' AND run_after <= now() AND wait_reason IS DISTINCT FROM %(reason)s
    RETURNING id, app_name, status
)
SELECT id, pg_notify('deployq_jobs', jsonb_build_object('id', id, 'app', app_name,
    'status', status, 'kind', 'waiting')::text)
FROM changed

-- name: next_due_in
-- Seconds until the earliest queued job with a future run_after becomes due.
SELECT extract(epoch FROM min(run_after) - now())::float8 AS wait
FROM jobs WHERE status = 'queued' AND run_after > now()
