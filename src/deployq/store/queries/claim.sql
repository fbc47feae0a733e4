-- Jobs go to servers (store/_leases.py): the claim is the PL/pgSQL function deployq_claim of
-- sql/001_initial.sql, as sql/022_claim_by_primary_key.sql redefines it. Expired leases are
-- rescued by rescue.sql's queries (the claim no longer calls deployq_rescue, a no-op since
-- sql/015).

-- name: claim_jobs
-- The servers owned by another host (unix:// engines, sql/012_server_hosts.sql) are excluded
-- with the ones the worker excludes itself: they are not this worker's to build on.
-- Each job comes with its server's name, its app and the app's sealed secrets
-- (store/_secrets.py opens them): the worker needs nothing else, so a claim is one round trip
-- (claiming takes the owner role, the one role that reads app_secrets).
-- They are scalar subqueries, not joins: all of this runs under the claim lock, and the
-- planner, counting on 1000 rows from the function, hashed each joined table first (three
-- hash tables for one claimed job: ~0.1 ms more per claim, issue #11's separate claimers).
SELECT c.*,
       (SELECT s.name FROM build_servers s WHERE s.id = c.server_id) AS server_name,
       (SELECT to_jsonb(a) FROM apps a WHERE a.id = c.app_id) AS app_row,
       (SELECT sec.sealed FROM app_secrets sec WHERE sec.app_id = c.app_id) AS app_sealed
FROM deployq_claim(%(worker_id)s, %(limit)s, %(ttl)s, %(server_ids)s,
                   %(excluded_server_ids)s::bigint[] || ARRAY(
                       SELECT o.id FROM build_servers o
                        WHERE o.host_id IS NOT NULL
                          AND o.host_id IS DISTINCT FROM %(host_id)s::text),
                   %(scan_limit)s) AS c

-- name: claim_lock
-- The transaction advisory lock the claim and the rescue take turns on.
SELECT pg_advisory_xact_lock(%(key)s)
