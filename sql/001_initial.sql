-- deployq schema. Every table the queue, pipeline, web service, notifier and console use.

CREATE TABLE apps (
    id                     bigserial PRIMARY KEY,
    name                   text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    repo_url               text NOT NULL,
    repo_identity          text NOT NULL,          -- normalised host/owner/name, for matching
    branches               text[] NOT NULL DEFAULT '{main}',
    build_tags             boolean NOT NULL DEFAULT false,
    build_prs              boolean NOT NULL DEFAULT false,
    paths                  text[] NOT NULL DEFAULT '{}',
    image                  text,
    dockerfile             text NOT NULL DEFAULT 'Dockerfile',
    context                text NOT NULL DEFAULT '.',
    target                 text,
    build_args             jsonb NOT NULL DEFAULT '{}',
    build_secrets          jsonb NOT NULL DEFAULT '{}',
    webhook_secret         text,
    supersede_policy       text NOT NULL DEFAULT 'supersede'
                           CHECK (supersede_policy IN ('queue', 'supersede', 'cancel-running')),
    concurrency            integer NOT NULL DEFAULT 1 CHECK (concurrency BETWEEN 1 AND 64),
    priority               smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 3),
    max_attempts           integer CHECK (max_attempts BETWEEN 1 AND 100),
    timeout_s              double precision CHECK (timeout_s > 0),
    required_arch          text,
    required_labels        text[] NOT NULL DEFAULT '{}',
    submodules             boolean NOT NULL DEFAULT false,
    notify_emails          text[] NOT NULL DEFAULT '{}',
    notify_events          text[] NOT NULL DEFAULT '{started,succeeded,failed,timed_out,cancelled}',
    notify_pusher          boolean NOT NULL DEFAULT false,
    notify_webhook_url     text,
    notify_webhook_secret  text,
    reconcile_interval_s   double precision CHECK (reconcile_interval_s > 0),
    last_reconciled_at     timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX apps_repo_identity_idx ON apps (repo_identity);

CREATE TABLE build_servers (
    id                 bigserial PRIMARY KEY,
    name               text NOT NULL UNIQUE,
    docker_host        text NOT NULL,
    capacity           integer NOT NULL DEFAULT 2 CHECK (capacity BETWEEN 0 AND 1024),
    arch               text NOT NULL DEFAULT 'amd64',
    labels             text[] NOT NULL DEFAULT '{}',
    draining           boolean NOT NULL DEFAULT false,
    healthy            boolean NOT NULL DEFAULT true,
    last_heartbeat_at  timestamptz,
    last_error         text,
    engine_version     text,
    free_disk_mb       bigint,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workers (
    id            text PRIMARY KEY,                 -- host:pid:random
    host          text NOT NULL,
    pid           integer NOT NULL,
    concurrency   integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopping      boolean NOT NULL DEFAULT false
);

CREATE TABLE jobs (
    id                bigserial PRIMARY KEY,
    app_id            bigint REFERENCES apps (id) ON DELETE SET NULL,
    app_name          text NOT NULL,
    provider          text NOT NULL DEFAULT 'manual',
    trigger           text NOT NULL CHECK (trigger IN ('webhook', 'manual', 'retry', 'reconcile')),
    delivery_id       text,
    repo_url          text NOT NULL,
    ref               text NOT NULL,
    ref_type          text NOT NULL DEFAULT 'branch' CHECK (ref_type IN ('branch', 'tag', 'pr')),
    branch            text NOT NULL,                -- short ref: main, v1.2, pr-7
    commit_sha        text CHECK (commit_sha ~ '^[0-9a-f]{7,64}$'),
    commit_message    text,
    commit_author     text,
    pusher            text,
    pusher_email      text,
    priority          smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 3),
    status            text NOT NULL DEFAULT 'queued' CHECK (status IN
                      ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'timed_out',
                       'superseded')),
    progress          smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    step              text,
    attempt           integer NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    max_attempts      integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    server_id         bigint REFERENCES build_servers (id) ON DELETE SET NULL,
    worker_id         text,
    lease_expires_at  timestamptz,
    run_after         timestamptz NOT NULL DEFAULT now(),
    enqueued_at       timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    error             text,
    image_ref         text,
    image_digest      text,
    scan_summary      jsonb,
    step_durations    jsonb NOT NULL DEFAULT '{}',
    retry_of          bigint REFERENCES jobs (id) ON DELETE SET NULL,
    cancel_requested  boolean NOT NULL DEFAULT false,
    cancel_force      boolean NOT NULL DEFAULT false,
    wait_reason       text,
    timeout_s         double precision CHECK (timeout_s > 0),
    pruned_at         timestamptz,                  -- logs and events deleted by retention
    CHECK (attempt <= max_attempts),
    CHECK ((status = 'running') = (lease_expires_at IS NOT NULL)),
    CHECK (status <> 'running' OR (server_id IS NOT NULL AND worker_id IS NOT NULL)),
    CHECK (finished_at IS NULL OR status IN
           ('succeeded', 'failed', 'cancelled', 'timed_out', 'superseded'))
);
-- the claim: queued jobs in priority order, due first
CREATE INDEX jobs_claim_idx ON jobs (priority DESC, run_after, id) WHERE status = 'queued';
-- the claim takes each app's next jobs without scanning the queued jobs of blocked apps
CREATE INDEX jobs_app_queue_idx ON jobs (app_id, priority DESC, run_after, id)
    WHERE status = 'queued';
-- capacity and per-app limits count running jobs; the rescuer looks for expired leases
CREATE INDEX jobs_running_idx ON jobs (server_id, app_id, lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_app_branch_idx ON jobs (app_id, branch, status);
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- retention: finished jobs whose logs and events are still there
CREATE INDEX jobs_prune_idx ON jobs (finished_at)
    WHERE finished_at IS NOT NULL AND pruned_at IS NULL;
CREATE INDEX jobs_enqueued_idx ON jobs (enqueued_at DESC);
-- one job per app for a provider delivery, even when the delivery arrives twice at once
CREATE UNIQUE INDEX jobs_delivery_uq ON jobs (provider, delivery_id, app_id)
    WHERE delivery_id IS NOT NULL;

CREATE TABLE job_events (
    id           bigserial PRIMARY KEY,
    job_id       bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind         text NOT NULL,                     -- enqueued, claimed, step, retry, cancel ...
    from_status  text,
    to_status    text,
    actor        text,
    message      text,
    data         jsonb
);
CREATE INDEX job_events_job_idx ON job_events (job_id, id);

CREATE TABLE job_logs (
    job_id  bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     integer NOT NULL,
    at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    stream  text NOT NULL DEFAULT 'build',
    line    text NOT NULL,
    PRIMARY KEY (job_id, seq)
);

CREATE TABLE webhook_deliveries (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    provider     text NOT NULL,
    event        text,
    delivery_id  text,
    repo         text,
    ref          text,
    result       text NOT NULL CHECK (result IN
                 ('accepted', 'ignored', 'refused', 'duplicate', 'error')),
    status_code  integer NOT NULL,
    job_ids      bigint[] NOT NULL DEFAULT '{}',
    reason       text,
    headers      jsonb,
    body         bytea,                             -- kept for verified deliveries: replay
    replay_of    bigint REFERENCES webhook_deliveries (id) ON DELETE SET NULL,
    spooled      boolean NOT NULL DEFAULT false     -- received while the database was down
);
CREATE INDEX webhook_deliveries_received_idx ON webhook_deliveries (received_at DESC);
CREATE INDEX webhook_deliveries_delivery_idx ON webhook_deliveries (provider, delivery_id);

CREATE TABLE api_tokens (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL,
    token_hash    text NOT NULL UNIQUE,             -- sha256 of the token; the token is shown once
    scope         text NOT NULL CHECK (scope IN ('read', 'deploy', 'admin')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE TABLE notifications (
    id                  bigserial PRIMARY KEY,
    job_id              bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    event               text NOT NULL,
    channel             text NOT NULL CHECK (channel IN ('email', 'webhook')),
    target              text NOT NULL,
    payload             jsonb NOT NULL,
    status              text NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'sending', 'sent', 'failed')),
    attempts            integer NOT NULL DEFAULT 0,
    max_attempts        integer NOT NULL DEFAULT 8,
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    attempt_started_at  timestamptz,
    last_error          text,
    idempotency_key     text NOT NULL UNIQUE,
    created_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz
);
CREATE INDEX notifications_due_idx ON notifications (next_attempt_at)
    WHERE status IN ('pending', 'sending');

-- The queue's claim and rescue (store/claim.py). Both run under one transaction advisory
-- lock (key 0x636C61696D, "claim"), so server capacity and app concurrency are counted
-- consistently by every worker on every host; a claim is one round trip, which keeps the
-- time the lock is held short.

-- Take back jobs whose lease expired (their worker died): queued again, or failed after
-- their last attempt. Returns the rows as they are now. The caller holds the claim lock.
CREATE FUNCTION deployq_rescue() RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    r jobs;
BEGIN
    -- the common case, nothing expired, costs one index probe
    IF NOT EXISTS (SELECT 1 FROM jobs WHERE status = 'running' AND lease_expires_at < now()) THEN
        RETURN;
    END IF;
    FOR r IN
        UPDATE jobs SET
            status = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
            finished_at = CASE WHEN attempt >= max_attempts THEN now() END,
            error = CASE WHEN attempt >= max_attempts THEN
                'the worker ' || worker_id || ' stopped answering during attempt '
                || attempt || ' (the last one)' END,
            lease_expires_at = NULL, run_after = now(), updated_at = now(),
            cancel_requested = false, cancel_force = false
        WHERE status = 'running' AND lease_expires_at < now()
        RETURNING *
    LOOP
        INSERT INTO job_events (job_id, kind, from_status, to_status, actor, message, data)
        VALUES (r.id, 'rescued', 'running', r.status, 'rescuer',
                format('lease of worker %s expired during attempt %s: %s', r.worker_id,
                       r.attempt, CASE WHEN r.status = 'queued' THEN 'queued again'
                                       ELSE 'no attempts left' END),
                jsonb_build_object('worker', r.worker_id, 'attempt', r.attempt));
        PERFORM pg_notify('deployq_jobs', jsonb_build_object(
            'id', r.id, 'app', r.app_name, 'status', r.status, 'kind', 'rescued')::text);
        RETURN NEXT r;
    END LOOP;
END $$;

-- Claim up to p_limit due jobs for worker p_worker: rescue expired leases first, then take
-- each app's next jobs (at most its concurrency minus its running jobs) in priority order
-- and put each on the least loaded server that fits (healthy, not draining, arch, labels,
-- a free slot). Returns the rescued rows (status queued/failed) and the claimed ones
-- (status running).
CREATE FUNCTION deployq_claim(
    p_worker text, p_limit integer, p_ttl interval, p_only bigint[], p_excluded bigint[],
    p_scan integer
) RETURNS SETOF jobs LANGUAGE plpgsql AS $$
DECLARE
    v_free bigint;
    v_taken integer := 0;
    v_server bigint;
    v_server_name text;
    v_job jobs;
    v_now timestamptz;
    cand record;
BEGIN
    PERFORM pg_advisory_xact_lock(427020085613);
    -- now() is when the statement began, maybe long before the lock was ours
    v_now := clock_timestamp();
    RETURN QUERY SELECT * FROM deployq_rescue();
    SELECT coalesce(sum(greatest(0, s.capacity - (
               SELECT count(*) FROM jobs r WHERE r.server_id = s.id AND r.status = 'running'))), 0)
      INTO v_free
      FROM build_servers s
     WHERE s.healthy AND NOT s.draining
       AND (p_only IS NULL OR s.id = ANY (p_only))
       AND NOT (s.id = ANY (coalesce(p_excluded, '{}')));
    IF v_free <= 0 OR p_limit <= 0 THEN
        RETURN;
    END IF;
    FOR cand IN
        SELECT c.* FROM (
            SELECT q.id, q.priority, q.run_after, a.required_arch, a.required_labels
              FROM apps a
             CROSS JOIN LATERAL (
                   SELECT count(*) AS n FROM jobs r
                    WHERE r.app_id = a.id AND r.status = 'running') run
             CROSS JOIN LATERAL (
                   SELECT j.id, j.priority, j.run_after FROM jobs j
                    WHERE j.app_id = a.id AND j.status = 'queued' AND j.run_after <= v_now
                    ORDER BY j.priority DESC, j.run_after, j.id
                    LIMIT greatest(a.concurrency - run.n, 0)) q
            UNION ALL
            (SELECT j.id, j.priority, j.run_after, NULL::text, NULL::text[] FROM jobs j
              WHERE j.app_id IS NULL AND j.status = 'queued' AND j.run_after <= v_now
              ORDER BY j.priority DESC, j.run_after, j.id LIMIT p_scan)
        ) c
        ORDER BY c.priority DESC, c.run_after, c.id
        LIMIT p_scan
    LOOP
        SELECT s.id, s.name INTO v_server, v_server_name
          FROM build_servers s
         CROSS JOIN LATERAL (
               SELECT count(*) AS n FROM jobs r
                WHERE r.server_id = s.id AND r.status = 'running') run
         WHERE s.healthy AND NOT s.draining
           AND (p_only IS NULL OR s.id = ANY (p_only))
           AND NOT (s.id = ANY (coalesce(p_excluded, '{}')))
           AND (coalesce(cand.required_arch, '') = '' OR s.arch = cand.required_arch)
           AND coalesce(cand.required_labels, '{}') <@ s.labels
           AND s.capacity > run.n
         ORDER BY s.capacity - run.n DESC, s.id
         LIMIT 1;
        CONTINUE WHEN v_server IS NULL;
        -- status is checked again: a cancel or supersede may have committed since the scan
        UPDATE jobs SET status = 'running', attempt = attempt + 1, server_id = v_server,
               worker_id = p_worker, lease_expires_at = v_now + p_ttl, started_at = v_now,
               updated_at = now(), progress = 0, step = NULL, wait_reason = NULL,
               error = NULL, finished_at = NULL
         WHERE id = cand.id AND status = 'queued'
        RETURNING * INTO v_job;
        CONTINUE WHEN NOT FOUND;
        INSERT INTO job_events (job_id, kind, from_status, to_status, actor, message, data)
        VALUES (v_job.id, 'claimed', 'queued', 'running', p_worker,
                format('attempt %s/%s on %s', v_job.attempt, v_job.max_attempts, v_server_name),
                jsonb_build_object('server', v_server_name, 'attempt', v_job.attempt));
        PERFORM pg_notify('deployq_jobs', jsonb_build_object(
            'id', v_job.id, 'app', v_job.app_name, 'status', 'running', 'kind', 'claimed')::text);
        RETURN NEXT v_job;
        v_taken := v_taken + 1;
        v_free := v_free - 1;
        EXIT WHEN v_taken >= p_limit OR v_free <= 0;
    END LOOP;
END $$;
