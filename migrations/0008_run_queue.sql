-- Runs are executed by procrastinate (its own tables are installed before this file): each run is one job, and
-- names it. Runs that were waiting for (or held by) the hand-written workers of 0002 become jobs.
ALTER TABLE runs ADD COLUMN IF NOT EXISTS job_id bigint;
CREATE INDEX IF NOT EXISTS runs_job_idx ON runs (job_id);
WITH pending AS (
    SELECT id, incident_id FROM runs WHERE status IN ('queued', 'running') AND job_id IS NULL
), job AS (
    INSERT INTO procrastinate_jobs (queue_name, task_name, lock, args)
    SELECT 'runs', 'incident_copilot.run', incident_id, jsonb_build_object('run_id', id) FROM pending ORDER BY id
    RETURNING id, (args->>'run_id')::bigint AS run_id
)
UPDATE runs SET job_id = job.id, status = 'queued', claimed_by = NULL FROM job WHERE runs.id = job.run_id;
