-- Deploy: run targets (Docker engines apps run on), per-app run settings, deploy-only jobs
-- (rollbacks) and the releases each target runs.

CREATE TABLE deploy_targets (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    docker_host     text NOT NULL,
    healthy         boolean NOT NULL DEFAULT true,
    last_probe_at   timestamptz,
    last_error      text,
    engine_version  text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- the app's run settings (models.DeploySettings); NULL: build and push only
ALTER TABLE apps ADD COLUMN deploy jsonb;

-- a rollback is a job that deploys an image built before, without building it again
ALTER TABLE jobs ADD COLUMN deploy_only boolean NOT NULL DEFAULT false;
ALTER TABLE jobs DROP CONSTRAINT jobs_trigger_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_trigger_check
    CHECK (trigger IN ('webhook', 'manual', 'retry', 'reconcile', 'rollback'));

-- one row per successful deploy of an app on a target; replaced_at IS NULL: runs now
CREATE TABLE releases (
    id           bigserial PRIMARY KEY,
    app_id       bigint REFERENCES apps (id) ON DELETE CASCADE,
    app_name     text NOT NULL,
    target       text NOT NULL,                 -- a deploy target's name, or 'webhook'
    job_id       bigint REFERENCES jobs (id) ON DELETE SET NULL,
    commit_sha   text,
    image_ref    text NOT NULL,
    digest       text NOT NULL,
    container    text,                          -- the container's name (none for webhooks)
    started_at   timestamptz NOT NULL DEFAULT now(),
    replaced_at  timestamptz
);
CREATE UNIQUE INDEX releases_current_uq ON releases (app_name, target) WHERE replaced_at IS NULL;
CREATE INDEX releases_app_idx ON releases (app_name, started_at DESC);
