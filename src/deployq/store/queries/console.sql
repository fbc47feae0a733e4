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

-- name: console_live
SELECT
    count(*) FILTER (WHERE status = 'queued') AS queued,
    count(*) FILTER (WHERE status = 'running') AS running,
    min(enqueued_at) FILTER (WHERE status = 'queued') AS oldest_queued_at
FROM jobs WHERE status IN ('queued', 'running')
