-- Statements about a connection itself (db/pool.py).

-- name: probe
-- Whether the server answers at all (the outage probe).
SELECT 1
