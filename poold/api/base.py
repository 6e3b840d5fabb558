"""What every route module shares: the API's context, errors, auth, pagination, reads in
threads (or in the ledger process), and the caches. Imports no route module.

Errors are JSON `{"error": "..."}` naming what was wrong: 400 for a malformed parameter or
body, 401 without a valid token, 403 when the token does not cover the resource, 404 for an
unknown account or holder, 503 when the ledger is not available.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from aiohttp import web
from cachetools import LRUCache, TTLCache
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Engine

from poold.api.auth import digest, scope_for, scope_of
from poold.config import Config
from poold.events import EventHub
from poold.ledger import queries
from poold.metrics import Metrics

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
M = TypeVar("M", bound=BaseModel)


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
    #: Old minutes of the pool page, when it is computed here (not in the ledger process).
    minutes: queries.MinuteCache = field(default_factory=queries.MinuteCache)
    #: The chain as the daemon's current job sees it (None: no job yet, or no daemon).
    network: Callable[[], dict[str, Any] | None] = lambda: None
    #: The other worker processes' metric states (`Metrics.snapshot_state`), when several.
    peer_metrics: Callable[[], list[dict[str, Any]]] = list


CTX = web.AppKey("ctx", ApiContext)


class Cached:
    """Stale-while-revalidate: the first caller computes; afterwards callers get the last value
    at once, and one background refresh runs when it is older than `ttl_s`. Pool-wide views
    scan every slice of the day, so they are computed every few seconds, not per request."""

    def __init__(self, ttl_s: float, metrics: Metrics | None = None) -> None:
        self.ttl_s = ttl_s
        self.metrics = metrics if metrics is not None else Metrics()  # counts failed refreshes
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
                except Exception as exc:  # the stale value stays; the failure is seen
                    self.metrics.errors["api_cache_refresh"] += 1
                    log.warning("api_cache_refresh_failed", key=key, error=repr(exc))
                finally:
                    self._refreshing.pop(key, None)

            self._refreshing[key] = asyncio.create_task(refresh())
        return hit[1]


CACHE = web.AppKey("cache", Cached)


#: Rendered statement pages, keyed by (holder, limit, offset, newest settled period).
PAGES = web.AppKey("pages", LRUCache[tuple[str, int, int, int | None], str])
#: Token digest -> scope, kept SCOPE_TTL_S: a revoked token stops working within it.
SCOPES = web.AppKey("scopes", TTLCache[str, str])
SCOPE_TTL_S = 5.0
#: Holders the ledger is known to have (transfers are never deleted: a holder stays known).
HOLDERS = web.AppKey("holders", LRUCache[str, bool])


def error(status: int, message: str) -> web.HTTPException:
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
        raise error(exc.status, exc.reason) from None


def context(request: web.Request) -> ApiContext:
    return request.app[CTX]


def engine_of(request: web.Request) -> Engine:
    engine = context(request).engine
    if engine is None:
        raise error(503, "the ledger is not enabled on this daemon ([ledger] ingest_interval_s)")
    return engine


def page_of(request: web.Request) -> queries.Page:
    biggest = context(request).cfg.api.max_page
    values = {}
    for name, default, low in (("limit", min(100, biggest), 1), ("offset", 0, 0)):
        raw = request.query.get(name)
        if raw is None:
            values[name] = default
            continue
        try:
            value = int(raw)
        except ValueError:
            raise error(400, f"{name}: expected an integer, got {raw!r}") from None
        high = biggest if name == "limit" else 10**9
        if not low <= value <= high:
            raise error(400, f"{name}: must be between {low} and {high}, got {value}")
        values[name] = value
    return queries.Page(values["limit"], values["offset"])


async def scope_of_request(request: web.Request) -> str:
    """The token's scope. Known tokens are remembered for SCOPE_TTL_S (by the SHA-256 the
    ledger stores, never the secret): a read costs no database round trip on the Stratum
    process. Unknown tokens are always looked up, so a token created a moment ago works at
    once."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or len(header) < 8:
        raise error(401, "this resource needs a token: Authorization: Bearer <token>")
    secret = header[7:].strip()
    known = request.app[SCOPES]
    key = digest(secret)
    scope = known.get(key)
    if scope is not None:
        return scope
    scope = await asyncio.to_thread(scope_of, engine_of(request), secret)
    if scope is None:
        raise error(401, "unknown token")
    known[key] = scope
    return scope


async def require(
    request: web.Request, *, holder: str | None = None, miner: str | None = None
) -> None:
    scope = await scope_of_request(request)
    if (
        scope == "admin"
        or (holder is not None and scope == f"holder:{holder}")
        or (miner is not None and scope == scope_for("miner", miner))
    ):
        return
    raise error(403, "this token does not give access to this resource")


async def read(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:

    engine = engine_of(request)

    def run() -> Any:
        with engine.connect() as conn:
            return fn(conn, *args)

    return await asyncio.to_thread(run)


async def read_heavy(request: web.Request, fn: Callable[..., Any], *args: Any) -> Any:
    """A pool-wide read: in the ledger process when there is one, so the Stratum loop in this
    process never waits for the GIL while thousands of slices are summed."""
    offload = context(request).offload
    if offload is None:
        return await read(request, fn, *args)
    return await offload(fn, *args)


def now_of(request: web.Request) -> int:
    return int(context(request).clock())


async def json_body(request: web.Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise error(400, "the body is not valid JSON") from None


async def body_of(request: web.Request, model: type[M]) -> M:
    """The JSON body parsed with the route's model (the one its OpenAPI entry shows); a 400
    naming the first field that is wrong otherwise."""
    raw = await json_body(request)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise error(400, first_error(exc)) from None


def first_error(exc: ValidationError) -> str:
    """The first thing pydantic found wrong, as "field.path: message"."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    return f"{where}: {first['msg']}"
