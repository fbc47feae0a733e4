"""The aiohttp service: GitHub/GitLab webhook receivers, the REST API, health and metrics."""
