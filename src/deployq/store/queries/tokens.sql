-- API tokens (store/_tokens.py): only their SHA-256 is stored.

-- name: token_create
INSERT INTO api_tokens (name, token_hash, scope) VALUES (%(name)s, %(hash)s, %(scope)s)
RETURNING *

-- name: token_verify
UPDATE api_tokens SET last_used_at = now()
WHERE token_hash = %(hash)s AND revoked_at IS NULL
RETURNING *

-- name: tokens_all
SELECT * FROM api_tokens ORDER BY id

-- name: token_revoke
UPDATE api_tokens SET revoked_at = now() WHERE id = %(id)s AND revoked_at IS NULL
