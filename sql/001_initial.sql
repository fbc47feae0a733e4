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
    CHECK (attempt <= max_attempts),
    CHECK ((status = 'running') = (lease_expires_at IS NOT NULL)),
    CHECK (status <> 'running' OR (server_id IS NOT NULL AND worker_id IS NOT NULL)),
    CHECK (finished_at IS NULL OR status IN
           ('succeeded', 'failed', 'cancelled', 'timed_out', 'superseded'))
);
-- the claim: queued jobs in priority order, due first
CREATE INDEX jobs_claim_idx ON jobs (priority DESC, run_after, id) WHERE status = 'queued';
-- capacity and per-app limits count running jobs; the rescuer looks for expired leases
CREATE INDEX jobs_running_idx ON jobs (server_id, app_id, lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_app_branch_idx ON jobs (app_id, branch, status);
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
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
    body         bytea                              -- kept for verified deliveries: replay
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
