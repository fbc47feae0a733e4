-- Retention (store/_retention.py): the logs, events, done outbox rows and finished scan
-- worklist rows of old jobs go.

-- name: prune_batch
-- One batch of jobs finished before the cutoff: their logs, events, sent or failed
-- notifications and finished scan rows (done or unavailable; the result stays in
-- jobs.scan_summary) are deleted and the job is marked pruned_at (the row stays). SKIP
-- LOCKED: several pruners never do the same work.
WITH batch AS (
    SELECT id FROM jobs
    WHERE finished_at IS NOT NULL AND pruned_at IS NULL AND finished_at < now() - %(age)s
    ORDER BY finished_at LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), logs AS (
    DELETE FROM job_logs WHERE job_id IN (SELECT id FROM batch) RETURNING 1
), events AS (
    DELETE FROM job_events WHERE job_id IN (SELECT id FROM batch) RETURNING 1
), outbox AS (
    DELETE FROM notifications WHERE job_id IN (SELECT id FROM batch)
    AND status IN ('sent', 'failed') RETURNING 1
), scans AS (
    DELETE FROM job_scans WHERE job_id IN (SELECT id FROM batch)
    AND state IN ('done', 'unavailable') RETURNING 1
), marked AS (
    UPDATE jobs SET pruned_at = now() WHERE id IN (SELECT id FROM batch) RETURNING 1
)
SELECT (SELECT count(*) FROM marked) AS jobs, (SELECT count(*) FROM logs) AS log_lines,
       (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM outbox) AS notifications,
       (SELECT count(*) FROM scans) AS scans

-- name: prune_count
-- What prune_batch would delete (prune --dry-run), all batches together.
WITH old AS (
    SELECT id FROM jobs
    WHERE finished_at IS NOT NULL AND pruned_at IS NULL AND finished_at < now() - %(age)s
)
SELECT (SELECT count(*) FROM old) AS jobs,
       (SELECT count(*) FROM job_logs WHERE job_id IN (SELECT id FROM old)) AS log_lines,
       (SELECT count(*) FROM job_events WHERE job_id IN (SELECT id FROM old)) AS events,
       (SELECT count(*) FROM notifications WHERE job_id IN (SELECT id FROM old)
           AND status IN ('sent', 'failed')) AS notifications,
       (SELECT count(*) FROM job_scans WHERE job_id IN (SELECT id FROM old)
           AND state IN ('done', 'unavailable')) AS scans

-- name: prune_bodies_batch
-- One batch of webhook delivery bodies older than the body retention: the body goes, the row
-- stays with the body's size and when it went. SKIP LOCKED, as prune_batch.
WITH batch AS (
    SELECT id FROM webhook_deliveries
    WHERE body IS NOT NULL AND received_at < now() - %(age)s
    ORDER BY received_at LIMIT %(batch)s
    FOR UPDATE SKIP LOCKED
), pruned AS (
    UPDATE webhook_deliveries d
       SET body_bytes = coalesce(d.body_bytes, octet_length(d.body)), body = NULL,
           body_pruned_at = now()
      FROM batch WHERE d.id = batch.id
    RETURNING d.body_bytes
)
SELECT count(*) AS deliveries, coalesce(sum(body_bytes), 0)::bigint AS bytes FROM pruned

-- name: prune_bodies_count
-- What prune_bodies_batch would do (prune --dry-run), all batches together.
SELECT count(*) AS deliveries,
       coalesce(sum(coalesce(body_bytes, octet_length(body))), 0)::bigint AS bytes
FROM webhook_deliveries WHERE body IS NOT NULL AND received_at < now() - %(age)s

-- name: pushed_images
-- The images an app's builds pushed (or set out to push), newest job first: registry tag
-- retention maps each tag to the branch whose build pushed it. Rollbacks push nothing.
SELECT id AS job_id, branch, commit_sha, image_ref, coalesce(finished_at, enqueued_at) AS at
FROM jobs
WHERE app_id = %(app_id)s AND NOT deploy_only AND image_ref IS NOT NULL
  AND commit_sha IS NOT NULL
ORDER BY id DESC

-- name: images_in_use
-- The images registry tag retention must never delete: what each target of the app runs
-- now, the %(keep)s releases before it per target (kept for rollback), and the images of the
-- app's queued and running jobs (a rollback waiting to deploy one; a build that may push its
-- commit's tag again, before it recorded a digest).
SELECT digest, image_ref, NULL AS commit_sha FROM (
    SELECT digest, image_ref, replaced_at,
           row_number() OVER (PARTITION BY target ORDER BY started_at DESC, id DESC) AS n
    FROM releases WHERE app_name = %(app_name)s
) r WHERE replaced_at IS NULL OR n <= %(keep)s + 1
UNION
SELECT image_digest, image_ref, commit_sha FROM jobs
WHERE app_name = %(app_name)s AND status IN ('queued', 'running')
