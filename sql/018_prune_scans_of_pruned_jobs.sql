-- Retention (docs/retention.md) now deletes the finished job_scans rows of the jobs it prunes.
-- Jobs pruned before that kept theirs, and prune never takes a job twice: drop them once here.
-- A scan still being collected (requested, running) keeps its row; the result shown to people
-- stays in jobs.scan_summary.
DELETE FROM job_scans s
USING jobs j
WHERE s.job_id = j.id AND j.pruned_at IS NOT NULL AND s.state IN ('done', 'unavailable');
