-- Sealed app secrets (store/_secrets.py, docs/secrets.md).

-- name: secrets_readable
SELECT has_table_privilege('app_secrets', 'SELECT') AS readable

-- name: secrets_of_apps
SELECT app_id, sealed FROM app_secrets WHERE app_id = ANY(%(ids)s)

-- name: secrets_save
INSERT INTO app_secrets (app_id, sealed) VALUES (%(app_id)s, %(sealed)s)
ON CONFLICT (app_id) DO UPDATE SET sealed = excluded.sealed, updated_at = now()

-- name: secrets_delete
DELETE FROM app_secrets WHERE app_id = %(app_id)s

-- name: secrets_all_for_update
SELECT app_id, sealed FROM app_secrets ORDER BY app_id FOR UPDATE

-- name: secrets_replace
UPDATE app_secrets SET sealed = %(sealed)s, updated_at = now() WHERE app_id = %(app_id)s
