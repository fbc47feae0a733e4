-- Worker processes (store/_workers.py).

-- name: worker_register
INSERT INTO workers (id, host, host_id, pid, concurrency)
VALUES (%(id)s, %(host)s, %(host_id)s, %(pid)s, %(concurrency)s)
ON CONFLICT (id) DO UPDATE SET host = excluded.host, host_id = excluded.host_id,
    pid = excluded.pid, concurrency = excluded.concurrency, heartbeat_at = now(),
    stopping = false

-- name: workers_all
-- Every registered worker with its running jobs, by host id then start.
SELECT w.*, (SELECT count(*) FROM jobs j WHERE j.worker_id = w.id AND j.status = 'running')
    AS running
FROM workers w ORDER BY w.host_id NULLS FIRST, w.started_at, w.id

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = now() WHERE id = %(id)s

-- name: worker_stopping
UPDATE workers SET stopping = true WHERE id = %(id)s

-- name: worker_unregister
DELETE FROM workers WHERE id = %(id)s
