-- Apps: what to build for which repository (store/_apps.py). The columns of app_add and
-- app_update are the fields of models.AppSpec plus repo_identity, less its secrets, which live
-- sealed in app_secrets (store/_secrets.py; tests/unit/test_queries.py checks they stay in step).

-- name: app_add
INSERT INTO apps (name, repo_url, repo_identity, branches, build_tags, build_prs, paths, image,
    dockerfile, context, target, build_args, supersede_policy,
    concurrency, priority, max_attempts, timeout_s, required_arch, required_labels, submodules,
    notify_emails, notify_events, notify_pusher, notify_webhook_url,
    reconcile_interval_s, deploy, install_cmd, build_cmd, start_cmd, runtime_version, max_queued,
    forge_status, scan_policy, registry_username, keep_tags)
VALUES (%(name)s, %(repo_url)s, %(repo_identity)s, %(branches)s, %(build_tags)s,
    %(build_prs)s, %(paths)s, %(image)s, %(dockerfile)s, %(context)s, %(target)s,
    %(build_args)s, %(supersede_policy)s,
    %(concurrency)s, %(priority)s, %(max_attempts)s, %(timeout_s)s, %(required_arch)s,
    %(required_labels)s, %(submodules)s, %(notify_emails)s, %(notify_events)s,
    %(notify_pusher)s, %(notify_webhook_url)s,
    %(reconcile_interval_s)s, %(deploy)s, %(install_cmd)s, %(build_cmd)s, %(start_cmd)s,
    %(runtime_version)s, %(max_queued)s, %(forge_status)s, %(scan_policy)s,
    %(registry_username)s, %(keep_tags)s)
RETURNING *

-- name: app_update
UPDATE apps SET repo_url = %(repo_url)s, repo_identity = %(repo_identity)s,
    branches = %(branches)s, build_tags = %(build_tags)s, build_prs = %(build_prs)s,
    paths = %(paths)s, image = %(image)s, dockerfile = %(dockerfile)s, context = %(context)s,
    target = %(target)s, build_args = %(build_args)s, supersede_policy = %(supersede_policy)s,
    concurrency = %(concurrency)s, priority = %(priority)s, max_attempts = %(max_attempts)s,
    timeout_s = %(timeout_s)s, required_arch = %(required_arch)s,
    required_labels = %(required_labels)s, submodules = %(submodules)s,
    notify_emails = %(notify_emails)s, notify_events = %(notify_events)s,
    notify_pusher = %(notify_pusher)s, notify_webhook_url = %(notify_webhook_url)s,
    reconcile_interval_s = %(reconcile_interval_s)s, deploy = %(deploy)s,
    install_cmd = %(install_cmd)s, build_cmd = %(build_cmd)s, start_cmd = %(start_cmd)s,
    runtime_version = %(runtime_version)s, max_queued = %(max_queued)s,
    forge_status = %(forge_status)s, scan_policy = %(scan_policy)s,
    registry_username = %(registry_username)s, keep_tags = %(keep_tags)s, updated_at = now()
WHERE name = %(name)s
RETURNING *

-- name: app_get
SELECT * FROM apps WHERE name = %(name)s

-- name: app_get_by_id
SELECT * FROM apps WHERE id = %(id)s

-- name: apps_all
SELECT * FROM apps ORDER BY name

-- name: apps_by_repos
-- Apps configured for any of these repository identities (see deployq.repos).
SELECT * FROM apps WHERE repo_identity = ANY(%(identities)s) ORDER BY name

-- name: app_remove
-- Its jobs stay (with app_id NULL) for the record.
DELETE FROM apps WHERE name = %(name)s
