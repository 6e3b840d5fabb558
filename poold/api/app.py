"""The aiohttp application: which routes each listener serves (the public one: pages, pool,
miners, holders, ops; the admin one: admin routes), the shared middleware and caches. The
/api/v1 routes are the table in `routes` (which the OpenAPI document is generated from); the
handlers live by audience in `pool`, `holders`, `admin` and `ops`; what they share in `base`.
Database reads run in threads (or the ledger process) so the event loop, which also serves
miners, never waits on them. Never imports the Stratum side.
"""

from __future__ import annotations

from aiohttp import web
from cachetools import LRUCache, TTLCache

from poold.api import ops
from poold.api.base import (
    CACHE,
    CTX,
    HOLDERS,
    PAGES,
    SCOPE_TTL_S,
    SCOPES,
    ApiContext,
    Cached,
    Handler,
    check_query,
    json_errors,
)
from poold.api.openapi import document
from poold.api.routes import ROUTES, Route

__all__ = ["ApiContext", "make_app"]


async def openapi(_request: web.Request) -> web.Response:
    """The OpenAPI document of /api/v1, generated from the route table."""
    return web.json_response(document())


def checked(route: Route) -> Handler:
    """The route's handler, after a 400 for any query parameter its table entry does not
    declare."""
    allowed = frozenset(p.name for p in route.params if p.where == "query")

    async def handle(request: web.Request) -> web.StreamResponse:
        check_query(request, allowed)
        return await route.handler(request)

    return handle


def make_app(ctx: ApiContext, *, public: bool = True, admin: bool = True) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=16 << 20)
    app[CTX] = ctx
    app[CACHE] = Cached(ctx.cache_ttl_s, ctx.metrics)
    app[PAGES] = LRUCache(maxsize=4096)
    app[SCOPES] = TTLCache(maxsize=10_000, ttl=SCOPE_TTL_S)
    app[HOLDERS] = LRUCache(maxsize=100_000)
    app.router.add_get("/healthz", ops.healthz)
    if public:
        for path, handler in (
            ("/", ops.dashboard),
            ("/readyz", ops.readyz),
            ("/metrics", ops.metrics),
            ("/api/v1/openapi.json", openapi),
        ):
            app.router.add_get(path, handler)
    for route in ROUTES:  # every /api/v1 route, documented by construction
        if (public and route.listener == "public") or (admin and route.listener == "admin"):
            app.router.add_route(route.method.upper(), route.path, checked(route))
    return app
