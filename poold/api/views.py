"""How the ledger's rows (and the current job's view of the chain) are shown: query
dataclasses (`poold.ledger.queries`) to JSON-ready dicts. Exact values stay exact: satoshis
as integers, exact decimals where a value has one, else fractions ("3/4"), with a rounded
display value beside them where people read them. Rows whose fields are already their JSON
(blocks, credits, payouts, chart points) go out as they are. Imports the query row types,
the job type and difficulty math only.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from poold.chain.targets import network_difficulty
from poold.jobs.job import Job
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
    WorkerRow,
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
    out = asdict(b)
    out["effort"] = None if b.effort is None else exact(b.effort, f"{float(b.effort) * 100:.1f}%")
    return out


def worker(w: WorkerRow) -> dict[str, Any]:
    best = w.best_difficulty
    return {
        "worker": w.name,
        "hashrate_hs": w.hashrate_hs,
        "online": w.hashrate_hs["10m"] > 0,
        "last_seen_ms": w.last_seen_ms,
        "best_difficulty": None if best is None else exact(best, si(best)),
        "user_agent": w.user_agent,
    }


def si(x: Fraction) -> str:
    """A big number in a few digits with a prefix: 1234567 -> '1.23M'."""
    value, prefix = float(x), ""
    for p in ("k", "M", "G", "T", "P", "E", "Z"):
        if abs(value) < 1000:
            break
        value, prefix = value / 1000, p
    return f"{value:.3g}{prefix}"


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


HASH_UNITS = ("H/s", "kH/s", "MH/s", "GH/s", "TH/s", "PH/s", "EH/s", "ZH/s")


def hashrate_display(th_per_s: Fraction) -> str:
    """TH/s in the unit that fits the number: 0.00063 TH/s is "630.00 MH/s", not "0.000"."""
    hs = th_per_s * 10**12
    i = 0
    while hs >= 1000 and i < len(HASH_UNITS) - 1:
        hs /= 1000
        i += 1
    return f"{float(hs):.2f} {HASH_UNITS[i]}"


def exact(x: Fraction, display: str | None = None, digits: int = 6) -> dict[str, str]:
    """An exact value and a rounded one to show: a terminating decimal when it has one."""
    return {"exact": decimal_or_fraction(x), "display": display or f"{float(x):.{digits}f}"}


def decimal_or_fraction(x: Fraction) -> str:
    """The exact decimal when x has one (its denominator is 2**a * 5**b), else 'n/d'."""
    d, twos, fives = x.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    if d != 1:
        return str(x)
    places = max(twos, fives)
    scaled = x.numerator * 10**places // x.denominator
    sign, digits = ("-" if scaled < 0 else ""), str(abs(scaled)).rjust(places + 1, "0")
    return sign + (digits[:-places] + "." + digits[-places:] if places else digits)


def btc(sat: int) -> str:
    return f"{'-' if sat < 0 else ''}{abs(sat) // 100_000_000}.{abs(sat) % 100_000_000:08d}"


def statement(s: StatementRow) -> dict[str, Any]:
    """One statement line with everything behind it: the period's times, the holder's nominal
    and delivered hashrate and the delivery ratio, the rates and the energy behind the costs,
    the period's pot and what the operator kept, the blocks and FPPS bookings it counted,
    each amount in sats and BTC. Exact values are exact decimals where they have one, else
    fractions, each beside a rounded display value."""
    hp = s.hashprice_sat_per_th_day
    inputs = s.inputs or {}
    kwh: Fraction | None = None
    if "w_per_th" in inputs:
        th_hours = s.token_seconds * Fraction(inputs["th_per_token"]) * s.delivery_ratio / 3600
        kwh = Fraction(inputs["w_per_th"]) * th_hours / 1000
    return {
        "period_start": s.period_start,
        "period_end": s.period_end,
        "period": {
            "start": datetime.fromtimestamp(s.period_start, UTC).isoformat(),
            "end": datetime.fromtimestamp(s.period_end, UTC).isoformat(),
        },
        "token_seconds": str(s.token_seconds),
        "ths_nominal": str(s.th_per_s_nominal),
        "ths_delivered": str(s.th_per_s_delivered),
        "hashrate": {
            "nominal_th_per_s": exact(s.th_per_s_nominal, hashrate_display(s.th_per_s_nominal)),
            "delivered_th_per_s": exact(
                s.th_per_s_delivered, hashrate_display(s.th_per_s_delivered)
            ),
            "delivery_ratio": exact(s.delivery_ratio, f"{float(s.delivery_ratio) * 100:.2f} %"),
        },
        **s.amounts,
        "btc": {f: btc(v) for f, v in s.amounts.items()},
        "btc_usd": str(s.btc_usd),
        "btc_usd_decimal": exact(s.btc_usd, digits=2),
        "hashprice_sat_per_th_day": None if hp is None else str(hp),
        "rates": {
            k: exact(Fraction(inputs[k]))
            for k in ("w_per_th", "usd_per_kwh", "discount", "service_usd_per_th_day")
            if k in inputs
        },
        "electricity_kwh": None if kwh is None else exact(kwh, digits=3),
        "period_pot_sat": s.pot_sat,
        "operator_retained_sat": s.operator_retained_sat,
        "blocks": list(s.blocks),
        "fpps_periods": list(s.fpps_periods),
    }


def statement_csv(s: StatementRow) -> dict[str, Any]:
    """A CSV row: the amounts, and exact decimals (display values) instead of fractions."""
    full = statement(s)
    row: dict[str, Any] = {
        "period_start": s.period_start,
        "period_end": s.period_end,
        "nominal_th_per_s": full["hashrate"]["nominal_th_per_s"]["display"],
        "delivered_th_per_s": full["hashrate"]["delivered_th_per_s"]["display"],
        "delivery_ratio": full["hashrate"]["delivery_ratio"]["display"],
        **s.amounts,
        "paid_btc": btc(s.amounts["paid_sat"]),
        "btc_usd": full["btc_usd_decimal"]["display"],
        "electricity_kwh": ""
        if full["electricity_kwh"] is None
        else full["electricity_kwh"]["display"],
        **{k: v["display"] for k, v in full["rates"].items()},
        "period_pot_sat": s.pot_sat,
        "operator_retained_sat": s.operator_retained_sat,
        "blocks": " ".join(s.blocks),
    }
    return row


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


def network(job: Job | None) -> dict[str, object] | None:
    """The chain as the current job sees it (None: no job yet): exact values beside rounded
    display ones."""
    if job is None:
        return None
    t = job.template
    difficulty = network_difficulty(t.bits)
    # Satoshis a TH/s earns a day at this template's value: value x TH x day / (D x 2**32).
    hashprice = Fraction(t.coinbase_value_sat * 10**12 * 86_400) / (difficulty * 2**32)
    return {
        "height": t.height,
        "prev_hash": t.prev_hash_hex,
        "bits": f"{t.bits:08x}",
        "difficulty": {"exact": str(difficulty), "display": f"{float(difficulty):.6g}"},
        "coinbase_value_sat": t.coinbase_value_sat,
        "fees_sat": t.fees_sat,
        "transactions": len(t.transactions),
        "hashprice_sat_per_th_day": {"exact": str(hashprice), "display": f"{float(hashprice):.3f}"},
        "template_time": t.curtime,
    }
