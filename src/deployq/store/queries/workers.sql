-- Worker processes (store/_workers.py).

-- name: worker_register
INSERT INTO workers (id, host, pid, concurrency) VALUES (%(id)s, %(host)s, %(pid)s, %(concurrency)s)
ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid,
    concurrency = excluded.concurrency, heartbeat_at = now(), stopping = false

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = now() WHERE id = %(id)s

-- name: worker_stopping
UPDATE workers SET stopping = true WHERE id = %(id)s

-- name: worker_unregister
DELETE FROM workers WHERE id = %(id)s
