"""Every SQL statement of the store, by name, loaded once from ``store/queries/*.sql``.

Code in the store runs ``sql("claim_jobs")``; see ``deployq.db.named_sql`` for the format.
"""

from __future__ import annotations

from deployq.db.named_sql import load

QUERIES = load("deployq.store")


def sql(name: str) -> str:
    """The text of the query called ``name``."""
    return QUERIES[name]
