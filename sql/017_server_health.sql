-- Health as each host sees it (issue #15, point 2). Every worker records what its probe of a
-- server found, as one row per (server, host): a server unreachable from one host is unhealthy
-- for that host only. A host's view changes only after two observations in a row disagree
-- with it (no flapping). build_servers.healthy is derived from the views: false only when
-- every host that probed the server recently sees it failed (store/_servers.py `observe`).
CREATE TABLE server_health (
    server_id    bigint NOT NULL REFERENCES build_servers (id) ON DELETE CASCADE,
    host_id      text NOT NULL,
    healthy      boolean NOT NULL,          -- the view this host acts on (after hysteresis)
    last_ok      boolean NOT NULL,          -- the last observation: the engine answered
    streak       integer NOT NULL DEFAULT 1 CHECK (streak >= 1),  -- of last_ok, in a row
    latency_ms   integer,
    error        text,                      -- why the last observation was not usable
    observed_at  timestamptz NOT NULL DEFAULT now(),
    changed_at   timestamptz NOT NULL DEFAULT now(),  -- when healthy last changed
    PRIMARY KEY (server_id, host_id)
);

-- How long an observation counts: four probe rounds (worker/servers.py PROBE_INTERVAL_S).
-- A host whose workers stopped probing no longer has a say after it.
CREATE FUNCTION deployq_health_recent() RETURNS interval LANGUAGE sql IMMUTABLE
    AS $$ SELECT interval '60 seconds' $$;
