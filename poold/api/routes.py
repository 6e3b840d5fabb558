"""Every route of the API in one table: method, path, handler, who may call it, its parameters,
request body and response models, and its errors. `app.make_app` routes from it and
`openapi.document` is generated from it, so a route cannot be served undocumented.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel

from poold.api import admin, holders, ops, pool
from poold.api import models as m

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Who may call a route: anyone; anyone unless `[api] public_miners = false`; a holder's or
#: miner's own token (or admin); an admin token.
Access = Literal["public", "miners", "owner", "admin"]


@dataclass(frozen=True)
class Param:
    name: str
    where: Literal["path", "query"]
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    response: type[BaseModel] | str  # a model, or a media type the route answers in
    access: Access = "public"
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    body: type[BaseModel] | None = None
    listener: Literal["public", "admin"] = "public"


NAME = {"type": "string", "minLength": 1, "maxLength": 64}
ACCOUNT = (Param("account", "path", NAME, "the miner account (the part before the dot)"),)
HOLDER = (Param("holder", "path", NAME, "the token holder"),)
PAGE = (
    Param("limit", "query", {"type": "integer", "minimum": 1}, "at most [api] max_page"),
    Param("offset", "query", {"type": "integer", "minimum": 0}),
)
WINDOW = (Param("window", "query", {"enum": ["1h", "24h", "7d", "30d"], "default": "24h"}),)
STEP = (Param("step", "query", {"enum": ["1d", "1h"], "default": "1d"}, "a UTC day or hour"),)
OWNER_ERRORS = (401, 403)
MINER_ERRORS = (401, 404)  # 401 only when miners are not public

ROUTES: tuple[Route, ...] = (
    Route(
        "get", "/api/v1/events", ops.events,
        "Live events (Server-Sent Events): block_found, block_settled, block_confirmed, "
        "block_orphaned, block_restored for anyone; fpps_booked and settlement_posted with a "
        "holder or admin token; payout_sent with an admin token only",
        "text/event-stream", errors=(401,),
    ),
    Route("get", "/api/v1/pool", pool.pool, "Pool overview", m.Pool),
    Route(
        "get", "/api/v1/pool/blocks", pool.pool_blocks, "Blocks found, newest first",
        m.BlockList, params=PAGE, errors=(400,),
    ),
    Route(
        "get", "/api/v1/pool/hashrate", pool.pool_hashrate, "Pool hashrate over time",
        m.Series, params=WINDOW, errors=(400,),
    ),
    Route(
        "get", "/api/v1/pool/nodes", pool.pool_nodes,
        "The stratum nodes feeding the ledger and how far settlement may go", m.NodeList,
    ),
    Route(
        "get", "/api/v1/pool/payments", pool.pool_payments,
        "Every payout run, newest first (txid, time, total, outputs)",
        m.PoolPaymentList, params=PAGE, errors=(400,),
    ),
    Route(
        "get", "/api/v1/network", pool.network,
        "The chain as the current job sees it: height, difficulty, hashprice", m.Network,
        errors=(503,),
    ),
    Route(
        "get", "/api/v1/credits/roots", pool.credit_roots,
        "The chain of miner-credit commitments (every block split and FPPS booking), newest "
        "first, with each settlement's inputs and the blocks carrying it",
        m.CreditRootList, params=PAGE, errors=(400,),
    ),
    Route(
        "get", "/api/v1/miners/{account}", pool.miner, "A miner account", m.Miner,
        access="miners", params=ACCOUNT, errors=MINER_ERRORS,
    ),
    Route(
        "get", "/api/v1/miners/{account}/hashrate", pool.miner_hashrate,
        "A miner's hashrate over time", m.Series, access="miners", params=ACCOUNT + WINDOW,
        errors=(400, *MINER_ERRORS),
    ),
    Route(
        "get", "/api/v1/miners/{account}/workers", pool.miner_workers,
        "Its workers: hashrate, online, last seen, best share difficulty, user agent",
        m.WorkerList, access="miners", params=ACCOUNT, errors=MINER_ERRORS,
    ),
    Route(
        "get", "/api/v1/miners/{account}/workers/{worker}/hashrate", pool.worker_hashrate,
        "One worker's hashrate over time", m.Series, access="miners",
        params=(*ACCOUNT, Param("worker", "path", NAME), *WINDOW),
        errors=(400, *MINER_ERRORS),
    ),
    Route(
        "get", "/api/v1/miners/{account}/credits", pool.miner_credits,
        "Its credits and debits, newest first (every line of its account)",
        m.CreditList, access="miners", params=ACCOUNT + PAGE,
        errors=(400, *MINER_ERRORS),
    ),
    Route(
        "get", "/api/v1/miners/{account}/credits.csv", pool.miner_credits_csv,
        "Every credit, debit and payout line as CSV, oldest first, exact, with what the pool "
        "owes after each line", "text/csv", access="miners", params=ACCOUNT,
        errors=MINER_ERRORS,
    ),
    Route(
        "get", "/api/v1/miners/{account}/payouts", pool.miner_payouts, "Its payouts",
        m.MinerPayoutList, access="miners", params=ACCOUNT + PAGE,
        errors=(400, *MINER_ERRORS),
    ),
    Route(
        "get", "/api/v1/miners/{account}/earnings/daily", pool.miner_daily_earnings,
        "A miner's account per UTC day, newest first: credited, debited, paid out",
        m.DailyEarningList, access="miners", params=ACCOUNT + PAGE, errors=(400, *MINER_ERRORS),
    ),
    Route(
        "get", "/api/v1/miners/{account}/proofs/{reference}", pool.miner_proof,
        "The miner's proof for one settlement that credited it (a credit's reference: a "
        "block hash or an FPPS period end): check it with verify.py",
        m.Proof, access="owner",
        params=(
            *ACCOUNT,
            Param("reference", "path", {"type": "string", "pattern": r"^([0-9a-f]{64}|\d+)$"}),
        ),
        errors=(400, *OWNER_ERRORS, 404),
    ),
    Route(
        "get", "/api/v1/miners/{account}/settings", pool.miner_settings,
        "The account's payout address and threshold", m.PayoutSettings, access="owner",
        params=ACCOUNT, errors=OWNER_ERRORS,
    ),
    Route(
        "put", "/api/v1/miners/{account}/settings", pool.miner_settings,
        "Change the payout address and/or threshold", m.PayoutSettings, access="owner",
        params=ACCOUNT, errors=(400, *OWNER_ERRORS), body=m.PayoutSettingsIn,
    ),
    Route(
        "get", "/api/v1/holders/{holder}", holders.holder, "A token holder", m.Holder,
        access="owner", params=HOLDER, errors=(*OWNER_ERRORS, 404),
    ),
    Route(
        "get", "/api/v1/holders/{holder}/statements", holders.holder_statements,
        "Its statements (one a token period), newest first, each with its benchmark against "
        "the network's hashprice", m.StatementList, access="owner",
        params=HOLDER + PAGE, errors=(400, *OWNER_ERRORS, 404),
    ),
    Route(
        "get", "/api/v1/holders/{holder}/statements.csv", holders.holder_statements_csv,
        "All its statements as CSV, oldest first: exact values, each displayed one's text "
        "in a *_display column beside it", "text/csv", access="owner",
        params=HOLDER, errors=(*OWNER_ERRORS, 404),
    ),
    Route(
        "get", "/api/v1/holders/{holder}/transfers", holders.holder_transfers,
        "Its token movements, newest first, with the balance after each",
        m.TransferList, access="owner", params=HOLDER + PAGE,
        errors=(400, *OWNER_ERRORS, 404),
    ),
    Route(
        "get", "/api/v1/holders/{holder}/payouts", holders.holder_payouts, "Its payouts",
        m.MinerPayoutList, access="owner", params=HOLDER + PAGE,
        errors=(400, *OWNER_ERRORS, 404),
    ),
    Route(
        "get", "/api/v1/holders/{holder}/proofs/{period_start}", holders.holder_proof,
        "The holder's proof for one settled period: check it with verify.py", m.Proof,
        access="owner",
        params=(*HOLDER, Param("period_start", "path", {"type": "integer", "minimum": 0})),
        errors=(400, *OWNER_ERRORS, 404),
    ),
    Route(
        "get", "/api/v1/fleet/daily", holders.fleet_daily,
        "The token fleet per UTC day (or hour, step=1h), newest first: delivered TH/s, the "
        "network's hashprice (subsidy + average fees over difficulty), the FPPS value of the "
        "work at it, and what the fleet was credited: what a hashrate forward settles against",
        m.FleetDayList, params=(*STEP, *PAGE), errors=(400, 404),
    ),
    Route(
        "get", "/api/v1/fleet/daily.csv", holders.fleet_daily_csv,
        "The same series as CSV, oldest first: exact values, display columns beside them",
        "text/csv", params=STEP, errors=(400, 404),
    ),
    Route(
        "get", "/api/v1/tokens/periods/{period_start}/work-proof", holders.work_proof,
        "The period's proof of delivered hashrate: k shares drawn by a block mined after the "
        "anchor, with their paths, jobs and headers (no worker names); check it with verify.py",
        m.WorkProof,
        params=(Param("period_start", "path", {"type": "integer", "minimum": 0}),),
        errors=(400, 404),
    ),
    Route(
        "get", "/api/v1/statements/roots", holders.statement_roots,
        "The chain of statement commitments, newest first, with each period's inputs",
        m.RootList, params=PAGE, errors=(400,),
    ),
    Route(
        "post", "/api/v1/admin/transfers", admin.admin_transfers,
        "Import token transfers (a JSON list), idempotent by id", m.ImportResult,
        access="admin", errors=(400, *OWNER_ERRORS), body=m.TransfersIn, listener="admin",
    ),
    Route(
        "post", "/api/v1/admin/prices", admin.admin_prices, "Set a period's BTC/USD price",
        m.Price, access="admin", errors=(400, *OWNER_ERRORS), body=m.PriceIn,
        listener="admin",
    ),
    Route(
        "get", "/api/v1/admin/tokens", admin.admin_tokens,
        "Every live API token: id, scope, created (never the secret)", m.TokenList,
        access="admin", errors=OWNER_ERRORS, listener="admin",
    ),
    Route(
        "delete", "/api/v1/admin/tokens/{id}", admin.admin_revoke_token,
        "Revoke a token (at once here, within 5 s in other processes)", m.Revoked,
        access="admin", params=(Param("id", "path", {"type": "integer", "minimum": 0}),),
        errors=(400, *OWNER_ERRORS, 404), listener="admin",
    ),
)  # fmt: skip
