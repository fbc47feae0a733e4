-- Missed-delivery reconciliation (store/_reconcile.py, deployq.reconcile).

-- name: reconcile_apps_due
-- Apps that opted in (reconcile_interval_s) and whose interval has passed.
SELECT * FROM apps WHERE reconcile_interval_s IS NOT NULL AND (last_reconciled_at IS NULL
    OR last_reconciled_at + make_interval(secs => reconcile_interval_s) <= now())
ORDER BY name

-- name: reconcile_commits_with_jobs
SELECT DISTINCT commit_sha FROM jobs WHERE app_id = %(app_id)s AND commit_sha = ANY(%(shas)s)

-- name: reconcile_mark
UPDATE apps SET last_reconciled_at = now() WHERE id = %(app_id)s
