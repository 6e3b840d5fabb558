"""Routes for token holders (a holder's own token, or admin): summary, statements (JSON and
CSV), transfers, payouts."""

from __future__ import annotations

from aiohttp import web

from poold.api import models, views
from poold.api.base import (
    HOLDERS,
    PAGES,
    context,
    csv_response,
    error,
    now_of,
    page_of,
    read,
    require,
    respond,
)
from poold.ledger import journal, queries


async def holder_name(request: web.Request) -> str:
    """The holder named in the path, once the token may read it and the ledger knows it.
    Known holders are remembered: transfers are never deleted, so a holder stays known."""
    name = request.match_info["holder"]
    await require(request, holder=name)
    known = request.app[HOLDERS]
    if name not in known:
        if not await read(request, queries.holder_known, name):
            raise error(404, f"no token holder {name!r}")
        known[name] = True
    return name


async def holder(request: web.Request) -> web.Response:
    name = await holder_name(request)
    summary = await read(request, queries.holder_summary, name, now_of(request))
    return respond(views.holder(summary))


async def holder_statements(request: web.Request) -> web.Response:
    """Statements change only when a period is settled: the rendered page is kept, keyed by
    the newest settled period, so a year of statements is not rebuilt on every request."""
    page = page_of(request)
    name = await holder_name(request)
    th = context(request).cfg.tokens.th_per_token
    newest = await read(request, queries.newest_period)
    key = (name, page.limit, page.offset, newest)
    pages = request.app[PAGES]
    body = pages.get(key)
    if body is None:
        fleet = context(request).cfg.tokens.fleet_accounts
        rows = await read(request, queries.statements, name, page, th, tuple(fleet))
        items = [views.statement(r) for r in rows]
        body = models.StatementList(items=items, **vars(page)).model_dump_json(by_alias=True)
        pages[key] = body
    return web.Response(text=body, content_type="application/json")


async def holder_proof(request: web.Request) -> web.Response:
    """The holder's Merkle-sum proof for one settled period (`verify.py` checks it)."""
    from poold.tokens.proofs import proof_for

    name = await holder_name(request)
    raw = request.match_info["period_start"]
    if not raw.isdigit():
        raise error(400, f"period_start must be unix seconds, got {raw!r}")
    found = await read(request, proof_for, name, int(raw))
    if found is None:
        raise error(404, f"no statement of {name!r} in a settled period starting {raw}")
    return respond(models.Proof.model_validate(found))


async def statement_roots(request: web.Request) -> web.Response:
    """The public chain of statement commitments."""
    from poold.tokens.proofs import roots

    page = page_of(request)
    items = await read(request, roots, page.limit, page.offset)
    return respond(models.RootList.model_validate({"items": items, **vars(page)}))


async def holder_payouts(request: web.Request) -> web.Response:
    page = page_of(request)
    name = await holder_name(request)
    rows = await read(request, queries.payouts, journal.holder(name), page)
    return respond(models.MinerPayoutList(items=[views.payout(p) for p in rows], **vars(page)))


async def holder_transfers(request: web.Request) -> web.Response:
    page = page_of(request)
    name = await holder_name(request)
    rows = await read(request, queries.holder_transfers, name, page)
    return respond(models.TransferList(items=[views.transfer(t) for t in rows], **vars(page)))


async def holder_statements_csv(request: web.Request) -> web.Response:
    name = await holder_name(request)
    th = context(request).cfg.tokens.th_per_token
    fleet = tuple(context(request).cfg.tokens.fleet_accounts)
    rows = await read(request, queries.statements, name, queries.Page(10**6, 0), th, fleet)
    items = [views.statement_csv(r) for r in reversed(rows)]  # oldest first, like a ledger
    return csv_response(items, views.STATEMENT_CSV_COLUMNS, f"{name}-statements.csv")
