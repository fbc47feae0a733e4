-- Deploy targets, releases, rollback jobs and the per-app+target deploy lock (store/deploy.py).

-- name: target_add
INSERT INTO deploy_targets (name, docker_host) VALUES (%(name)s, %(docker_host)s) RETURNING *

-- name: target_list
SELECT * FROM deploy_targets ORDER BY name

-- name: target_get
SELECT * FROM deploy_targets WHERE name = %(name)s

-- name: target_remove
DELETE FROM deploy_targets WHERE name = %(name)s

-- name: target_record_health
UPDATE deploy_targets SET healthy = %(healthy)s, last_error = %(error)s,
       engine_version = coalesce(%(engine_version)s, engine_version), last_probe_at = now()
 WHERE id = %(id)s

-- name: target_users
SELECT name FROM apps WHERE deploy -> 'targets' ? %(name)s ORDER BY name

-- name: release_replace
-- the target's current release (if any) is replaced by the new one, in one statement
WITH old AS (
    UPDATE releases SET replaced_at = now()
     WHERE app_name = %(app_name)s AND target = %(target)s AND replaced_at IS NULL
    RETURNING id
)
INSERT INTO releases (app_id, app_name, target, job_id, commit_sha, image_ref, digest, container)
SELECT (SELECT id FROM apps WHERE name = %(app_name)s), %(app_name)s, %(target)s, %(job_id)s,
       %(commit_sha)s, %(image_ref)s, %(digest)s, %(container)s
  FROM (SELECT count(*) FROM old) AS replaced
RETURNING *

-- name: release_list
SELECT * FROM releases WHERE app_name = %(app_name)s ORDER BY started_at DESC, id DESC
 LIMIT %(limit)s

-- name: release_current
SELECT * FROM releases WHERE app_name = %(app_name)s AND replaced_at IS NULL ORDER BY target

-- name: rollback_source_job
SELECT * FROM jobs WHERE id = %(job_id)s

-- name: rollback_source_digest
SELECT * FROM jobs
 WHERE app_name = %(app_name)s AND status = 'succeeded' AND image_digest IS NOT NULL
   AND (image_digest = %(digest)s OR image_digest = 'sha256:' || %(digest)s
        OR (length(%(digest)s) >= 12 AND (image_digest LIKE %(digest)s || '%%'
                                          OR image_digest LIKE 'sha256:' || %(digest)s || '%%')))
 ORDER BY id DESC LIMIT 1

-- name: rollback_source_previous
-- the newest release of another image than the one running now
SELECT j.* FROM releases r JOIN jobs j ON j.id = r.job_id
 WHERE r.app_name = %(app_name)s AND r.replaced_at IS NOT NULL
   AND r.digest NOT IN (SELECT digest FROM releases
                         WHERE app_name = %(app_name)s AND replaced_at IS NULL)
 ORDER BY r.started_at DESC, r.id DESC LIMIT 1

-- name: rollback_enqueue
-- a deploy-only job of an image built before: same queue, same per-app serialisation
WITH j AS (
    INSERT INTO jobs (app_id, app_name, provider, trigger, repo_url, ref, ref_type, branch,
                      commit_sha, commit_message, commit_author, priority, max_attempts,
                      timeout_s, deploy_only, image_ref, image_digest)
    SELECT a.id, a.name, 'manual', 'rollback', a.repo_url, s.ref, s.ref_type, s.branch,
           s.commit_sha, s.commit_message, s.commit_author,
           coalesce(%(priority)s::smallint, a.priority),
           coalesce(a.max_attempts, %(max_attempts)s), coalesce(a.timeout_s, %(timeout_s)s),
           true, s.image_ref, s.image_digest
      FROM apps a JOIN jobs s ON s.id = %(source)s
     WHERE a.name = %(app_name)s
    RETURNING *
), e AS (
    INSERT INTO job_events (job_id, kind, to_status, actor, message, data)
    SELECT id, 'enqueued', 'queued', %(actor)s,
           'rollback to #' || %(source)s || ' (' || left(coalesce(commit_sha, ''), 7) || ' '
           || image_digest || ')',
           jsonb_build_object('rollback_to', %(source)s::bigint, 'digest', image_digest)
      FROM j
)
SELECT j.*, pg_notify('deployq_jobs', jsonb_build_object(
    'id', j.id, 'app', j.app_name, 'status', 'queued', 'kind', 'enqueued')::text) AS notified
  FROM j

-- name: deploy_lock
SELECT pg_advisory_lock(%(key)s::integer, hashtext(%(app_name)s || '/' || %(target)s))

-- name: deploy_unlock
SELECT pg_advisory_unlock(%(key)s::integer, hashtext(%(app_name)s || '/' || %(target)s))
