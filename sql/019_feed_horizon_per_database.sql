-- The live feed's horizon (store/queries/feed.sql) is the oldest transaction still running in
-- this database, no longer in the whole cluster. A transaction left open in another database
-- of the same server (another deployq, any other application, a test's leftover session) can
-- never write these job_events, yet it held every reader of the feed back for as long as it
-- stayed open: `deployq watch`, the console and GET /api/v1/events printed nothing.
--
-- Safe against skipping a row committed late: the candidates are the in-progress
-- transactions of the statement's own snapshot, and one is left out only when a backend of
-- another database is seen holding its id; anything unsure stays in (a later read passes it).
CREATE OR REPLACE FUNCTION deployq_feed_horizon() RETURNS bigint
LANGUAGE sql STABLE AS $$
    WITH now AS (SELECT pg_current_snapshot() AS snapshot),
    elsewhere AS (  -- 32-bit ids of transactions running in other databases
        SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity
        WHERE backend_xid IS NOT NULL AND datname <> current_database()
        UNION ALL
        SELECT transaction::text::bigint FROM pg_prepared_xacts
        WHERE database <> current_database()
    )
    SELECT coalesce(
        (SELECT min(x::text::bigint) FROM pg_snapshot_xip(snapshot) AS x
         WHERE x::text::bigint % 4294967296 NOT IN (SELECT xid FROM elsewhere)),
        pg_snapshot_xmax(snapshot)::text::bigint
    )
    FROM now
$$;
