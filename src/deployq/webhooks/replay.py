"""Processing deliveries again: the spool once the database is back, and an operator's
``POST /api/v1/deliveries/{id}/replay`` of a recorded, verified delivery.

The spool replayer runs as a background task of the web application (started in
``create_app``'s on_startup): it replays at start-up, and whenever a delivery was spooled it
waits for the database to come back (woken by the pool's reconnect, see deployq.db.health;
SPOOL_RETRY_S bounds the wait), then replays.
"""

from __future__ import annotations

import asyncio
import logging

from deployq.errors import Conflict, NotFound, QueueFull
from deployq.store import DeliveryRecord
from deployq.webhooks.events import BadPayload
from deployq.webhooks.providers import PROVIDERS, decode_body
from deployq.webhooks.receiver import APPS_HEADER, Reply, deliver
from deployq.webhooks.spool import SpoolRecord
from deployq.webhooks.state import DB_ERRORS, WebState

log = logging.getLogger(__name__)

#: longest wait between attempts to reach the database while deliveries wait in the spool
#: (the reconnect wakes the replayer at once)
SPOOL_RETRY_S = 1.0


def _media_type(headers: dict[str, str]) -> str:
    value = headers.get("Content-Type", "application/json")
    return value.split(";", 1)[0].strip().lower()


async def replay_spooled(state: WebState, record: SpoolRecord) -> None:
    """Enqueue one spooled delivery (already verified when it was received)."""
    provider = PROVIDERS.get(record.provider)
    if provider is None:
        log.warning("spooled delivery of unknown provider %r skipped", record.provider)
        return
    try:
        parsed = provider.parse(record.event, decode_body(record.body, _media_type(record.headers)))
    except BadPayload as exc:  # it parsed when it was received; only a newer deployq could differ
        log.warning("spooled delivery %s no longer parses (%s); skipped", record.delivery_id, exc)
        return
    if parsed.trigger is None:
        return
    # the apps known for the repository (the receiver verified it against them), so that
    # nothing is awaited before the delivery joins its batch and arrival order is kept
    known = state.apps.lookup(parsed.identities)
    try:
        reply = await deliver(
            state,
            record.provider,
            parsed,
            record.delivery_id,
            headers=record.headers,
            body=record.body,
            spooled=True,
            received_at=record.received_at,
            repos=list(dict.fromkeys(a.identity for a in known)) if known else None,
            only_apps=record.apps,
        )
    except NotFound as exc:  # its app was removed while the delivery waited
        log.warning("spooled delivery %s skipped: %s", record.delivery_id, exc.message)
        return
    except QueueFull as exc:  # recorded with its body: an admin replays it once there is room
        log.warning("spooled delivery %s refused: %s", record.delivery_id, exc.message)
        refused = DeliveryRecord(
            record.provider,
            record.event,
            record.delivery_id,
            "refused",
            503,
            reason=exc.message,
            headers=record.headers
            if record.apps is None
            else {**record.headers, APPS_HEADER: ",".join(record.apps)},
            body=record.body,
            spooled=True,
            received_at=record.received_at,
        )
        await state.recorder.record(refused)
        state.metrics.webhooks.labels(record.provider, "refused").inc()
        return
    state.metrics.webhooks.labels(record.provider, reply.result).inc()


async def replay_stored(state: WebState, delivery_row_id: int) -> Reply:
    """Process a recorded delivery again. Jobs dedupe on its delivery id, so a replay only
    creates the jobs that are missing (e.g. for an app added since)."""
    stored = await state.store.deliveries.get(delivery_row_id)
    delivery = stored.delivery
    provider = PROVIDERS.get(delivery.provider)
    if delivery.body_pruned_at is not None:
        raise Conflict(
            f"delivery #{delivery_row_id}'s body was pruned {delivery.body_pruned_at:%Y-%m-%d} "
            "(older than DEPLOYQ_DELIVERY_BODY_RETENTION), so it cannot be replayed; ask the "
            "forge to redeliver it, or `deployq deploy APP --ref REF` to build the push"
        )
    if stored.body is None or provider is None or delivery.event is None:
        raise Conflict(
            f"delivery #{delivery_row_id} was not verified when it was received, so it was "
            "not kept; ask the forge to redeliver it"
        )
    try:
        parsed = provider.parse(
            delivery.event, decode_body(stored.body, _media_type(stored.headers))
        )
    except BadPayload as exc:
        raise Conflict(f"delivery #{delivery_row_id} cannot be parsed: {exc}") from exc
    if parsed.trigger is None:
        reason = parsed.ignored or "the delivery has nothing to build"
        return Reply(200, {"ignored": reason}, "ignored", reason)
    delivery_id = delivery.delivery_id or f"delivery-{delivery_row_id}"
    headers = dict(stored.headers)
    apps = headers.pop(APPS_HEADER, None)
    return await deliver(
        state,
        delivery.provider,
        parsed,
        delivery_id,
        headers=headers,
        body=stored.body,
        replay_of=delivery_row_id,
        only_apps=apps.split(",") if apps is not None else None,
    )


async def load_app_cache(state: WebState) -> None:
    try:
        state.apps.load(await state.store.apps.all())
    except DB_ERRORS as exc:
        log.warning("cannot load the apps for the webhook cache: %s", type(exc).__name__)


async def spool_replayer(state: WebState) -> None:
    """Forever: replay the spool whenever the database answers. Cancel to stop."""
    spool = state.spool
    while True:
        spool.appended.clear()
        if not (state.db_down or spool.pending()):
            await spool.appended.wait()
            continue
        try:
            await state.store.ping()
            count = await spool.replay(lambda record: replay_spooled(state, record))
        except DB_ERRORS as exc:
            log.debug("database still unavailable (%s); spool kept", type(exc).__name__)
            state.db_down = True
            await state.store.health.wait_up(SPOOL_RETRY_S)
            continue
        except Exception:  # a bug must not stop the replayer for good; the spool stays
            log.exception("replaying the webhook spool failed; trying again")
            await asyncio.sleep(SPOOL_RETRY_S)
            continue
        if count:
            log.info("replayed %d spooled webhook deliveries", count)
        state.replayed.set()
        if state.db_down:
            state.db_down = False
            await load_app_cache(state)
