-- Reconciliation sees tags (apps that build tags): the first time it lists an app's tags it
-- records them here and builds none of them (a repository's old releases are not missed
-- pushes); from then on a tag that is not here, or that moved, and has no job is built.
ALTER TABLE apps ADD COLUMN tags_baseline_at timestamptz;
CREATE TABLE reconcile_tags (
    app_id      bigint NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    ref         text NOT NULL,
    commit_sha  text NOT NULL,
    PRIMARY KEY (app_id, ref)
);
