"""How the ledger's rows are shown: query dataclasses (`poold.ledger.queries`) to JSON-ready
dicts. Exact values stay exact: satoshis as integers, fractions as exact strings ("3/4");
only the pool page's effort and window fill are rounded, to six decimals, for display.
Rows whose fields are already their JSON (blocks, credits, payouts, chart points) go out as
they are. Imports the query row types only.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from poold.ledger.queries import (
    BlockRow,
    CreditRow,
    DailyEarning,
    HolderSummary,
    MinerView,
    Page,
    PayoutRow,
    PoolOverview,
    PoolPayment,
    SeriesPoint,
    StatementRow,
    TransferRow,
)


def _decimal6(x: Fraction) -> str:
    return f"{float(x):.6f}"


def listing(items: list[dict[str, Any]], page: Page) -> dict[str, Any]:
    return {"items": items, "limit": page.limit, "offset": page.offset}


def overview(o: PoolOverview) -> dict[str, Any]:
    return {
        "hashrate_hs": dict(o.hashrate_hs),
        "workers_online": o.workers_online,
        "miners_online": o.miners_online,
        "blocks": dict(o.blocks),
        "round_effort": _decimal6(o.round_effort),
        "pplns_window_fill": _decimal6(o.window_fill),
        "pplns_unallocated": _decimal6(1 - o.window_fill),
    }


def block(b: BlockRow) -> dict[str, Any]:
    return asdict(b)


def miner(m: MinerView) -> dict[str, Any]:
    return {
        "account": m.account,
        "hashrate_hs": m.hashrates.total,
        "workers": m.hashrates.workers,
        "shares_accepted": m.shares_accepted,
        "balance_sat": {"immature": m.immature_sat, "spendable": m.spendable_sat},
    }


def credit(c: CreditRow) -> dict[str, Any]:
    return asdict(c)


def payout(p: PayoutRow) -> dict[str, Any]:
    return asdict(p)


def statement(s: StatementRow) -> dict[str, Any]:
    hp = s.hashprice_sat_per_th_day
    return {
        "period_start": s.period_start,
        "period_end": s.period_end,
        "token_seconds": str(s.token_seconds),
        "ths_nominal": str(s.th_per_s_nominal),
        "ths_delivered": str(s.th_per_s_delivered),
        **s.amounts,
        "btc_usd": str(s.btc_usd),
        "hashprice_sat_per_th_day": None if hp is None else str(hp),
    }


def holder(h: HolderSummary) -> dict[str, Any]:
    return {
        "holder": h.holder,
        "tokens": str(h.tokens),
        "totals": dict(h.totals),
        "balance_sat": h.balance_sat,
    }


def point(p: SeriesPoint) -> dict[str, Any]:
    return asdict(p)


def transfer(t: TransferRow) -> dict[str, Any]:
    return {
        "id": t.ext_id,
        "ts": t.ts_s,
        "from": t.sender,
        "to": t.receiver,
        "amount": t.amount,
        "balance_after": str(t.balance_after),
    }


def pool_payment(p: PoolPayment) -> dict[str, Any]:
    return {
        "payout": p.payout,
        "status": p.status,
        "txid": p.txid,
        "time_ms": p.time_ms,
        "total_sat": p.total_sat,
        "outputs": p.outputs,
    }


def daily(d: DailyEarning) -> dict[str, Any]:
    return {
        "day": datetime.fromtimestamp(d.day_start, UTC).date().isoformat(),
        "day_start": d.day_start,
        "credited_sat": d.credited_sat,
        "spendable_sat": d.spendable_sat,
    }
