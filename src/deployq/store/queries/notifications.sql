-- The notification outbox (store/_notifications.py): written in the job's transaction, sent
-- by the notifier at least once.

-- name: notification_add
-- One row per recipient; a second call for the same attempt and event adds nothing.
INSERT INTO notifications (job_id, event, channel, target, payload, max_attempts,
    idempotency_key)
VALUES (%(job_id)s, %(event)s, %(channel)s, %(target)s, %(payload)s, %(max_attempts)s,
    %(key)s)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id

-- name: notification_give_up_crashed
-- A row whose sender stopped during its last attempt: whether it arrived is unknown.
UPDATE notifications SET status = 'failed', last_error = 'the sender stopped during the last '
    || 'attempt (' || attempts || '/' || max_attempts || '); it may or may not have been '
    || 'delivered'
WHERE status = 'sending' AND next_attempt_at <= now() AND attempts >= max_attempts

-- name: notifications_claim_due
-- Due rows marked sending with the attempt counted, before anything is sent; a claimed row
-- is due again %(stale)s later unless marked sent or failed first. A job's commit statuses
-- (channel forge) go one at a time, in order: none while an earlier one is unsent.
WITH due AS (
    SELECT id FROM notifications n
    WHERE status IN ('pending', 'sending') AND next_attempt_at <= now()
      AND NOT (channel = 'forge' AND EXISTS (
          SELECT 1 FROM notifications e
          WHERE e.job_id = n.job_id AND e.channel = 'forge' AND e.id < n.id
            AND e.status IN ('pending', 'sending')))
    ORDER BY next_attempt_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
UPDATE notifications n SET status = 'sending', attempts = n.attempts + 1,
    attempt_started_at = now(), next_attempt_at = now() + %(stale)s
FROM due WHERE n.id = due.id RETURNING n.*

-- name: notifications_next_due_in
-- (a commit status behind an earlier one is not due: that one's end wakes the notifier)
SELECT extract(epoch FROM min(next_attempt_at) - now()) AS wait
FROM notifications n WHERE status IN ('pending', 'sending')
  AND NOT (channel = 'forge' AND EXISTS (
      SELECT 1 FROM notifications e
      WHERE e.job_id = n.job_id AND e.channel = 'forge' AND e.id < n.id
        AND e.status IN ('pending', 'sending')))

-- name: notification_sent
UPDATE notifications SET status = 'sent', sent_at = now(), last_error = NULL
WHERE id = %(id)s AND status <> 'sent'

-- name: notification_failed
-- A failed attempt: pending again after the delay, or failed for good once max_attempts is
-- reached (or the error is permanent). Only the current attempt counts.
UPDATE notifications SET last_error = %(error)s,
    status = CASE WHEN %(permanent)s OR attempts >= max_attempts THEN 'failed' ELSE 'pending' END,
    next_attempt_at = now() + %(retry_in)s
WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'sending'
RETURNING status

-- name: notification_get
SELECT * FROM notifications WHERE id = %(id)s

-- name: notifications_recent
-- Newest first; the filters are optional.
SELECT * FROM notifications
WHERE (NOT %(failed_only)s OR status = 'failed')
  AND (%(job_id)s::bigint IS NULL OR job_id = %(job_id)s::bigint)
ORDER BY id DESC LIMIT %(limit)s

-- name: notification_retry
UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = now(),
    attempt_started_at = NULL
WHERE id = %(id)s AND status = 'failed'
RETURNING *
