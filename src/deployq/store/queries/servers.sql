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
SELECT s.*, (SELECT count(*) FROM jobs j WHERE j.server_id = s.id AND j.status = 'running')
    AS running
FROM build_servers s ORDER BY s.name

-- name: server_get
SELECT s.*, (SELECT count(*) FROM jobs j WHERE j.server_id = s.id AND j.status = 'running')
    AS running
FROM build_servers s WHERE s.name = %(name)s

-- name: server_get_by_id
SELECT s.*, (SELECT count(*) FROM jobs j WHERE j.server_id = s.id AND j.status = 'running')
    AS running
FROM build_servers s WHERE s.id = %(id)s

-- name: server_set_draining
UPDATE build_servers SET draining = %(draining)s WHERE name = %(name)s

-- name: server_set_capacity
UPDATE build_servers SET capacity = %(capacity)s WHERE name = %(name)s

-- name: server_record_health
-- What the last probe of the engine found; unhealthy servers get no new jobs.
UPDATE build_servers SET healthy = %(healthy)s, last_error = %(error)s,
    engine_version = coalesce(%(engine_version)s, engine_version),
    free_disk_mb = coalesce(%(free_disk_mb)s, free_disk_mb), last_heartbeat_at = now()
WHERE id = %(id)s
RETURNING name

-- name: server_remove
DELETE FROM build_servers WHERE name = %(name)s
