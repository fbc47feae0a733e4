-- Secrets at rest (docs/secrets.md): every secret of an app leaves `apps` for `app_secrets`,
-- one Fernet token per app (deployq.sealing) that only the owner role may read.
CREATE TABLE app_secrets (
    app_id      bigint PRIMARY KEY REFERENCES apps (id) ON DELETE CASCADE,
    sealed      text NOT NULL,      -- Fernet token of a JSON object; 'plain:' + JSON until sealed
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Secrets of earlier versions: plaintext until the process that applies this migration seals
-- them (deployq.cli.common.open_store, `deployq migrate`), right after this commits.
INSERT INTO app_secrets (app_id, sealed)
SELECT id, 'plain:' || jsonb_strip_nulls(jsonb_build_object(
           'webhook_secret', webhook_secret,
           'notify_webhook_secret', notify_webhook_secret,
           'build_secrets', nullif(build_secrets, '{}'::jsonb),
           'deploy_webhook_secret', deploy -> 'webhook_secret',
           'deploy_env', nullif(deploy -> 'env', '{}'::jsonb)))::text
FROM apps
WHERE webhook_secret IS NOT NULL OR notify_webhook_secret IS NOT NULL
   OR build_secrets <> '{}'::jsonb
   OR coalesce(deploy -> 'webhook_secret', 'null'::jsonb) <> 'null'::jsonb
   OR coalesce(deploy -> 'env', '{}'::jsonb) <> '{}'::jsonb;

UPDATE apps SET deploy = deploy - 'webhook_secret' - 'env' WHERE deploy IS NOT NULL;
ALTER TABLE apps
    DROP COLUMN webhook_secret,
    DROP COLUMN notify_webhook_secret,
    DROP COLUMN build_secrets;

-- Default privileges (README: the read-only console role) granted SELECT on the new table:
-- nobody but the owner reads secrets, sealed or not.
REVOKE ALL ON app_secrets FROM PUBLIC;
DO $$
DECLARE grantee text;
BEGIN
    FOR grantee IN
        SELECT DISTINCT g.grantee FROM information_schema.role_table_grants g
        WHERE g.table_name = 'app_secrets' AND g.table_schema = current_schema()
          AND g.grantee <> current_user AND g.grantee <> 'PUBLIC'
    LOOP
        EXECUTE format('REVOKE ALL ON app_secrets FROM %I', grantee);
    END LOOP;
END $$;
