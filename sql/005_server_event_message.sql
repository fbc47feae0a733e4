-- A server event names the server's error only when the change is that it became unhealthy
-- (draining a server that failed a probe earlier is not about that error).
CREATE OR REPLACE FUNCTION deployq_server_event() RETURNS trigger LANGUAGE plpgsql AS $$
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
    VALUES (NULL, 'server',
            s.name || ' ' || what
                || CASE WHEN what = 'unhealthy' THEN coalesce(': ' || s.last_error, '') ELSE '' END,
            jsonb_build_object('server', s.name, 'change', what, 'healthy', s.healthy,
                               'draining', s.draining, 'capacity', s.capacity,
                               'error', s.last_error));
    RETURN NULL;
END $$;
