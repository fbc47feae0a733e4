-- Missed-delivery reconciliation (store/_reconcile.py, deployq.reconcile).

-- name: reconcile_apps_due
-- Apps that opted in (reconcile_interval_s) and whose interval has passed.
SELECT * FROM apps WHERE reconcile_interval_s IS NOT NULL AND (last_reconciled_at IS NULL
    OR last_reconciled_at + make_interval(secs => reconcile_interval_s) <= now())
ORDER BY name

-- name: reconcile_commits_with_jobs
SELECT DISTINCT commit_sha FROM jobs WHERE app_id = %(app_id)s AND commit_sha = ANY(%(shas)s)

-- name: reconcile_mark
UPDATE apps SET last_reconciled_at = now() WHERE id = %(app_id)s

-- name: reconcile_refs_with_jobs
-- Which (ref, commit) pairs of these refs already have a job (any status) for the app.
SELECT DISTINCT ref, commit_sha FROM jobs
WHERE app_id = %(app_id)s AND ref = ANY(%(refs)s) AND commit_sha IS NOT NULL

-- name: reconcile_tag_baseline
-- Whether the app's tags were recorded (tags_baseline_at), and the tags recorded then.
SELECT a.tags_baseline_at IS NOT NULL AS recorded,
       coalesce(jsonb_object_agg(t.ref, t.commit_sha) FILTER (WHERE t.ref IS NOT NULL),
                '{}'::jsonb) AS tags
FROM apps a LEFT JOIN reconcile_tags t ON t.app_id = a.id
WHERE a.id = %(app_id)s
GROUP BY a.id

-- name: reconcile_record_tags
-- The first listing of an app's tags: recorded once (the reconciler whose UPDATE wins).
WITH marked AS (
    UPDATE apps SET tags_baseline_at = now()
    WHERE id = %(app_id)s AND tags_baseline_at IS NULL
    RETURNING id
)
INSERT INTO reconcile_tags (app_id, ref, commit_sha)
SELECT marked.id, t.ref, t.sha
FROM marked, unnest(%(refs)s::text[], %(shas)s::text[]) AS t (ref, sha)
ON CONFLICT DO NOTHING

-- name: reconcile_forget_tags
-- An app that stopped building tags: its next start records the tags anew.
WITH forgotten AS (DELETE FROM reconcile_tags WHERE app_id = %(app_id)s)
UPDATE apps SET tags_baseline_at = NULL WHERE id = %(app_id)s AND tags_baseline_at IS NOT NULL
