-- Retention (store/_retention.py): the logs, events and done outbox rows of old jobs go.

-- name: prune_batch
-- One batch of jobs finished before the cutoff: their logs, events and sent or failed
-- notifications are deleted and the job is marked pruned_at (the row stays). SKIP LOCKED:
-- several pruners never do the same work.
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
), marked AS (
    UPDATE jobs SET pruned_at = now() WHERE id IN (SELECT id FROM batch) RETURNING 1
)
SELECT (SELECT count(*) FROM marked) AS jobs, (SELECT count(*) FROM logs) AS log_lines,
       (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM outbox) AS notifications
