"""Admin routes (an admin token): token transfers and BTC/USD prices in, API tokens listed and
revoked. Writes only through poold.tokens and poold.api.auth."""

from __future__ import annotations

import asyncio
from fractions import Fraction

from aiohttp import web

from poold.api.auth import list_tokens, revoke_token
from poold.api.base import (
    SCOPES,
    context,
    engine_of,
    error,
    json_body,
    require,
)
from poold.tokens.settle import set_price
from poold.tokens.transfers import TokenError, import_transfers, parse_records


async def admin_transfers(request: web.Request) -> web.Response:
    await require(request)
    body = await json_body(request)
    if not isinstance(body, list) or not all(isinstance(r, dict) for r in body):
        raise error(400, "expected a JSON list of transfer objects")

    try:
        result = await asyncio.to_thread(import_transfers, engine_of(request), parse_records(body))
    except TokenError as exc:
        raise error(400, f"{exc}; nothing was imported") from None
    return web.json_response({"added": result.added, "unchanged": result.unchanged})


async def admin_prices(request: web.Request) -> web.Response:
    await require(request)
    body = await json_body(request)
    cfg = context(request).cfg.tokens
    if not isinstance(body, dict) or set(body) != {"period_start", "btc_usd"}:
        raise error(400, 'expected {"period_start": unix seconds, "btc_usd": "65000.00"}')
    start, raw = body["period_start"], body["btc_usd"]
    if isinstance(start, bool) or not isinstance(start, int) or isinstance(raw, float):
        raise error(400, "period_start must be an integer and btc_usd exact text, not a float")
    try:
        price = Fraction(str(raw))
    except (ValueError, ZeroDivisionError):
        raise error(400, f"btc_usd: {raw!r} is not a number") from None

    try:
        await asyncio.to_thread(set_price, engine_of(request), start, price, cfg)
    except TokenError as exc:
        raise error(400, str(exc)) from None
    return web.json_response({"period_start": start, "btc_usd": str(price)})


async def admin_tokens(request: web.Request) -> web.Response:
    await require(request)
    tokens = await asyncio.to_thread(list_tokens, engine_of(request))
    return web.json_response(
        {"tokens": [{"id": t.id, "scope": t.scope, "created_ms": t.created_ms} for t in tokens]}
    )


async def admin_revoke_token(request: web.Request) -> web.Response:
    await require(request)
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise error(400, f"token id must be a whole number, got {raw!r}")
    revoked = await asyncio.to_thread(revoke_token, engine_of(request), int(raw))
    if revoked is None:
        raise error(404, f"no token {raw} (revoked already?)")
    request.app[SCOPES].clear()  # this process stops honouring it now
    return web.json_response({"revoked": revoked.id, "scope": revoked.scope})
