-- The rescue of jobs whose worker stopped answering (store/_leases.py, worker/rescue.py), in
-- two steps so that a server never runs more builds than its capacity: the rescuer takes the
-- expired attempt over (the job stays running and keeps its slot), the engine stops the
-- attempt's build, then the job is queued again (or failed after its last attempt).

-- name: rescue_take
-- Attempts whose lease expired become the rescuer's (a fresh lease, same attempt): the worker
-- that lost one learns it at its next heartbeat. Returns each with the worker it was taken
-- from and where its build ran.
-- An attempt on another host's unix:// engine (sql/012_server_hosts.sql) is left to that
-- host's rescuers, which can look into it, for %(foreign_after)s more.
WITH expired AS (
    SELECT j.id, j.worker_id FROM jobs j
      LEFT JOIN build_servers s ON s.id = j.server_id
     WHERE j.status = 'running' AND j.lease_expires_at < now()
       AND (s.host_id IS NULL OR s.host_id = %(host_id)s::text
            OR j.lease_expires_at < now() - %(foreign_after)s)
     ORDER BY j.id
     LIMIT %(limit)s
       FOR UPDATE OF j SKIP LOCKED
), taken AS (
    UPDATE jobs j SET worker_id = %(rescuer)s, lease_expires_at = now() + %(ttl)s,
           updated_at = now()
      FROM expired e
     WHERE j.id = e.id
    RETURNING j.id, j.attempt, j.app_name, j.status, j.server_id, j.enqueued_at,
              e.worker_id AS lost_worker
)
SELECT t.*, s.name AS server_name FROM taken t
LEFT JOIN build_servers s ON s.id = t.server_id
ORDER BY t.id

-- name: rescue_requeue
-- A taken attempt whose engine runs no build of it any more: queued again, or failed when it
-- was the last attempt (fenced on the rescuer's lease). It keeps its run_after, so it keeps its
-- place before its app's later jobs (as sql/013_rescue_keeps_queue_place.sql did).
UPDATE jobs SET
    status = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
    finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
    error = CASE WHEN attempt >= max_attempts THEN
        'the worker ' || %(lost_worker)s || ' stopped answering during attempt '
        || attempt || ' (the last one)' END,
    lease_expires_at = NULL, updated_at = now(),
    cancel_requested = false, cancel_force = false
WHERE id = %(id)s AND attempt = %(attempt)s AND status = 'running'
  AND worker_id = %(rescuer)s
RETURNING *
