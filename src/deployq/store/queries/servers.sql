-- Build servers (store/_servers.py).

-- name: server_add
INSERT INTO build_servers (name, docker_host, capacity, arch, labels, tls_ca, tls_cert, tls_key,
                           host_id)
VALUES (%(name)s, %(docker_host)s, %(capacity)s, %(arch)s, %(labels)s,
        %(tls_ca)s, %(tls_cert)s, %(tls_key)s, %(host_id)s)
RETURNING *, 0::bigint AS running

-- name: server_ensure_local
-- The local engine registered as "local" when no server exists at all (owned by this host
-- when it is a unix:// socket).
INSERT INTO build_servers (name, docker_host, capacity, arch, host_id)
SELECT 'local', %(docker_host)s, %(capacity)s, %(arch)s, %(host_id)s
WHERE NOT EXISTS (SELECT 1 FROM build_servers)
ON CONFLICT (name) DO NOTHING
RETURNING *, 0::bigint AS running

-- name: servers_all
-- Servers with their running jobs counted and each host's view of their health: every one,
-- or the one named or numbered (the optional filters).
SELECT s.*, (SELECT count(*) FROM jobs j WHERE j.server_id = s.id AND j.status = 'running')
    AS running,
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
         'host_id', h.host_id, 'healthy', h.healthy, 'last_ok', h.last_ok, 'streak', h.streak,
         'latency_ms', h.latency_ms, 'error', h.error, 'observed_at', h.observed_at,
         'changed_at', h.changed_at,
         'recent', h.observed_at > now() - deployq_health_recent()) ORDER BY h.host_id), '[]')
       FROM server_health h WHERE h.server_id = s.id) AS views
FROM build_servers s
WHERE (%(name)s::text IS NULL OR s.name = %(name)s)
  AND (%(id)s::bigint IS NULL OR s.id = %(id)s)
ORDER BY s.name

-- name: server_set_draining
UPDATE build_servers SET draining = %(draining)s WHERE name = %(name)s

-- name: server_set_capacity
UPDATE build_servers SET capacity = %(capacity)s WHERE name = %(name)s

-- name: server_health_lock
-- One observation at a time per server (the shared state is derived from all of them).
SELECT name, healthy FROM build_servers WHERE id = %(id)s FOR NO KEY UPDATE

-- name: server_observe
-- One host's observation. Its view (healthy) changes only when this observation and the
-- one before both disagree with it; the first observation sets it.
INSERT INTO server_health AS h
    (server_id, host_id, healthy, last_ok, streak, latency_ms, error)
VALUES (%(id)s, %(host_id)s, %(ok)s, %(ok)s, 1, %(latency_ms)s, %(error)s)
ON CONFLICT (server_id, host_id) DO UPDATE SET
    healthy = CASE WHEN excluded.last_ok <> h.healthy AND excluded.last_ok = h.last_ok
                   THEN excluded.last_ok ELSE h.healthy END,
    changed_at = CASE WHEN excluded.last_ok <> h.healthy AND excluded.last_ok = h.last_ok
                      THEN now() ELSE h.changed_at END,
    streak = CASE WHEN excluded.last_ok = h.last_ok THEN h.streak + 1 ELSE 1 END,
    last_ok = excluded.last_ok, latency_ms = excluded.latency_ms, error = excluded.error,
    observed_at = now()
RETURNING h.*, true AS recent

-- name: server_derive_health
-- The shared state from the recent views: unhealthy only when every host that probed the
-- server recently sees it failed. last_error: the newest recent reason not to use it.
UPDATE build_servers s SET
    healthy = d.healthy, last_error = d.error, last_heartbeat_at = now(),
    engine_version = coalesce(%(engine_version)s, s.engine_version),
    free_disk_mb = coalesce(%(free_disk_mb)s, s.free_disk_mb)
FROM (SELECT coalesce(bool_or(h.healthy), true) AS healthy,
             (array_agg(h.error ORDER BY h.observed_at DESC)
                  FILTER (WHERE h.error IS NOT NULL))[1] AS error
        FROM server_health h
       WHERE h.server_id = %(id)s AND h.observed_at > now() - deployq_health_recent()) d
WHERE s.id = %(id)s
RETURNING s.healthy, s.last_error

-- name: server_health_forget
-- Views of hosts that stopped probing a day ago leave `server list`.
DELETE FROM server_health WHERE server_id = %(id)s AND observed_at < now() - interval '1 day'

-- name: server_remove
DELETE FROM build_servers WHERE name = %(name)s
