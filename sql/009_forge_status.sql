-- Commit statuses on the forge (docs/forge-status.md): apps with a forge token (sealed in
-- app_secrets) report each job on its commit through the notifications outbox.
ALTER TABLE apps ADD COLUMN forge_status boolean NOT NULL DEFAULT false;
ALTER TABLE notifications DROP CONSTRAINT notifications_channel_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_channel_check
    CHECK (channel IN ('email', 'webhook', 'forge'));
-- a job's statuses go out one at a time, in order: the claim looks for an earlier one unsent
CREATE INDEX notifications_forge_order_idx ON notifications (job_id, id)
    WHERE channel = 'forge' AND status IN ('pending', 'sending');
