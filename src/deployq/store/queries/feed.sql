-- The live feed (store/feed.py): job_events in (tx, id) order, with the job's app and branch.

-- name: feed_after
-- The events after the cursor (tx, id), and the horizon: the oldest transaction still
-- running in this database (sql/019, computed once per read). Rows of a transaction below the horizon can be passed on; from the first row at
-- or above it, later rows may still be joined by rows committed late, so the reader stops.
SELECT e.id, e.tx, e.at, e.kind, e.job_id, e.from_status, e.to_status, e.actor, e.message,
       e.data, j.app_name AS app, j.branch, j.status AS job_status,
       (SELECT deployq_feed_horizon()) AS horizon
FROM job_events e LEFT JOIN jobs j ON j.id = e.job_id
WHERE (e.tx, e.id) > (%(tx)s, %(id)s)
ORDER BY e.tx, e.id
LIMIT %(limit)s;

-- name: feed_horizon
-- The cursor of "now": every row of a transaction below the horizon is history.
SELECT deployq_feed_horizon() AS horizon;

-- name: feed_cursor_of
-- The cursor of an event a client saw last (Last-Event-ID); none once it was pruned.
SELECT tx, id FROM job_events WHERE id = %(id)s;

-- name: feed_prune_server_events
-- Server events older than the retention (job events go with their job's prune).
DELETE FROM job_events WHERE job_id IS NULL AND at < now() - %(age)s;

-- name: feed_count_old_server_events
-- What feed_prune_server_events would delete (prune --dry-run).
SELECT count(*) AS n FROM job_events WHERE job_id IS NULL AND at < now() - %(age)s;
