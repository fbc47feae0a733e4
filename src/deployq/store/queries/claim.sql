-- Jobs go to servers (store/_leases.py): the claim is the PL/pgSQL function deployq_claim of
-- sql/001_initial.sql. Expired leases are rescued by rescue.sql's queries (the claim's own
-- rescue, deployq_rescue, does nothing since sql/015_engine_aware_rescue.sql).

-- name: claim_jobs
-- The servers owned by another host (unix:// engines, sql/012_server_hosts.sql) are excluded
-- with the ones the worker excludes itself: they are not this worker's to build on.
-- Each job comes with its server's name, its app and the app's sealed secrets
-- (store/_secrets.py opens them): the worker needs nothing else, so a claim is one round trip
-- (claiming takes the owner role, the one role that reads app_secrets).
SELECT c.*, s.name AS server_name, to_jsonb(a) AS app_row, sec.sealed AS app_sealed
FROM deployq_claim(%(worker_id)s, %(limit)s, %(ttl)s, %(server_ids)s,
                   %(excluded_server_ids)s::bigint[] || ARRAY(
                       SELECT o.id FROM build_servers o
                        WHERE o.host_id IS NOT NULL
                          AND o.host_id IS DISTINCT FROM %(host_id)s::text),
                   %(scan_limit)s) AS c
LEFT JOIN build_servers s ON s.id = c.server_id
LEFT JOIN apps a ON a.id = c.app_id
LEFT JOIN app_secrets sec ON sec.app_id = c.app_id

-- name: claim_lock
-- The transaction advisory lock the claim and the rescue take turns on.
SELECT pg_advisory_xact_lock(%(key)s)
