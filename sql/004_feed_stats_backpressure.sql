-- The live feed, the statistics views and back-pressure (docs/FEED_AND_STATS.md).

-- == The live feed reads job_events ==========================================================
-- Server events belong to no job.
ALTER TABLE job_events ALTER COLUMN job_id DROP NOT NULL;
-- The id of the transaction that wrote the row. The feed reads rows in (tx, id) order and only
-- below the oldest transaction still running, so a row committed late is never skipped (ids
-- come from a sequence and commit out of order; transaction ids below that bound are final).
ALTER TABLE job_events
    ADD COLUMN tx bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint;
CREATE INDEX job_events_feed_idx ON job_events (tx, id);
-- retention of server events (job events go with their job)
CREATE INDEX job_events_server_idx ON job_events (at) WHERE job_id IS NULL;

-- Each change of a running job's step or percent is an event (the worker writes the job row
-- only; the feed shows every step).
CREATE FUNCTION deployq_progress_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_events (job_id, kind, message, data)
    VALUES (NEW.id,
            CASE WHEN NEW.step IS DISTINCT FROM OLD.step THEN 'step' ELSE 'progress' END,
            coalesce(NEW.step, '-') || ' ' || NEW.progress || '%',
            jsonb_build_object('step', NEW.step, 'progress', NEW.progress,
                               'attempt', NEW.attempt));
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_progress_event AFTER UPDATE OF step, progress ON jobs
    FOR EACH ROW
    WHEN (OLD.status = 'running' AND NEW.status = 'running'
          AND (NEW.step IS DISTINCT FROM OLD.step OR NEW.progress <> OLD.progress))
    EXECUTE FUNCTION deployq_progress_event();

-- A build server added, removed, or changed in health, draining or capacity is an event.
CREATE FUNCTION deployq_server_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    s build_servers;
    what text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        s := OLD;
        what := 'removed';
    ELSE
        s := NEW;
        what := CASE
            WHEN TG_OP = 'INSERT' THEN 'added'
            WHEN NEW.healthy IS DISTINCT FROM OLD.healthy THEN
                CASE WHEN NEW.healthy THEN 'healthy' ELSE 'unhealthy' END
            WHEN NEW.draining IS DISTINCT FROM OLD.draining THEN
                CASE WHEN NEW.draining THEN 'draining' ELSE 'undrained' END
            ELSE 'capacity ' || NEW.capacity END;
    END IF;
    INSERT INTO job_events (job_id, kind, message, data)
    VALUES (NULL, 'server', s.name || ' ' || what || coalesce(': ' || s.last_error, ''),
            jsonb_build_object('server', s.name, 'change', what, 'healthy', s.healthy,
                               'draining', s.draining, 'capacity', s.capacity,
                               'error', s.last_error));
    RETURN NULL;
END $$;
CREATE TRIGGER build_servers_event AFTER INSERT OR DELETE ON build_servers
    FOR EACH ROW EXECUTE FUNCTION deployq_server_event();
CREATE TRIGGER build_servers_change_event AFTER UPDATE OF healthy, draining, capacity
    ON build_servers FOR EACH ROW
    WHEN (NEW.healthy IS DISTINCT FROM OLD.healthy OR NEW.draining IS DISTINCT FROM OLD.draining
          OR NEW.capacity IS DISTINCT FROM OLD.capacity)
    EXECUTE FUNCTION deployq_server_event();

-- == Statistics ==============================================================================
-- Every job that ended. wait_s: enqueued to (last) start; build_s: (last) start to end, for
-- builds that ran to a verdict (cancelled and superseded ones say little about build time).
CREATE VIEW finished_builds AS
SELECT j.id, j.app_id, j.app_name AS app, j.status, j.enqueued_at, j.started_at, j.finished_at,
       (j.finished_at AT TIME ZONE 'UTC')::date AS day,
       extract(epoch FROM j.started_at - j.enqueued_at)::float8 AS wait_s,
       CASE WHEN j.status IN ('succeeded', 'failed', 'timed_out') THEN
           extract(epoch FROM j.finished_at - j.started_at)::float8 END AS build_s
FROM jobs j
WHERE j.finished_at IS NOT NULL;

-- Per app and day (UTC, by the day the job ended).
CREATE VIEW build_performance_summary AS
SELECT app, day,
       count(*) AS jobs,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       count(*) FILTER (WHERE status IN ('failed', 'timed_out')) AS failed,
       count(*) FILTER (WHERE status IN ('cancelled', 'superseded')) AS cancelled,
       round(count(*) FILTER (WHERE status = 'succeeded')::numeric
             / nullif(count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'timed_out')), 0),
             4)::float8 AS success_rate,
       avg(wait_s) AS avg_wait_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY wait_s) AS p95_wait_s,
       avg(build_s) AS avg_build_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY build_s) AS p95_build_s
FROM finished_builds
GROUP BY app, day;

-- estimates: the app's last successful builds
CREATE INDEX jobs_app_succeeded_idx ON jobs (app_id, finished_at DESC) WHERE status = 'succeeded';

-- What is queued and running now, with the wait so far.
CREATE VIEW active_builds AS
SELECT j.id, j.app_id, j.app_name AS app, j.status, j.priority, j.branch, j.commit_sha,
       j.enqueued_at, j.started_at,
       extract(epoch FROM coalesce(j.started_at, now()) - j.enqueued_at)::float8 AS wait_s,
       CASE WHEN j.status = 'running' THEN
           extract(epoch FROM now() - j.started_at)::float8 END AS running_s,
       s.name AS server, j.step, j.progress, j.attempt, j.wait_reason
FROM jobs j LEFT JOIN build_servers s ON s.id = j.server_id
WHERE j.status IN ('queued', 'running');

-- == Back-pressure ===========================================================================
ALTER TABLE apps ADD COLUMN max_queued integer CHECK (max_queued >= 1);

-- Roughly when a queue that is full has room again (seconds, for HTTP Retry-After): the
-- median of the app's (or every app's) recent successful builds, spread over the free
-- build slots, between 5 s and 10 min.
CREATE FUNCTION deployq_room_in_s(p_app_id bigint) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT least(600, greatest(5, ceil(coalesce(
        (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY b.build_s) FROM (
             SELECT build_s FROM finished_builds
              WHERE status = 'succeeded' AND (p_app_id IS NULL OR app_id = p_app_id)
              ORDER BY finished_at DESC LIMIT 20) b), 60)
        / CASE WHEN p_app_id IS NULL THEN greatest(1, (
              SELECT sum(capacity) FROM build_servers WHERE healthy AND NOT draining))
          ELSE 1 END)))::integer
$$;

-- Refuse a new queued job when its app (apps.max_queued) or the whole queue (the session
-- setting deployq.max_queued, from DEPLOYQ_MAX_QUEUED) is full: SQLSTATE DQ429, which the
-- store turns into QueueFull. A push that supersedes a queued job of its branch takes that
-- job's place, so it is never refused, nor is a redelivery of a job that exists. While a limit
-- applies, enqueues take one transaction advisory lock (1685156454), so they count one after
-- the other and a limit is never overshot; without limits they take no lock.
CREATE FUNCTION deployq_queue_room() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_app_limit integer;
    v_policy text;
    v_limit integer := nullif(current_setting('deployq.max_queued', true), '')::integer;
    v_replaces integer := 0;
    v_queued integer;
BEGIN
    IF NEW.status <> 'queued' THEN
        RETURN NEW;
    END IF;
    SELECT max_queued, supersede_policy INTO v_app_limit, v_policy
      FROM apps WHERE id = NEW.app_id;
    IF v_app_limit IS NULL AND coalesce(v_limit, 0) <= 0 THEN
        RETURN NEW;
    END IF;
    IF NEW.delivery_id IS NOT NULL AND EXISTS (
           SELECT 1 FROM jobs WHERE provider = NEW.provider AND delivery_id = NEW.delivery_id
              AND app_id = NEW.app_id) THEN
        RETURN NEW;  -- ON CONFLICT skips it
    END IF;
    PERFORM pg_advisory_xact_lock(1685156454);
    IF NEW.ref_type = 'branch' AND NEW.trigger <> 'retry' AND v_policy <> 'queue' THEN
        SELECT count(*) INTO v_replaces FROM jobs
         WHERE app_id = NEW.app_id AND branch = NEW.branch AND status = 'queued'
           AND ref_type = 'branch';
    END IF;
    IF v_app_limit IS NOT NULL THEN
        SELECT count(*) INTO v_queued FROM jobs WHERE app_id = NEW.app_id AND status = 'queued';
        IF v_queued - v_replaces >= v_app_limit THEN
            RAISE EXCEPTION 'queue full: app % has % queued jobs (its limit, max_queued, is %)',
                NEW.app_name, v_queued, v_app_limit
                USING ERRCODE = 'DQ429',
                      DETAIL = jsonb_build_object(
                          'scope', 'app', 'app', NEW.app_name, 'queued', v_queued,
                          'limit', v_app_limit,
                          'retry_after_s', deployq_room_in_s(NEW.app_id))::text;
        END IF;
    END IF;
    IF coalesce(v_limit, 0) > 0 THEN
        SELECT count(*) INTO v_queued FROM jobs WHERE status = 'queued';
        IF v_queued - v_replaces >= v_limit THEN
            RAISE EXCEPTION 'queue full: % jobs are queued (the limit, DEPLOYQ_MAX_QUEUED, is %)',
                v_queued, v_limit
                USING ERRCODE = 'DQ429',
                      DETAIL = jsonb_build_object(
                          'scope', 'queue', 'app', NEW.app_name, 'queued', v_queued,
                          'limit', v_limit, 'retry_after_s', deployq_room_in_s(NULL))::text;
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER jobs_queue_room BEFORE INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION deployq_queue_room();
