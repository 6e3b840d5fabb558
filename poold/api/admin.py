"""Admin routes (an admin token): token transfers and BTC/USD prices in, API tokens listed and
revoked. Writes only through poold.tokens and poold.api.auth."""

from __future__ import annotations

import asyncio
from fractions import Fraction

from aiohttp import web
from pydantic import ValidationError

from poold.api.auth import list_tokens, revoke_token
from poold.api.base import (
    SCOPES,
    body_of,
    context,
    engine_of,
    error,
    first_error,
    json_body,
    require,
    respond,
)
from poold.api.models import (
    ImportResult,
    Price,
    PriceIn,
    Revoked,
    TokenInfo,
    TokenList,
    TransfersIn,
)
from poold.tokens.settle import set_price
from poold.tokens.transfers import TokenError, import_transfers, parse_records


async def admin_transfers(request: web.Request) -> web.Response:
    await require(request)
    body = await json_body(request)
    try:
        TransfersIn.model_validate(body)  # the document's shape; parse_records checks the rest
    except ValidationError as exc:
        raise error(400, f"{first_error(exc)} (expected a JSON list of transfers)") from None
    try:
        result = await asyncio.to_thread(import_transfers, engine_of(request), parse_records(body))
    except TokenError as exc:
        raise error(400, f"{exc}; nothing was imported") from None
    return respond(ImportResult(added=result.added, unchanged=result.unchanged))


async def admin_prices(request: web.Request) -> web.Response:
    await require(request)
    body = await body_of(request, PriceIn)
    cfg = context(request).cfg.tokens
    start, raw = body.period_start, body.btc_usd
    try:
        price = Fraction(str(raw))
    except (ValueError, ZeroDivisionError):
        raise error(400, f"btc_usd: {raw!r} is not a number") from None

    try:
        await asyncio.to_thread(set_price, engine_of(request), start, price, cfg)
    except TokenError as exc:
        raise error(400, str(exc)) from None
    return respond(Price(period_start=start, btc_usd=str(price)))


async def admin_tokens(request: web.Request) -> web.Response:
    await require(request)
    tokens = await asyncio.to_thread(list_tokens, engine_of(request))
    return respond(
        TokenList(
            tokens=[TokenInfo(id=t.id, scope=t.scope, created_ms=t.created_ms) for t in tokens]
        )
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
    return respond(Revoked(revoked=revoked.id, scope=revoked.scope))
