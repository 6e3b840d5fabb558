"""What every route module shares: the API's context, errors, auth, pagination, reads in
threads (or in the ledger process), the caches, and `respond` (a response model to JSON).
Imports no route module.

Every error is JSON `{"error": "..."}` naming what was wrong: 400 for a malformed or unknown
parameter or body, 401 without a valid token, 403 when the token does not cover the resource,
404 for an unknown account, holder or path, 405 for a method the path does not take, 503 when
the ledger is not available, 500 (logged with its traceback) for a bug.
"""

from __future__ import annotations

import asyncio
import csv
import io
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
from sqlalchemy.exc import SQLAlchemyError

from poold.api.auth import digest, scope_for, scope_of
from poold.api.models import Network
from poold.config import Config
from poold.events import EventHub
from poold.ledger import queries
from poold.ledger.db import LedgerError
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
    network: Callable[[], Network | None] = lambda: None
    #: The other worker processes' metric states (`Metrics.snapshot_state`), when several.
    peer_metrics: Callable[[], list[dict[str, Any]]] = list


CTX = web.AppKey("ctx", ApiContext)


class Cached:
    """Stale-while-revalidate, bounded: the first caller computes; afterwards a value younger
    than `ttl_s` is served as it is, one up to `stale_s` old is served while one background
    refresh runs, and an older one is never served: the caller waits for a fresh one (the
    first request after an idle spell must not show minutes-old numbers). Pool-wide views
    scan every slice of the day, so they are computed every few seconds, not per request.

    A refresh that fails is logged with its error, counted (`metrics.api_cache_failures`,
    in /metrics) and reported by `problems` (in /readyz) until a refresh of that key works."""

    def __init__(
        self,
        ttl_s: float,
        metrics: Metrics,
        *,
        stale_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.stale_s = 6 * ttl_s if stale_s is None else stale_s
        self.metrics = metrics
        self.monotonic = monotonic
        self._values: dict[str, tuple[float, Any]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._failing: dict[str, str] = {}  # key -> the last refresh's error

    def peek(self, key: str) -> Any:
        hit = self._values.get(key)
        return None if hit is None else hit[1]

    async def refreshed(self) -> None:
        """Wait for the background refreshes in flight (each logs its own failure)."""
        await asyncio.gather(*self._refreshing.values())

    def problems(self) -> dict[str, str]:
        return {f"api_cache:{k}": f"refreshing it failed: {v}" for k, v in self._failing.items()}

    async def _compute(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        try:
            value = await compute()
        except Exception as exc:
            self.metrics.api_cache_failures += 1
            self._failing[key] = f"{exc.__class__.__name__}: {exc}"
            log.warning("api_cache_refresh_failed", key=key, error=str(exc), exc_info=True)
            raise
        self._failing.pop(key, None)
        self._values[key] = (self.monotonic(), value)
        return value

    async def get(self, key: str, compute: Callable[[], Awaitable[Any]]) -> Any:
        hit = self._values.get(key)
        age = None if hit is None else self.monotonic() - hit[0]
        if hit is None or age is None or age > self.stale_s:
            running = self._refreshing.get(key)
            if running is not None:  # one is on its way: wait for it rather than start two
                await asyncio.shield(running)
                fresh = self._values.get(key)
                if fresh is not None and self.monotonic() - fresh[0] <= self.stale_s:
                    return fresh[1]
            return await self._compute(key, compute)
        if age > self.ttl_s and key not in self._refreshing:

            async def refresh() -> None:
                try:
                    await self._compute(key, compute)
                except Exception:  # reported: logged and counted by _compute; the next get retries
                    return
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


ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    503: web.HTTPServiceUnavailable,
}


def error(status: int, message: str) -> web.HTTPException:
    return ERRORS[status](text=json.dumps({"error": message}), content_type="application/json")


def json_error(status: int, message: str, headers: Any = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as JSON: the API's own (already JSON), aiohttp's (404 for an unknown
    path, 405 for a method the path does not take, 413 for a body too large: turned into
    JSON naming what was wrong), and a bug's (500; logged with its traceback)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json" or exc.status < 400:
            raise
        if exc.status == 404:
            return json_error(404, f"no such endpoint: {request.path}")
        if isinstance(exc, web.HTTPMethodNotAllowed):
            allowed = ", ".join(sorted(exc.allowed_methods))
            return json_error(
                405,
                f"{request.method} is not allowed on {request.path}; it takes {allowed}",
                {"Allow": ",".join(sorted(exc.allowed_methods))},
            )
        return json_error(exc.status, exc.reason)
    except (LedgerError, SQLAlchemyError) as exc:
        log.warning("api_ledger_unavailable", path=request.path, error=str(exc).splitlines()[0])
        return json_error(503, f"the ledger did not answer: {str(exc).splitlines()[0]}")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("api_request_failed", path=request.path, method=request.method)
        return json_error(500, "internal error: the server could not answer (it is logged)")


def respond(model: BaseModel) -> web.Response:
    """A response model as the JSON the OpenAPI document describes (aliases such as "10m")."""
    return web.Response(text=model.model_dump_json(by_alias=True), content_type="application/json")


def respond_document(model: type[BaseModel], doc: dict[str, Any]) -> web.Response:
    """A document served exactly as the ledger built it, once it is checked against its response
    model: a proof is read strictly by verify.py, so serializing it through the model (which
    would add its optional keys as nulls) is not allowed to change it."""
    model.model_validate(doc)
    return web.json_response(doc)


def csv_response(items: list[dict[str, Any]], columns: list[str], filename: str) -> web.Response:
    """Rows as a CSV attachment, `columns` in order (the header even when there are no rows)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(items)
    return web.Response(
        text=out.getvalue(),
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def check_query(request: web.Request, allowed: frozenset[str]) -> None:
    """A 400 naming any query parameter the route does not take (a client's `page` or
    `pageSize`, silently ignored, would show page one as if it were the page asked for)."""
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) if allowed else "no query parameters"
        raise error(400, f"unknown query parameter {unknown[0]!r}: this route takes {takes}")


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
