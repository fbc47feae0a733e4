-- Webhook deliveries (store/_deliveries.py): every one recorded, accepted or refused.

-- name: delivery_add
-- One statement whatever the number of rows: prepared once, sent in a pipeline per batch (a
-- multi-row VALUES would be a new statement, parsed again, for every batch size).
INSERT INTO webhook_deliveries (received_at, provider, event, delivery_id, repo, ref, result,
    status_code, job_ids, reason, headers, body, body_bytes, replay_of, spooled)
VALUES (coalesce(%(received_at)s, now()), %(provider)s, %(event)s, %(delivery_id)s, %(repo)s,
    %(ref)s, %(result)s, %(status_code)s, %(job_ids)s, %(reason)s, %(headers)s, %(body)s,
    octet_length(%(body)s::bytea), %(replay_of)s, %(spooled)s)
RETURNING id

-- name: deliveries_notify
-- One NOTIFY for the rows just inserted: currval is the last id this session took.
SELECT pg_notify('deployq_deliveries', json_build_object('id',
    currval(pg_get_serial_sequence('webhook_deliveries', 'id')), 'count', %(count)s::int)::text)

-- name: deliveries_recent
-- Newest first; the filters are optional. body_bytes: rows from before migration 010 have
-- only the body (octet_length reads its length from the TOAST pointer, not the body).
SELECT id, received_at, provider, event, delivery_id, repo, ref, result, status_code, job_ids,
    reason, replay_of, spooled, coalesce(body_bytes, octet_length(body)) AS body_bytes,
    body_pruned_at
FROM webhook_deliveries
WHERE (%(before_id)s::bigint IS NULL OR id < %(before_id)s::bigint)
  AND (%(provider)s::text IS NULL OR provider = %(provider)s::text)
  AND (%(result)s::text IS NULL OR result = %(result)s::text)
ORDER BY id DESC LIMIT %(limit)s

-- name: delivery_get
SELECT id, received_at, provider, event, delivery_id, repo, ref, result, status_code, job_ids,
    reason, replay_of, spooled, coalesce(body_bytes, octet_length(body)) AS body_bytes,
    body_pruned_at, headers, body
FROM webhook_deliveries WHERE id = %(id)s

-- name: deliveries_count
SELECT count(*) AS n FROM webhook_deliveries
WHERE (%(provider)s::text IS NULL OR provider = %(provider)s::text)
  AND (%(delivery_id)s::text IS NULL OR delivery_id = %(delivery_id)s::text)
