-- Registry tag retention per app (docs/retention.md): `deployq prune` keeps this many <sha7>
-- tags per branch of the app; NULL: DEPLOYQ_REGISTRY_KEEP_TAGS.
ALTER TABLE apps ADD COLUMN keep_tags integer CHECK (keep_tags >= 1);
