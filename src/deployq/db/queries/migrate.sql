-- The migration runner's bookkeeping (db/migrate.py) and the embedded server's database
-- (db/embedded.py). The schema itself is in sql/NNN_name.sql.

-- name: migrations_lock
SELECT pg_advisory_lock(%(key)s)

-- name: migrations_unlock
SELECT pg_advisory_unlock(%(key)s)

-- name: migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)

-- name: migrations_table_exists
SELECT to_regclass('schema_migrations') AS t

-- name: migrations_applied
SELECT version, name, checksum FROM schema_migrations

-- name: migration_record
INSERT INTO schema_migrations (version, name, checksum) VALUES (%(version)s, %(name)s, %(checksum)s)

-- name: database_exists
SELECT 1 FROM pg_database WHERE datname = %(name)s

-- name: database_create
-- CREATE DATABASE takes no parameters: {name} is an identifier composed by psycopg.sql.
CREATE DATABASE {name}
