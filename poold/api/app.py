"""The aiohttp application: routes, auth, pagination, errors. Database reads run in threads so
the event loop (which also serves miners) never waits on them.

Errors are JSON `{"error": "..."}` naming what was wrong: 400 for a malformed parameter or
body, 401 without a valid token, 403 when the token does not cover the resource, 404 for an
unknown account or holder, 503 when the ledger is not available. Reads through
poold.ledger.queries, writes only through poold.tokens; never imports the Stratum side.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import Engine

from poold.api.auth import digest, list_tokens, revoke_token, scope_of
from poold.api.events import EventHub
from poold.api.openapi import document
from poold.config import Config
from poold.ledger import journal, queries
from poold.metrics import Metrics
from poold.tokens.settle import STATEMENT_AMOUNTS, set_price
from poold.tokens.transfers import TokenError, import_transfers, parse_records

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class ApiContext:
    cfg: Config
    metrics: Metrics
    engine: Engine | None
    #: Component -> problem for /readyz (empty: ready). The daemon supplies node and backlog.
    readiness: Callable[[], dict[str, str]] = field(default=dict)
    clock: Callable[[], float] = time.time
    events: EventHub = field(default_factory=EventHub)
    keepalive_s: float = 15.0
    cache_ttl_s: float = 5.0  # pool-wide views are recomputed at most this often
    #: Runs `fn(conn, *args)` in the ledger process (the daemon's); None: in a thread here.
    #: Used for the cached pool-wide views, which are CPU-heavy in Python.
    offload: Callable[..., Awaitable[Any]] | None = None


CTX = web.AppKey("ctx", ApiContext)


class Cached:
    """Stale-while-revalidate: the first caller computes; afterwards callers get the last value
    at once, and one background refresh runs when it is older than `ttl_s`. Pool-wide views
    scan every slice of the day, so they are computed every few seconds, not per request."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[str, tuple[float, Any]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}

    def peek(self, key: str) -> Any:
        hit = self._values.get(key)
        return None if hit is None else hit[1]

    async def get(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        now = time.monotonic()
        hit = self._values.get(key)
        if hit is None:
            value = await compute()
            self._values[key] = (time.monotonic(), value)
            return value
        if now - hit[0] > self.ttl_s and key not in self._refreshing:

            async def refresh() -> None:
                try:
                    self._values[key] = (time.monotonic(), await compute())
                except Exception:
                    pass
                finally:
                    self._refreshing.pop(key, None)

            self._refreshing[key] = asyncio.create_task(refresh())
        return hit[1]


CACHE = web.AppKey("cache", Cached)
PAGES = web.AppKey("pages", dict[tuple[str, int, int, int | None], str])
SCOPES = web.AppKey("scopes", dict[str, tuple[float, str]])  # token digest -> (seen, scope)
SCOPE_TTL_S = 5.0
HOLDERS = web.AppKey("holders", set[str])  # holders the ledger is known to have


def _error(status: int, message: str) -> web.HTTPException:
    cls = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        503: web.HTTPServiceUnavailable,
    }[status]
    return cls(text=json.dumps({"error": message}), content_type="application/json")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status not in (400, 401, 403, 404, 503):
            raise
        raise _error(exc.status, exc.reason) from None


def _ctx(request: web.Request) -> ApiContext:
    return request.app[CTX]


def _engine(request: web.Request) -> Engine:
    engine = _ctx(request).engine
    if engine is None:
        raise _error(503, "the ledger is not enabled on this daemon ([ledger] ingest_interval_s)")
    return engine


def _page(request: web.Request) -> queries.Page:
    biggest = _ctx(request).cfg.api.max_page
    values = {}
    for name, default, low in (("limit", min(100, biggest), 1), ("offset", 0, 0)):
        raw = request.query.get(name)
        if raw is None:
            values[name] = default
            continue
        try:
            value = int(raw)
        except ValueError:
            raise _error(400, f"{name}: expected an integer, got {raw!r}") from None
        high = biggest if name == "limit" else 10**9
        if not low <= value <= high:
            raise _error(400, f"{name}: must be between {low} and {high}, got {value}")
        values[name] = value
    return queries.Page(values["limit"], values["offset"])


async def _scope(request: web.Request) -> str:
    """The token's scope. Known tokens are remembered for a minute (by the SHA-256 the ledger
    stores, never the secret): a read costs no database round trip on the Stratum process.
    Unknown tokens are always looked up, so a token created a moment ago works at once."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or len(header) < 8:
        raise _error(401, "this resource needs a token: Authorization: Bearer <token>")
    secret = header[7:].strip()
    known = request.app[SCOPES]
    key = digest(secret)
    hit = known.get(key)
    now = time.monotonic()
    if hit is not None and now - hit[0] < SCOPE_TTL_S:
        return hit[1]
    scope = await asyncio.to_thread(scope_of, _engine(request), secret)
    if scope is None:
        known.pop(key, None)
        raise _error(401, "unknown token")
    if len(known) >= 10_000:
        known.clear()
    known[key] = (now, scope)
    return scope


async def _require(request: web.Request, *, holder: str | None = None) -> None:
    scope = await _scope(request)
    if scope == "admin" or (holder is not None and scope == f"holder:{holder}"):
        return
    raise _error(403, "this token does not give access to this resource")


async def _read(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:

    engine = _engine(request)

    def run() -> Any:
        with engine.connect() as conn:
            return fn(conn, *args)

    return await asyncio.to_thread(run)


async def _read_heavy(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
    """A pool-wide read: in the ledger process when there is one, so the Stratum loop in this
    process never waits for the GIL while thousands of slices are summed."""
    offload = _ctx(request).offload
    if offload is None:
        return await _read(request, fn, *args)
    return await offload(fn, *args)


def _now(request: web.Request) -> int:
    return int(_ctx(request).clock())


# --- pool and miners ---------------------------------------------------------------------


async def pool(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    now = _now(request)
    overview = await request.app[CACHE].get(
        "pool", lambda: _read_heavy(request, queries.pool_overview, now)
    )
    body = dict(overview)
    body.update(
        scheme=ctx.cfg.pool.scheme,
        fee=str(ctx.cfg.pool.fee),
        shares={
            "accepted": ctx.metrics.shares_accepted,
            "rejected": dict(ctx.metrics.shares_rejected),
        },
    )
    return web.json_response(body)


async def pool_blocks(request: web.Request) -> web.Response:
    page = _page(request)
    items = await _read(request, queries.blocks, page)
    return web.json_response({"items": items, "limit": page.limit, "offset": page.offset})


def _window(request: web.Request) -> str:
    window = request.query.get("window", "24h")
    if window not in queries.SERIES:
        raise _error(400, f"window: expected one of {', '.join(queries.SERIES)}, got {window!r}")
    return window


async def pool_hashrate(request: web.Request) -> web.Response:
    window = _window(request)
    now = _now(request)
    points = await request.app[CACHE].get(
        f"series:{window}", lambda: _read_heavy(request, queries.hashrate_series, now, window)
    )
    return web.json_response({"window": window, "points": points})


async def miner_hashrate(request: web.Request) -> web.Response:
    window = _window(request)
    _, aid = await _miner_id(request)
    points = await _read(request, queries.hashrate_series, _now(request), window, aid)
    return web.json_response({"window": window, "points": points})


async def _miner_id(request: web.Request) -> tuple[str, int]:
    if not _ctx(request).cfg.api.public_miners:
        await _require(request)
    name = request.match_info["account"]
    aid = await _read(request, queries.account_id, name)
    if aid is None:
        raise _error(404, f"no account {name!r} in the ledger")
    return name, int(aid)


async def miner(request: web.Request) -> web.Response:
    name, aid = await _miner_id(request)
    body = await _read(request, queries.miner, name, aid, _now(request))
    # Rejected shares never reach the ledger: this daemon's counts since it started.
    body["shares_rejected"] = dict(_ctx(request).metrics.rejected_by_account.get(name, {}))
    return web.json_response(body)


async def miner_credits(request: web.Request) -> web.Response:
    page = _page(request)
    name, _ = await _miner_id(request)
    items = await _read(request, queries.credits, name, page)
    return web.json_response({"items": items, "limit": page.limit, "offset": page.offset})


async def miner_payouts(request: web.Request) -> web.Response:
    page = _page(request)
    name, _ = await _miner_id(request)
    items = await _read(request, queries.payouts, name, page)
    return web.json_response({"items": items, "limit": page.limit, "offset": page.offset})


# --- holders -----------------------------------------------------------------------------


async def _holder(request: web.Request) -> str:
    """The holder named in the path, once the token may read it and the ledger knows it.
    Known holders are remembered: transfers are never deleted, so a holder stays known."""
    name = request.match_info["holder"]
    await _require(request, holder=name)
    known = request.app[HOLDERS]
    if name not in known:
        if not await _read(request, queries.holder_known, name):
            raise _error(404, f"no token holder {name!r}")
        if len(known) >= 100_000:
            known.clear()
        known.add(name)
    return name


async def holder(request: web.Request) -> web.Response:
    name = await _holder(request)
    return web.json_response(await _read(request, queries.holder_summary, name, _now(request)))


async def holder_statements(request: web.Request) -> web.Response:
    """Statements change only when a period is settled: the rendered page is kept, keyed by
    the newest settled period, so a year of statements is not rebuilt on every request."""
    page = _page(request)
    name = await _holder(request)
    th = _ctx(request).cfg.tokens.th_per_token
    newest = await _read(request, queries.newest_period)
    key = (name, page.limit, page.offset, newest)
    pages = request.app[PAGES]
    body = pages.get(key)
    if body is None:
        items = await _read(request, queries.statements, name, page, th)
        body = json.dumps({"items": items, "limit": page.limit, "offset": page.offset})
        pages[key] = body
        while len(pages) > 4096:
            pages.pop(next(iter(pages)))
    return web.Response(text=body, content_type="application/json")


async def holder_payouts(request: web.Request) -> web.Response:
    page = _page(request)
    name = await _holder(request)
    items = await _read(request, queries.payouts, journal.holder(name), page)
    return web.json_response({"items": items, "limit": page.limit, "offset": page.offset})


async def holder_transfers(request: web.Request) -> web.Response:
    page = _page(request)
    name = await _holder(request)
    items = await _read(request, queries.holder_transfers, name, page)
    return web.json_response({"items": items, "limit": page.limit, "offset": page.offset})


async def holder_statements_csv(request: web.Request) -> web.Response:
    name = await _holder(request)
    th = _ctx(request).cfg.tokens.th_per_token
    items = await _read(request, queries.statements, name, queries.Page(10**6, 0), th)
    out = io.StringIO()
    columns = ["date", *(items[0] if items else STATEMENT_AMOUNTS)]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for item in items:
        day = datetime.fromtimestamp(item["period_start"], UTC).date().isoformat()
        writer.writerow({"date": day, **item})
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}-statements.csv"'},
    )


# --- admin -------------------------------------------------------------------------------


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _error(400, "the body is not valid JSON") from None


async def admin_transfers(request: web.Request) -> web.Response:
    await _require(request)
    body = await _json_body(request)
    if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
        raise _error(400, "expected a JSON list of transfer objects")

    try:
        result = await asyncio.to_thread(import_transfers, _engine(request), parse_records(body))
    except TokenError as exc:
        raise _error(400, f"{exc}; nothing was imported") from None
    return web.json_response({"added": result.added, "unchanged": result.unchanged})


async def admin_prices(request: web.Request) -> web.Response:
    await _require(request)
    body = await _json_body(request)
    cfg = _ctx(request).cfg.tokens
    if not isinstance(body, dict) or set(body) != {"period_start", "btc_usd"}:
        raise _error(400, 'expected {"period_start": unix seconds, "btc_usd": "65000.00"}')
    start, raw = body["period_start"], body["btc_usd"]
    if isinstance(start, bool) or not isinstance(start, int) or isinstance(raw, float):
        raise _error(400, "period_start must be an integer and btc_usd exact text, not a float")
    try:
        price = Fraction(str(raw))
    except (ValueError, ZeroDivisionError):
        raise _error(400, f"btc_usd: {raw!r} is not a number") from None

    try:
        await asyncio.to_thread(set_price, _engine(request), start, price, cfg)
    except TokenError as exc:
        raise _error(400, str(exc)) from None
    return web.json_response({"period_start": start, "btc_usd": str(price)})


async def admin_tokens(request: web.Request) -> web.Response:
    await _require(request)
    tokens = await asyncio.to_thread(list_tokens, _engine(request))
    return web.json_response(
        {"tokens": [{"id": t.id, "scope": t.scope, "created_ms": t.created_ms} for t in tokens]}
    )


async def admin_revoke_token(request: web.Request) -> web.Response:
    await _require(request)
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise _error(400, f"token id must be a whole number, got {raw!r}")
    revoked = await asyncio.to_thread(revoke_token, _engine(request), int(raw))
    if revoked is None:
        raise _error(404, f"no token {raw} (revoked already?)")
    request.app[SCOPES].clear()  # this process stops honouring it now
    return web.json_response({"revoked": revoked.id, "scope": revoked.scope})


# --- operations --------------------------------------------------------------------------


async def events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: block found / settled / confirmed / orphaned for anyone; FPPS
    bookings and token settlements for a holder or admin token; payouts (their txids link
    addresses) for an admin token only. A comment line keeps idle connections alive."""
    ctx = _ctx(request)
    scope = await _scope(request) if "Authorization" in request.headers else None
    visible = event_kinds_for(scope)
    queue = ctx.events.subscribe()
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await resp.prepare(request)
    try:
        while True:
            try:
                event = await asyncio.wait_for(queue.get(), ctx.keepalive_s)
            except TimeoutError:
                await resp.write(b": keep-alive\n\n")
                continue
            if event is None:
                break
            if event["type"] not in visible:
                continue
            await resp.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
    except ConnectionResetError:
        pass
    finally:
        ctx.events.unsubscribe(queue)
    return resp


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
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    problems = dict(ctx.readiness())
    if ctx.engine is not None:
        import asyncio

        def ping() -> None:
            assert ctx.engine is not None
            with ctx.engine.connect() as conn:
                conn.execute(text("SELECT 1"))

        try:  # bounded: a database that stopped answering makes readyz say so, not hang
            await asyncio.wait_for(asyncio.to_thread(ping), 2.0)
        except TimeoutError:
            problems["database"] = "no answer from the ledger database within 2 s"
        except Exception as exc:
            problems["database"] = f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}"
    status = 503 if problems else 200
    return web.json_response({"ready": not problems, "problems": problems}, status=status)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text: the daemon's counters, the pool hashrate from the cached overview, and
    payout runs (made by `poold payout` in another process) counted in the ledger."""
    ctx = _ctx(request)
    lines = [ctx.metrics.render_prometheus()]
    cached = request.app[CACHE].peek("pool")
    if cached is not None:
        lines.append("# TYPE poold_hashrate_hs gauge\n")
        for window, hs in cached["hashrate_hs"].items():
            lines.append(f'poold_hashrate_hs{{window="{window}"}} {hs}\n')
    if ctx.engine is not None:
        counts = await _read(request, queries.payout_counts)
        lines.append("# TYPE poold_payouts_total counter\n")
        for status, n in sorted(counts.items()):
            lines.append(f'poold_payouts_total{{status="{status}"}} {n}\n')
    return web.Response(text="".join(lines), content_type="text/plain")


async def openapi(_request: web.Request) -> web.Response:
    return web.json_response(document())


async def not_found(_request: web.Request) -> web.Response:
    raise _error(404, "no such endpoint")


def make_app(ctx: ApiContext, *, public: bool = True, admin: bool = True) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=16 << 20)
    app[CTX] = ctx
    app[CACHE] = Cached(ctx.cache_ttl_s)
    app[PAGES] = {}
    app[SCOPES] = {}
    app[HOLDERS] = set()
    app.router.add_get("/healthz", healthz)
    if public:
        app.router.add_get("/", dashboard)
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/api/v1/openapi.json", openapi)
        app.router.add_get("/api/v1/events", events)
        app.router.add_get("/api/v1/pool", pool)
        app.router.add_get("/api/v1/pool/blocks", pool_blocks)
        app.router.add_get("/api/v1/pool/hashrate", pool_hashrate)
        app.router.add_get("/api/v1/miners/{account}/hashrate", miner_hashrate)
        app.router.add_get("/api/v1/miners/{account}", miner)
        app.router.add_get("/api/v1/miners/{account}/credits", miner_credits)
        app.router.add_get("/api/v1/miners/{account}/payouts", miner_payouts)
        app.router.add_get("/api/v1/holders/{holder}", holder)
        app.router.add_get("/api/v1/holders/{holder}/statements", holder_statements)
        app.router.add_get("/api/v1/holders/{holder}/transfers", holder_transfers)
        app.router.add_get("/api/v1/holders/{holder}/payouts", holder_payouts)
        app.router.add_get("/api/v1/holders/{holder}/statements.csv", holder_statements_csv)
    if admin:
        app.router.add_post("/api/v1/admin/transfers", admin_transfers)
        app.router.add_post("/api/v1/admin/prices", admin_prices)
        app.router.add_get("/api/v1/admin/tokens", admin_tokens)
        app.router.add_delete("/api/v1/admin/tokens/{id}", admin_revoke_token)
    return app
