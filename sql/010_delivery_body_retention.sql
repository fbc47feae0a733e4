-- Retention of webhook delivery bodies (docs/retention.md): a verified delivery keeps its
-- body (up to 25 MiB) for replay until DEPLOYQ_DELIVERY_BODY_RETENTION; then the body goes
-- and the row (result, jobs, headers, reason) stays, saying when and how big it was.
ALTER TABLE webhook_deliveries ADD COLUMN body_bytes integer;  -- NULL: no body, or set at prune
ALTER TABLE webhook_deliveries ADD COLUMN body_pruned_at timestamptz;
-- the pruner walks the oldest deliveries that still have a body, and only those
CREATE INDEX webhook_deliveries_body_idx ON webhook_deliveries (received_at)
    WHERE body IS NOT NULL;
