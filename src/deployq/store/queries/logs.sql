-- Job logs (store/_logs.py): numbered lines, so readers resume from an offset.

-- name: log_append
-- Lines after the job's last one, and their NOTIFY ({"job", "seq"}: the last seq), in one
-- statement (one round trip, no transaction around it). With an attempt, fenced: nothing is
-- written, and no row comes back, unless the job is still that attempt of a running job.
WITH owner AS (
    SELECT id FROM jobs WHERE id = %(job)s
    AND (%(attempt)s::int IS NULL OR (attempt = %(attempt)s AND status = 'running'))
    FOR UPDATE
), base AS (
    SELECT coalesce(max(seq), 0) AS seq FROM job_logs WHERE job_id = %(job)s
), ins AS (
    INSERT INTO job_logs (job_id, seq, stream, line)
    SELECT owner.id, base.seq + l.n, %(stream)s, l.line
    FROM owner, base, unnest(%(lines)s::text[]) WITH ORDINALITY AS l(line, n)
    RETURNING seq
)
SELECT max(seq) AS seq, pg_notify('deployq_logs',
    jsonb_build_object('job', %(job)s::bigint, 'seq', max(seq))::text) AS notified
FROM ins HAVING count(*) > 0

-- name: log_read
SELECT * FROM job_logs WHERE job_id = %(job)s AND seq > %(after)s ORDER BY seq LIMIT %(limit)s

-- name: log_tail
-- The last lines, in order.
SELECT * FROM (
    SELECT * FROM job_logs WHERE job_id = %(job)s ORDER BY seq DESC LIMIT %(limit)s
) t ORDER BY seq

-- name: log_last_seq
SELECT coalesce(max(seq), 0) AS seq FROM job_logs WHERE job_id = %(job)s

-- name: log_text
-- The console's view: text only, the first lines after a seq.
SELECT seq, line FROM job_logs WHERE job_id = %(job)s AND seq > %(after)s
ORDER BY seq LIMIT %(limit)s

-- name: log_text_last
-- The console's view: text only, the last lines after a seq, in order.
SELECT seq, line FROM (
    SELECT seq, line FROM job_logs WHERE job_id = %(job)s AND seq > %(after)s
    ORDER BY seq DESC LIMIT %(limit)s
) t ORDER BY seq
