"""The console's deliveries view says when a delivery's body was pruned by retention."""

from __future__ import annotations

from datetime import timedelta

from tui_helpers import OPERATOR, frozen_clock, wait_until

from deployq.store import DeliveryRecord, Store
from deployq.tui import DeployqApp
from deployq.tui.screens.deliveries import DeliveriesScreen


async def test_a_delivery_whose_body_was_pruned_says_so(store: Store) -> None:
    old = await store.deliveries.record(
        DeliveryRecord("github", "push", "d-old", "accepted", 202, body=b'{"ref": "x"}')
    )
    async with store.pool.connection() as conn:
        await conn.execute(
            "UPDATE webhook_deliveries SET received_at = now() - %s WHERE id = %s",
            (timedelta(days=30), old),
        )
    await store.retention.prune_bodies(14 * 86400)
    pruned_at = (await store.deliveries.get(old)).delivery.body_pruned_at
    assert pruned_at is not None

    app = DeployqApp(store, user=OPERATOR, clock=frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        await app.listening.wait()
        await pilot.press("4")
        await wait_until(app, lambda: isinstance(app.screen, DeliveriesScreen), what="the view")
        screen = app.screen
        assert isinstance(screen, DeliveriesScreen)
        await screen.loaded.wait()
        await pilot.pause()
        detail = str(screen.query_one("#delivery-detail").render())

    assert "github push d-old" in detail and "accepted (202)" in detail
    assert f"body pruned {pruned_at:%Y-%m-%d}" in detail
