-- Statements about the connection itself (store/_store.py, store/_listen.py).

-- name: ping
SELECT 1

-- name: listen
-- LISTEN takes no parameters: {channel} is an identifier composed by psycopg.sql.
LISTEN {channel}
