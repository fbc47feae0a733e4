-- The rescue of an expired lease asks the engine first (src/deployq/worker/rescue.py): the
-- rescuer takes the attempt over (the job stays running, so its slot on the server stays
-- counted), has the engine stop the attempt's build, and queues the job again only when the
-- engine reports no build of it. The claim therefore no longer re-queues expired leases
-- itself: deployq_rescue(), which the claim calls, returns nothing now (its rules, a job's
-- place in the queue kept included, are in src/deployq/store/queries/rescue.sql).
CREATE OR REPLACE FUNCTION deployq_rescue() RETURNS SETOF jobs LANGUAGE plpgsql AS $$
BEGIN
    RETURN;
END $$;
