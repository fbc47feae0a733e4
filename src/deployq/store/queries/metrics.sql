-- The figures of /metrics (store/_metrics.py).

-- name: metrics_by_status
SELECT status, count(*) AS n FROM jobs GROUP BY status

-- name: metrics_queue
SELECT count(*) AS queued, count(*) FILTER (WHERE run_after <= now()) AS due
FROM jobs WHERE status = 'queued'
