-- The test cluster of deployq.testing.replication: a primary and its streaming standby.

-- name: replication_role
-- The role pg_basebackup and the standby's WAL receiver log in as (pg_hba: replication only).
CREATE ROLE replicator WITH REPLICATION LOGIN

-- name: replication_state
-- How the standby's WAL receiver is doing, seen from the primary: "streaming" once caught up.
SELECT state FROM pg_stat_replication

-- name: replication_synchronous
-- From now on a commit returns once the standby has it: a promotion loses nothing.
ALTER SYSTEM SET synchronous_standby_names = '*'
