"""The worker: pool, pipeline steps, job logs, engine health, sd_notify."""
