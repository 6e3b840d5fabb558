"""Routes for token holders (a holder's own token, or admin): summary, statements (JSON and
CSV), transfers, payouts."""

from __future__ import annotations

from aiohttp import web

from poold.api import models, views
from poold.api.base import (
    CACHE,
    HOLDERS,
    PAGES,
    context,
    csv_response,
    error,
    now_of,
    page_of,
    read,
    read_heavy,
    require,
    respond,
    respond_document,
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
        cfg = context(request).cfg
        fleet = tuple(cfg.tokens.fleet_accounts)
        rows = await read(request, queries.statements, name, page, th, fleet, cfg.pool.fee)
        items = [views.statement(r, cfg.tokens.delivery_threshold) for r in rows]
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
    return respond_document(models.Proof, found)


async def work_proof(request: web.Request) -> web.Response:
    """A period's proof of delivered hashrate (public: it names no worker)."""
    from poold.tokens.work import proof_of

    raw = request.match_info["period_start"]
    if not raw.isdigit():
        raise error(400, f"period_start must be unix seconds, got {raw!r}")
    found = await read(request, proof_of, int(raw))
    if found is None:
        raise error(404, f"no settled period starting {raw} has a work root")
    if isinstance(found, str):
        raise error(404, f"the work proof of the period starting {raw} is not cut yet: {found}")
    return respond_document(models.WorkProof, found)


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
    cfg = context(request).cfg
    th, fleet = cfg.tokens.th_per_token, tuple(cfg.tokens.fleet_accounts)
    everything = queries.Page(10**6, 0)
    rows = await read(request, queries.statements, name, everything, th, fleet, cfg.pool.fee)
    threshold = cfg.tokens.delivery_threshold  # oldest first, like a ledger:
    items = [views.statement_csv(r, threshold) for r in reversed(rows)]
    return csv_response(items, views.STATEMENT_CSV_COLUMNS, f"{name}-statements.csv")


def fleet_of(request: web.Request) -> tuple[str, ...]:
    tokens = context(request).cfg.tokens
    if not tokens.enabled or not tokens.fleet_accounts:
        raise error(404, "this pool has no token fleet ([tokens] enabled, fleet_accounts)")
    return tuple(tokens.fleet_accounts)


def step_of(request: web.Request) -> str:
    step = request.query.get("step", "1d")
    if step not in queries.FLEET_STEPS:
        raise error(400, f"step: expected one of {', '.join(queries.FLEET_STEPS)}, got {step!r}")
    return step


async def fleet_daily(request: web.Request) -> web.Response:
    """The token fleet per UTC day (or hour) against the network's hashprice."""
    page = page_of(request)
    step = step_of(request)
    fleet = fleet_of(request)
    now = now_of(request)
    rows = await request.app[CACHE].get(
        f"fleet:{step}:{page.limit}:{page.offset}",
        lambda: read_heavy(
            request, queries.fleet_series, fleet, queries.FLEET_STEPS[step], page, now
        ),
    )
    return respond(
        models.FleetDayList(
            step=step,  # checked by step_of
            fleet=list(fleet),
            items=[views.fleet_period(p) for p in rows],
            **vars(page),
        )
    )


async def fleet_daily_csv(request: web.Request) -> web.Response:
    step = step_of(request)
    fleet = fleet_of(request)
    rows = await read_heavy(
        request,
        queries.fleet_series,
        fleet,
        queries.FLEET_STEPS[step],
        queries.Page(10**6, 0),
        now_of(request),
    )
    items = [views.fleet_csv(p) for p in reversed(rows)]  # oldest first
    return csv_response(items, views.FLEET_CSV_COLUMNS, f"fleet-{step}.csv")
