"""deployq: a self-hosted build-and-deploy queue on PostgreSQL."""

__version__ = "0.1.0"
