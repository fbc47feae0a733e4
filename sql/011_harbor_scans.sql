-- Harbor done right (docs/harbor.md): the vulnerability scan of a pushed image is requested
-- after the push and collected in the background (worker.scans), so no build slot waits for
-- it; apps may set a policy on its result and a registry login of their own (a robot).

-- One row per job whose image was sent to Harbor's scanner: the collector's worklist. The
-- result shown to people is jobs.scan_summary, written with each change of state.
CREATE TABLE job_scans (
    job_id        bigint PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    project       text NOT NULL,
    repository    text NOT NULL,                     -- inside the project
    digest        text NOT NULL,
    state         text NOT NULL
                  CHECK (state IN ('requested', 'running', 'done', 'unavailable')),
    reason        text,                              -- unavailable: why
    polls         integer NOT NULL DEFAULT 0,
    next_poll_at  timestamptz NOT NULL DEFAULT now(),
    deadline_at   timestamptz NOT NULL,              -- no result by then: unavailable
    requested_at  timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX job_scans_due_idx ON job_scans (next_poll_at)
    WHERE state IN ('requested', 'running');

-- {"action": "fail" | "block-deploy", "max_critical": n}: what a scan with more than n
-- critical vulnerabilities does to the job; NULL: nothing (the scan is informative)
ALTER TABLE apps ADD COLUMN scan_policy jsonb;
-- the app's own registry login (e.g. a Harbor robot); its password is sealed in app_secrets
ALTER TABLE apps ADD COLUMN registry_username text;
