"""Webhook deliveries: every one recorded, accepted or refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deployq.store.base import Store


class DeliveryStore:
    def __init__(self, store: Store) -> None:
        self.store = store
