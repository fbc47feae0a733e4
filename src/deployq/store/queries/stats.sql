-- Statistics (store/stats.py), read from the views of sql/004: finished_builds,
-- build_performance_summary and active_builds.

-- name: stats_window
-- The jobs that ended in the window, optionally of one app.
SELECT count(*) AS jobs,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status IN ('failed', 'timed_out')) AS failed,
       count(*) FILTER (WHERE status IN ('cancelled', 'superseded')) AS cancelled,
       avg(wait_s) AS avg_wait_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY wait_s) AS p95_wait_s,
       avg(build_s) AS avg_build_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY build_s) AS p95_build_s
FROM finished_builds
WHERE finished_at > %(since)s AND finished_at <= %(until)s
  AND (%(app)s::text IS NULL OR app = %(app)s::text);

-- name: stats_days
-- build_performance_summary for the days the window touches, newest first.
SELECT app, day, jobs, succeeded, failed, cancelled, success_rate, avg_wait_s, p95_wait_s,
       avg_build_s, p95_build_s
FROM build_performance_summary
WHERE day >= (%(since)s::timestamptz AT TIME ZONE 'UTC')::date
  AND day <= (%(until)s::timestamptz AT TIME ZONE 'UTC')::date
  AND (%(app)s::text IS NULL OR app = %(app)s::text)
ORDER BY day DESC, app;

-- name: stats_active
-- What is queued and running now.
SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
       count(*) FILTER (WHERE status = 'running') AS running,
       max(wait_s) FILTER (WHERE status = 'queued') AS oldest_wait_s
FROM active_builds
WHERE %(app)s::text IS NULL OR app = %(app)s::text;

-- name: stats_histograms
-- Cumulative counts (le bound) of the wait and build times of every finished job, for /metrics.
SELECT b.bound,
       count(f.wait_s) FILTER (WHERE f.wait_s <= b.bound) AS wait_n,
       count(f.build_s) FILTER (WHERE f.build_s <= b.bound) AS build_n
FROM unnest(%(bounds)s::float8[]) AS b(bound)
LEFT JOIN finished_builds f ON true
GROUP BY b.bound ORDER BY b.bound;

-- name: stats_sums
SELECT coalesce(sum(wait_s), 0) AS wait_sum, coalesce(sum(build_s), 0) AS build_sum
FROM finished_builds;

-- name: stats_now
-- The database's clock: the window ends there when the caller gives no end.
SELECT now() AS now
