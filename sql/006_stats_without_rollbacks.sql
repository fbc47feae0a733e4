-- A rollback (a deploy-only job: it deploys an image built before) builds nothing: it is left
-- out of the build statistics and of the build times the estimates learn from.
CREATE OR REPLACE VIEW finished_builds AS
SELECT j.id, j.app_id, j.app_name AS app, j.status, j.enqueued_at, j.started_at, j.finished_at,
       (j.finished_at AT TIME ZONE 'UTC')::date AS day,
       extract(epoch FROM j.started_at - j.enqueued_at)::float8 AS wait_s,
       CASE WHEN j.status IN ('succeeded', 'failed', 'timed_out') THEN
           extract(epoch FROM j.finished_at - j.started_at)::float8 END AS build_s
FROM jobs j
WHERE j.finished_at IS NOT NULL AND NOT j.deploy_only;
