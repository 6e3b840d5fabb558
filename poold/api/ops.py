"""Routes for operations and the page: health, readiness, Prometheus metrics, the event
stream and the dashboard. (The OpenAPI document is served by `app`, which sits above the
route table it is generated from.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import structlog
from aiohttp import web
from sqlalchemy import text

from poold.api import display, views
from poold.api.base import (
    CACHE,
    context,
    error,
    read,
    respond,
    scope_of_request,
)
from poold.api.models import Health, Ready
from poold.ledger import queries

log = structlog.get_logger(__name__)


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: block found / settled / confirmed / orphaned for anyone; FPPS
    bookings and token settlements for a holder or admin token; payouts (their txids link
    addresses) for an admin token only. Each event carries `summary` (the event in words,
    times in UTC). A comment opens the stream at once, and a `heartbeat` event (the server's
    time) follows every `keepalive_s` without another event: proxies keep the connection and
    a page can tell a quiet stream from a dead one."""
    ctx = context(request)
    scope = await scope_of_request(request) if "Authorization" in request.headers else None
    visible = event_kinds_for(scope)
    queue = ctx.events.subscribe()
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    try:
        await resp.write(b": connected\n\n")
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), ctx.keepalive_s)
            except TimeoutError:
                await resp.write(sse(heartbeat(ctx.clock())))
                continue
            if event is None:
                break
            if event["type"] not in visible:
                continue
            await resp.write(sse({**event, "summary": views.event_summary(event)}))
    except ConnectionResetError:
        log.debug("events_client_gone")  # the client went away: nothing to answer
    finally:
        ctx.events.unsubscribe(queue)
    return resp


def heartbeat(now_s: float) -> dict[str, object]:
    ms = round(now_s * 1000)
    return {"type": "heartbeat", "time_ms": ms, "summary": f"heartbeat {display.utc_ms(ms)}"}


def sse(event: dict[str, object]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


PUBLIC_EVENTS = frozenset(
    {"block_found", "block_settled", "block_confirmed", "block_orphaned", "block_restored"}
)


HOLDER_EVENTS = PUBLIC_EVENTS | {"fpps_booked", "settlement_posted"}


def event_kinds_for(scope: str | None) -> frozenset[str]:
    """The event types a token of `scope` (None: no token) may see."""
    if scope == "admin":
        return HOLDER_EVENTS | {"payout_sent"}
    return HOLDER_EVENTS if scope is not None else PUBLIC_EVENTS


DASHBOARD = Path(__file__).with_name("static") / "index.html"


async def dashboard(_request: web.Request) -> web.Response:
    return web.Response(
        text=DASHBOARD.read_text(),
        content_type="text/html",
        headers={"Cache-Control": "no-cache"},
    )


async def healthz(_request: web.Request) -> web.Response:
    return respond(Health(status="ok"))


async def readyz(request: web.Request) -> web.Response:
    ctx = context(request)
    problems = dict(ctx.readiness())
    problems.update(request.app[CACHE].problems())
    if ctx.engine is not None:

        def ping() -> None:
            assert ctx.engine is not None
            with ctx.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:  # bounded: a database that stopped answering makes readyz say so, not hang
            await asyncio.wait_for(asyncio.to_thread(ping), 2.0)
        except TimeoutError:
            problems["database"] = "no answer from the ledger database within 2 s"
        except Exception as exc:  # reported: readyz names it
            problems["database"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    status = 503 if problems else 200
    resp = respond(Ready(ready=not problems, problems=problems))
    resp.set_status(status)
    return resp


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text (HELP and TYPE on every family): the daemon's metrics, with every other
    worker's added when there are several, the pool hashrate from the cached overview, and
    payout runs (made by `poold payout` in another process) counted in the ledger."""
    ctx = context(request)
    m = ctx.metrics.merge(ctx.peer_metrics())
    cached = request.app[CACHE].peek("pool")
    if cached is not None:
        m.hashrate_hs = dict(cached.hashrate_hs)
    if ctx.engine is not None:
        m.payouts = dict(await read(request, queries.payout_counts))
    return web.Response(text=m.render_prometheus(), content_type="text/plain", charset="utf-8")


async def not_found(_request: web.Request) -> web.Response:
    raise error(404, "no such endpoint")
