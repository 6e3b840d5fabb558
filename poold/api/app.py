"""The aiohttp application: which routes each listener serves (the public one: pages, pool,
miners, holders, ops; the admin one: admin routes), the shared middleware and caches. The
routes live by audience in `pool`, `holders`, `admin` and `ops`; what they share in `base`.
Database reads run in threads (or the ledger process) so the event loop, which also serves
miners, never waits on them. Never imports the Stratum side.
"""

from __future__ import annotations

from aiohttp import web
from cachetools import LRUCache, TTLCache

from poold.api import admin as admin_routes
from poold.api import holders, ops, pool
from poold.api.base import (
    CACHE,
    CTX,
    HOLDERS,
    PAGES,
    SCOPE_TTL_S,
    SCOPES,
    ApiContext,
    Cached,
    json_errors,
)

__all__ = ["ApiContext", "make_app"]


def make_app(ctx: ApiContext, *, public: bool = True, admin: bool = True) -> web.Application:
    app = web.Application(middlewares=[json_errors], client_max_size=16 << 20)
    app[CTX] = ctx
    app[CACHE] = Cached(ctx.cache_ttl_s)
    app[PAGES] = LRUCache(maxsize=4096)
    app[SCOPES] = TTLCache(maxsize=10_000, ttl=SCOPE_TTL_S)
    app[HOLDERS] = LRUCache(maxsize=100_000)
    app.router.add_get("/healthz", ops.healthz)
    if public:
        for path, handler in (
            ("/", ops.dashboard),
            ("/readyz", ops.readyz),
            ("/metrics", ops.metrics),
            ("/api/v1/openapi.json", ops.openapi),
            ("/api/v1/events", ops.events),
            ("/api/v1/pool", pool.pool),
            ("/api/v1/pool/blocks", pool.pool_blocks),
            ("/api/v1/pool/hashrate", pool.pool_hashrate),
            ("/api/v1/pool/nodes", pool.pool_nodes),
            ("/api/v1/pool/payments", pool.pool_payments),
            ("/api/v1/network", pool.network),
            ("/api/v1/miners/{account}/workers/{worker}/hashrate", pool.worker_hashrate),
            ("/api/v1/miners/{account}/earnings/daily", pool.miner_daily_earnings),
            ("/api/v1/miners/{account}/settings", pool.miner_settings),
            ("/api/v1/miners/{account}/hashrate", pool.miner_hashrate),
            ("/api/v1/miners/{account}", pool.miner),
            ("/api/v1/miners/{account}/credits", pool.miner_credits),
            ("/api/v1/miners/{account}/payouts", pool.miner_payouts),
            ("/api/v1/holders/{holder}", holders.holder),
            ("/api/v1/holders/{holder}/statements", holders.holder_statements),
            ("/api/v1/holders/{holder}/transfers", holders.holder_transfers),
            ("/api/v1/holders/{holder}/payouts", holders.holder_payouts),
            ("/api/v1/holders/{holder}/statements.csv", holders.holder_statements_csv),
            ("/api/v1/holders/{holder}/proofs/{period_start}", holders.holder_proof),
            ("/api/v1/statements/roots", holders.statement_roots),
        ):
            app.router.add_get(path, handler)
    if public:
        app.router.add_put("/api/v1/miners/{account}/settings", pool.miner_settings)
    if admin:
        app.router.add_post("/api/v1/admin/transfers", admin_routes.admin_transfers)
        app.router.add_post("/api/v1/admin/prices", admin_routes.admin_prices)
        app.router.add_get("/api/v1/admin/tokens", admin_routes.admin_tokens)
        app.router.add_delete("/api/v1/admin/tokens/{id}", admin_routes.admin_revoke_token)
    return app
