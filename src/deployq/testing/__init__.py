"""Real local services and job helpers for deployq's tests, benchmarks and demo.

Not used by deployq itself. ``services`` starts dockerd, imports the base image and runs an
authenticated registry; ``jobs`` runs a worker pool and waits for a job's state by LISTEN.
The pytest fixtures in tests/fixtures/ wrap these; bench/ and scripts/demo.py call them
directly.
"""
