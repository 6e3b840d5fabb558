"""Routes for the pool's public pages: the pool overview, blocks, hashrate series, payments,
the network, and each miner's balance, credits, payouts, workers' hashrate, daily earnings and
payout settings (the routes Miningcore users expect)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from poold.api import models, views
from poold.api.base import (
    CACHE,
    body_of,
    context,
    csv_response,
    engine_of,
    error,
    now_of,
    page_of,
    read,
    read_heavy,
    require,
    respond,
    respond_document,
)
from poold.ledger import queries
from poold.ledger import worker as ledger_worker


async def pool(request: web.Request) -> web.Response:
    ctx = context(request)
    now = now_of(request)
    overview = await request.app[CACHE].get("pool", lambda: pool_overview(request, now))
    accepted, rejected = await request.app[CACHE].get(
        "counters", lambda: read(request, queries.share_counters)
    )
    return respond(
        views.overview(
            overview,
            scheme=ctx.cfg.pool.scheme,
            fee=ctx.cfg.pool.fee,
            accepted=accepted,
            rejected=rejected,
        )
    )


async def pool_overview(request: web.Request, now: int) -> queries.PoolOverview:
    """The overview, computed in the ledger process when there is one (its minute cache lives
    there), else in a thread here with this API's cache."""
    ctx = context(request)
    if ctx.offload is not None:
        overview: queries.PoolOverview = await ctx.offload(ledger_worker.pool_overview, now)
        return overview
    return await read(request, queries.pool_overview, now, ctx.minutes)  # type: ignore[no-any-return]


async def pool_blocks(request: web.Request) -> web.Response:
    page = page_of(request)
    rows = await read(request, queries.blocks, page)
    return respond(models.BlockList(items=[views.block(b) for b in rows], **vars(page)))


def window_param(request: web.Request) -> str:
    window = request.query.get("window", "24h")
    if window not in queries.SERIES:
        raise error(400, f"window: expected one of {', '.join(queries.SERIES)}, got {window!r}")
    return window


async def pool_hashrate(request: web.Request) -> web.Response:
    window = window_param(request)
    now = now_of(request)
    points = await request.app[CACHE].get(
        f"series:{window}", lambda: read_heavy(request, queries.hashrate_series, now, window)
    )
    return respond(views.series(window, queries.SERIES[window][1], points))


async def pool_nodes(request: web.Request) -> web.Response:
    """The stratum nodes feeding the ledger: status (live, stopped, lapsed, excluded), lag,
    and how far settlement may go (every live node is ingested through it)."""
    from poold.ledger import nodes

    wait_ms = int(context(request).cfg.ledger.node_wait_s * 1000)
    found = await read(request, nodes.overview, int(now_of(request) * 1000), wait_ms)
    return respond(models.NodeList.model_validate(found))


async def miner_hashrate(request: web.Request) -> web.Response:
    window = window_param(request)
    _, aid = await miner_id(request)
    points = await read(request, queries.hashrate_series, now_of(request), window, aid)
    return respond(views.series(window, queries.SERIES[window][1], points))


async def miner_id(request: web.Request) -> tuple[str, int]:
    if not context(request).cfg.api.public_miners:
        await require(request)
    name = request.match_info["account"]
    aid = await read(request, queries.account_id, name)
    if aid is None:
        raise error(404, f"no account {name!r} in the ledger")
    return name, int(aid)


async def miner(request: web.Request) -> web.Response:
    name, aid = await miner_id(request)
    view = await read(request, queries.miner, name, aid, now_of(request))
    # Every node's rejects records, added up in the ledger (within a minute or so).
    rejected = await read(request, queries.account_rejects, name)
    return respond(views.miner(view, rejected))


async def miner_credits(request: web.Request) -> web.Response:
    page = page_of(request)
    name, _ = await miner_id(request)
    rows = await read(request, queries.credits, name, page)
    return respond(models.CreditList(items=[views.credit(c) for c in rows], **vars(page)))


async def miner_credits_csv(request: web.Request) -> web.Response:
    """Every line of the account as CSV, oldest first, with what is owed after each."""
    name, _ = await miner_id(request)
    rows = await read(request, queries.credits, name, queries.Page(10**7, 0))
    items = views.credits_csv(rows)
    return csv_response(items, views.CREDIT_CSV_COLUMNS, f"{name}-credits.csv")


async def miner_payouts(request: web.Request) -> web.Response:
    page = page_of(request)
    name, _ = await miner_id(request)
    rows = await read(request, queries.payouts, name, page)
    return respond(models.MinerPayoutList(items=[views.payout(p) for p in rows], **vars(page)))


async def pool_payments(request: web.Request) -> web.Response:
    """Every payout run, newest first: txid, time, total, outputs (no addresses)."""
    page = page_of(request)
    rows = await read(request, queries.pool_payments, page)
    items = [views.pool_payment(r) for r in rows]
    return respond(models.PoolPaymentList(items=items, **vars(page)))


async def network(request: web.Request) -> web.Response:
    """The chain as the daemon's current job sees it: height, difficulty, hashprice."""
    found = context(request).network()
    if found is None:
        raise error(503, "no job from bitcoind yet")
    return respond(found)


async def worker_hashrate(request: web.Request) -> web.Response:
    window = window_param(request)
    _, aid = await miner_id(request)
    name = request.match_info["worker"]
    wid = await read(request, queries.worker_id, aid, name)
    if wid is None:
        raise error(404, f"no worker {name!r} of this account")
    points = await read(request, queries.hashrate_series, now_of(request), window, aid, wid)
    return respond(views.series(window, queries.SERIES[window][1], points))


async def miner_workers(request: web.Request) -> web.Response:
    """Every worker of the account: hashrate, online, last seen, best share, user agent."""
    _, aid = await miner_id(request)
    rows = await read(request, queries.workers, aid, now_of(request))
    return respond(models.WorkerList(items=[views.worker(w) for w in rows]))


async def miner_daily_earnings(request: web.Request) -> web.Response:
    page = page_of(request)
    name, _ = await miner_id(request)
    rows = await read(request, queries.daily_earnings, name, page)
    return respond(models.DailyEarningList(items=[views.daily(r) for r in rows], **vars(page)))


async def miner_proof(request: web.Request) -> web.Response:
    """The miner's Merkle-sum proof for one settlement that credited it (a block hash, or an
    FPPS booking's period end: a credit's `reference`); `verify.py` checks it. Its miner
    token or admin: the proof holds the account's secret salt."""
    from poold.ledger.credit_proofs import credit_proof

    name = request.match_info["account"]
    await require(request, miner=name)
    ref = request.match_info["reference"]
    if not (ref.isdigit() or (len(ref) == 64 and all(c in "0123456789abcdef" for c in ref))):
        raise error(400, f"reference must be a block hash or an FPPS period end, got {ref!r}")
    found = await read(request, credit_proof, name, ref)
    if found is None:
        raise error(404, f"no credit line of {name!r} in a settlement {ref!r}")
    return respond_document(models.Proof, found)


async def credit_roots(request: web.Request) -> web.Response:
    """The public chain of miner-credit commitments, newest first."""
    from poold.ledger.credit_proofs import credit_roots as chain

    page = page_of(request)
    items = await read(request, chain, page.limit, page.offset)
    return respond(models.CreditRootList.model_validate({"items": items, **vars(page)}))


async def miner_settings(request: web.Request) -> web.Response:
    """GET: the account's payout address and threshold; PUT {address?, min_payout_sat?}
    changes them (a miner token of this account, or admin)."""
    from poold.chain.address import address_to_script
    from poold.ledger.payouts import set_account

    name = request.match_info["account"]
    await require(request, miner=name)
    if request.method == "PUT":
        body = await body_of(request, models.PayoutSettingsIn)
        address, minimum = body.address, body.min_payout_sat
        if address is None and minimum is None:
            raise error(400, "the body takes address and/or min_payout_sat: neither was given")
        if address is not None:
            try:
                address_to_script(address, context(request).cfg.pool.network)
            except ValueError as exc:
                raise error(400, f"address {address!r}: {exc}") from None
        engine = engine_of(request)
        await asyncio.to_thread(set_account, engine, name, address=address, min_payout_sat=minimum)
    address, minimum = await read(request, queries.payout_setting, name)
    default = context(request).cfg.payouts.min_payout_sat
    return respond(views.payout_settings(name, address, minimum, default))
