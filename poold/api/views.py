"""The ledger's rows (and the current job's view of the chain) as the API's response models:
query dataclasses (`poold.ledger.queries`) in, `poold.api.models` objects out, which the
handlers serialize and the OpenAPI document describes. Exact values stay exact (satoshis as
integers, exact decimals or fractions as text); every number the dashboard shows gets its
display string from `poold.api.display`. Imports the query row types, the models, the display
rules, the job type and difficulty math only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from poold.api import display as d
from poold.api import models as m
from poold.chain.targets import network_difficulty
from poold.jobs.job import Job
from poold.ledger.models import STATEMENT_AMOUNTS
from poold.ledger.queries import (
    WINDOWS,
    BlockRow,
    CreditRow,
    DailyEarning,
    FleetPeriod,
    HolderSummary,
    MinerView,
    PayoutRow,
    PoolOverview,
    PoolPayment,
    SeriesPoint,
    StatementRow,
    TransferRow,
    WorkerRow,
)

#: Settlements whose lines have a Merkle-sum proof (`/miners/{account}/proofs/{reference}`).
PROVEN_KINDS = frozenset({"pplns_block", "prop_block", "solo_block", "fpps_period"})
DIFF1 = 0xFFFF * 2**208


def exact(x: Fraction | int, display: str) -> m.Exact:
    return m.Exact(exact=d.exact(x), display=display)


def rates(hs: Mapping[str, int]) -> tuple[m.Rates, m.RatesDisplay]:
    """Every window's H/s (a window without shares is 0) and its display."""
    full = {k: hs.get(k, 0) for k in WINDOWS}
    return (
        m.Rates.model_validate(full),
        m.RatesDisplay.model_validate({k: d.hashrate(v) for k, v in full.items()}),
    )


def overview(
    o: PoolOverview, *, scheme: str, fee: Fraction, accepted: int, rejected: Mapping[str, int]
) -> m.Pool:
    hs, shown = rates(o.hashrate_hs)
    return m.Pool(
        hashrate_hs=hs,
        hashrate_display=shown,
        workers_online=o.workers_online,
        miners_online=o.miners_online,
        blocks=dict(o.blocks),
        scheme=scheme,  # the config allows only the four
        fee=str(fee),
        fee_percent=d.exact(fee * 100),
        round_effort=exact(o.round_effort, d.percent(o.round_effort, 1)),
        pplns_window_fill=exact(o.window_fill, d.percent(o.window_fill, 1)),
        pplns_unallocated=exact(1 - o.window_fill, d.percent(1 - o.window_fill, 1)),
        # From the ledger: every node, across restarts (rejects arrive within a minute).
        shares=m.ShareCounts(accepted=accepted, rejected=dict(rejected)),
        display=m.PoolDisplay(
            shares_accepted=d.group(accepted),
            shares_rejected=d.group(sum(rejected.values())),
            fee=d.percent(fee),
        ),
    )


def block(b: BlockRow) -> m.Block:
    mature = b.status in ("confirmed", "pending")
    return m.Block(
        height=b.height,
        hash=b.hash,
        status=b.status,
        reward_sat=b.reward_sat,
        found_ms=b.found_ms,
        finder=b.finder,
        confirmations=b.confirmations,
        effort=None if b.effort is None else exact(b.effort, d.percent(b.effort, 1)),
        display=m.BlockDisplay(
            found=d.utc_ms(b.found_ms),
            reward=d.btc(b.reward_sat),
            confirmations=f"{min(max(0, b.confirmations), 100)} / 100" if mature else "—",
        ),
    )


def best_share(best_hash: int) -> m.BestShare:
    """The best share by its hash; its difficulty rounded down to 6 significant digits."""
    value = Fraction(DIFF1, max(1, best_hash))
    digits = len(str(value.numerator // value.denominator))
    places = max(0, 6 - digits) if value >= 1 else _leading_zeros(value) + 6
    floor = value.numerator * 10**places // value.denominator
    return m.BestShare(
        hash=f"{best_hash:064x}",
        difficulty=d.exact(Fraction(floor, 10**places)),
        display=d.difficulty(value),
    )


def _leading_zeros(x: Fraction) -> int:
    n = 0
    while x * 10 ** (n + 1) < 1:
        n += 1
    return n


def worker(w: WorkerRow) -> m.Worker:
    hs, shown = rates(w.hashrate_hs)
    return m.Worker(
        worker=w.name,
        hashrate_hs=hs,
        hashrate_display=shown,
        online=w.hashrate_hs["10m"] > 0,
        last_seen_ms=w.last_seen_ms,
        best_share=None if w.best_hash is None else best_share(w.best_hash),
        user_agent=w.user_agent,
        display=m.WorkerDisplay(
            last_seen="—" if w.last_seen_ms is None else d.utc_ms(w.last_seen_ms)
        ),
    )


def miner(v: MinerView, rejected: Mapping[str, int]) -> m.Miner:
    hs, shown = rates(v.hashrates.total)
    return m.Miner(
        account=v.account,
        hashrate_hs=hs,
        hashrate_display=shown,
        workers={k: rates(r)[0] for k, r in v.hashrates.workers.items()},
        shares_accepted=v.shares_accepted,
        shares_rejected=dict(rejected),
        balance_sat=m.BalanceSat(immature=v.immature_sat, spendable=v.spendable_sat),
        display=m.MinerDisplay(
            immature=d.sat(v.immature_sat),
            spendable=d.sat(v.spendable_sat),
            shares_accepted=d.group(v.shares_accepted),
            shares_rejected=d.group(sum(rejected.values())),
        ),
    )


def describe(c: CreditRow) -> str:
    """A journal line in words, for the miner's list of credits and debits."""
    short = c.reference[:12] + "…" if len(c.reference) == 64 else c.reference
    block = f"block {c.height}" if c.height is not None else f"block {short}"
    match c.reason:
        case "pplns_block" | "prop_block" | "solo_block":
            return f"{c.reason.split('_')[0].upper()} share of {block}"
        case "fpps_period":
            return f"FPPS booking to {d.utc(int(c.reference))}" if c.reference.isdigit() else short
        case "token_period" if c.reference.isdigit():
            return f"token holders' share, period from {d.utc(int(c.reference))}"
        case "payout":
            return f"payout, txid {short}"
        case "pplns_reversal":
            return f"{block} orphaned: its credit reversed"
        case "block_recredit":
            return f"{block} back on the chain: credited again"
    return f"{c.reason} {short}"


def credit(c: CreditRow) -> m.Credit:
    return m.Credit(
        entry=c.entry,
        reason=c.reason,
        reference=c.reference,
        description=describe(c),
        time_ms=c.time_ms,
        balance=c.balance,  # one of the three, by construction
        amount_sat=c.amount_sat,
        proof=c.reason in PROVEN_KINDS and c.amount_sat > 0,
        display=m.LineDisplay(time=d.utc_ms(c.time_ms), amount=d.sat(c.amount_sat)),
    )


def payout(p: PayoutRow) -> m.MinerPayout:
    return m.MinerPayout(
        payout=p.payout,
        status=p.status,
        txid=p.txid,
        confirmations=p.confirmations,
        time_ms=p.time_ms,
        amount_sat=p.amount_sat,
        address=p.address,
        display=m.LineDisplay(time=d.utc_ms(p.time_ms), amount=d.sat(p.amount_sat)),
    )


RATE_DISPLAY = {
    "w_per_th": lambda x: f"{d.plain(x)} W/TH",
    "usd_per_kwh": lambda x: f"{d.usd(x)}/kWh",
    "discount": lambda x: d.percent(x),
    "service_usd_per_th_day": lambda x: f"{d.usd(x)}/TH/day",
}


def statement_rates(inputs: Mapping[str, Any]) -> m.StatementRates | None:
    if not all(k in inputs for k in RATE_DISPLAY):
        return None
    values = {k: Fraction(inputs[k]) for k in RATE_DISPLAY}
    return m.StatementRates.model_validate(
        {k: exact(v, RATE_DISPLAY[k](v)) for k, v in values.items()}
    )


def electricity_kwh(s: StatementRow) -> Fraction | None:
    """The energy behind the holder's electricity cost: W/TH x effective TH·h / 1000."""
    inputs = s.inputs or {}
    if "w_per_th" not in inputs:
        return None
    th_hours = s.token_seconds * Fraction(inputs["th_per_token"]) * s.delivery_ratio / 3600
    return Fraction(inputs["w_per_th"]) * th_hours / 1000


#: Where a period's proof of delivered hashrate is published.
WORK_PROOF_PATH = "/api/v1/tokens/periods/{start}/work-proof"


def statement(s: StatementRow, threshold: Fraction = Fraction(95, 100)) -> m.Statement:
    """One statement line with everything behind it: the period's times, the holder's nominal
    and delivered hashrate and the delivery ratio, the rates and the energy behind the costs,
    the period's pot and what the operator kept, the blocks and FPPS bookings it counted, the
    benchmark against the network's hashprice, each amount in sats and BTC."""
    a = s.amounts
    hp = s.hashprice_sat_per_th_day
    kwh = electricity_kwh(s)
    rates_in = statement_rates(s.inputs or {})
    shown_rates = (
        "—"
        if rates_in is None
        else f"{rates_in.w_per_th.display} · {rates_in.usd_per_kwh.display} less "
        f"{rates_in.discount.display} · service {rates_in.service_usd_per_th_day.display}"
    )
    return m.Statement(
        period_start=s.period_start,
        period_end=s.period_end,
        period=m.PeriodTimes(
            start=datetime.fromtimestamp(s.period_start, UTC).isoformat(),
            end=datetime.fromtimestamp(s.period_end, UTC).isoformat(),
            display=d.period(s.period_start, s.period_end),
        ),
        token_seconds=str(s.token_seconds),
        ths_nominal=str(s.th_per_s_nominal),
        ths_delivered=str(s.th_per_s_delivered),
        hashrate=m.DeliveredHashrate(
            nominal_th_per_s=exact(s.th_per_s_nominal, d.hashrate_th(s.th_per_s_nominal)),
            delivered_th_per_s=exact(s.th_per_s_delivered, d.hashrate_th(s.th_per_s_delivered)),
            delivery_ratio=exact(s.delivery_ratio, d.percent(s.delivery_ratio)),
        ),
        **a,
        btc=m.StatementBtc.model_validate(
            {f.removesuffix("_sat") + "_btc": d.btc_amount(v) for f, v in a.items()}
        ),
        btc_usd=str(s.btc_usd),
        btc_usd_decimal=exact(s.btc_usd, d.usd(s.btc_usd)),
        hashprice_sat_per_th_day=None if hp is None else str(hp),
        rates=rates_in,
        electricity_kwh=None if kwh is None else exact(kwh, d.energy(kwh)),
        period_pot_sat=s.pot_sat,
        operator_retained_sat=s.operator_retained_sat,
        blocks=list(s.blocks),
        fpps_periods=list(s.fpps_periods),
        benchmark=benchmark(s),
        make_good_sat=s.make_good_sat,
        delivery_flagged=s.delivery_ratio < threshold,
        work_proof=(
            WORK_PROOF_PATH.format(start=s.period_start)
            if "work_root" in (s.inputs or {})
            else None
        ),
        display=m.StatementDisplay(
            **{f.removesuffix("_sat"): d.sat(v) for f, v in a.items()},
            btc_usd=d.usd(s.btc_usd),
            period_pot=d.sat(s.pot_sat),
            rates=shown_rates,
        ),
    )


#: The benchmark's columns in the statement CSV (empty for a period with no network sample).
BENCHMARK_CSV = (
    "network_hashprice_sat_per_th_day",
    "hashprice_value_sat",
    "delivery_gap_sat",
    "pool_fee_sat",
    "luck_and_rounding_sat",
    "costs_sat",
    "costs_share_of_gross",
    "net_vs_hashprice_sat",
    "gross_vs_hashprice",
)

STATEMENT_CSV_COLUMNS = [
    "period_start",
    "period_end",
    "period_display",
    "token_seconds",
    "nominal_th_per_s",
    "nominal_display",
    "delivered_th_per_s",
    "delivered_display",
    "delivery_ratio",
    "delivery_display",
    "delivery_flagged",
    "make_good_sat",
    "work_proof",
    *STATEMENT_AMOUNTS,
    "paid_btc",
    "btc_usd",
    "btc_usd_display",
    "electricity_kwh",
    "electricity_kwh_display",
    *(f"{k}{suffix}" for k in RATE_DISPLAY for suffix in ("", "_display")),
    "period_pot_sat",
    "operator_retained_sat",
    "blocks",
    *(f"{k}{suffix}" for k in BENCHMARK_CSV for suffix in ("", "_display")),
]


def sat_exact(x: Fraction) -> m.Exact:
    """An exact amount of satoshis (maybe fractional), shown to the satoshi."""
    return exact(x, f"{d.fixed(x, 0)} sat")


def ratio(x: Fraction | None, places: int = 2) -> m.Exact | None:
    return None if x is None else exact(x, d.percent(x, places))


def benchmark(s: StatementRow) -> m.Benchmark | None:
    b, hp = s.benchmark, s.network_hashprice
    if b is None or hp is None:
        return None
    return m.Benchmark(
        hashprice_sat_per_th_day=exact(hp, d.hashprice(hp)),
        covered_s=s.covered_s,
        hashprice_value_sat=sat_exact(b.hashprice_value_sat),
        delivery_gap_sat=sat_exact(b.delivery_gap_sat),
        pool_fee_sat=sat_exact(b.pool_fee_sat),
        luck_and_rounding_sat=sat_exact(b.luck_and_rounding_sat),
        costs_sat=sat_exact(b.costs_sat),
        costs_share_of_gross=ratio(b.costs_share_of_gross),
        net_vs_hashprice_sat=sat_exact(b.net_vs_hashprice_sat),
        gross_vs_hashprice=ratio(b.gross_vs_hashprice),
    )


def fleet_period(p: FleetPeriod) -> m.FleetDay:
    value = p.fpps_value
    vs = None if value is None or not value else Fraction(p.earned_sat) / value
    return m.FleetDay(
        start=p.start,
        end=p.end,
        complete=p.complete,
        delivered_th_per_s=exact(p.delivered_th_per_s, d.hashrate_th(p.delivered_th_per_s)),
        hashprice_sat_per_th_day=None
        if p.hashprice is None
        else exact(p.hashprice, d.hashprice(p.hashprice)),
        covered_s=p.covered_s,
        fpps_value_sat=None if value is None else sat_exact(value),
        earned_sat=p.earned_sat,
        immature_sat=p.immature_sat,
        earned_vs_value=ratio(vs),
        display=m.FleetDayDisplay(
            period=d.period(p.start, p.start + p.step) + ("" if p.complete else " (so far)"),
            delivered=d.hashrate_th(p.delivered_th_per_s),
            hashprice="—" if p.hashprice is None else d.hashprice(p.hashprice),
            fpps_value="—" if value is None else f"{d.fixed(value, 0)} sat",
            earned=d.sat(p.earned_sat),
            earned_vs_value="—" if vs is None else d.percent(vs),
        ),
    )


FLEET_CSV_COLUMNS = [
    "start",
    "end",
    "complete",
    "period_display",
    "delivered_th_per_s",
    "delivered_display",
    "hashprice_sat_per_th_day",
    "hashprice_display",
    "covered_s",
    "fpps_value_sat",
    "fpps_value_display",
    "earned_sat",
    "immature_sat",
    "earned_display",
    "earned_vs_value",
    "earned_vs_value_display",
]


def fleet_csv(p: FleetPeriod) -> dict[str, Any]:
    """A fleet period as a CSV row (`FLEET_CSV_COLUMNS`): exact values, display beside."""
    day = fleet_period(p)
    hp, value, vs = day.hashprice_sat_per_th_day, day.fpps_value_sat, day.earned_vs_value
    return {
        "start": p.start,
        "end": p.end,
        "complete": "yes" if p.complete else "no",
        "period_display": day.display.period,
        "delivered_th_per_s": day.delivered_th_per_s.exact,
        "delivered_display": day.display.delivered,
        "hashprice_sat_per_th_day": "" if hp is None else hp.exact,
        "hashprice_display": day.display.hashprice,
        "covered_s": p.covered_s,
        "fpps_value_sat": "" if value is None else value.exact,
        "fpps_value_display": day.display.fpps_value,
        "earned_sat": p.earned_sat,
        "immature_sat": p.immature_sat,
        "earned_display": day.display.earned,
        "earned_vs_value": "" if vs is None else vs.exact,
        "earned_vs_value_display": day.display.earned_vs_value,
    }


def statement_csv(s: StatementRow, threshold: Fraction = Fraction(95, 100)) -> dict[str, Any]:
    """A CSV row (`STATEMENT_CSV_COLUMNS`): every value exact (integers, exact decimals or
    fractions), each displayed quantity's text in a `*_display` column beside it."""
    full = statement(s, threshold)
    h = full.hashrate
    kwh = full.electricity_kwh
    row: dict[str, Any] = {
        "period_start": s.period_start,
        "period_end": s.period_end,
        "period_display": full.period.display,
        "token_seconds": full.token_seconds,
        "nominal_th_per_s": h.nominal_th_per_s.exact,
        "nominal_display": h.nominal_th_per_s.display,
        "delivered_th_per_s": h.delivered_th_per_s.exact,
        "delivered_display": h.delivered_th_per_s.display,
        "delivery_ratio": h.delivery_ratio.exact,
        "delivery_display": h.delivery_ratio.display,
        "delivery_flagged": "yes" if full.delivery_flagged else "no",
        "make_good_sat": s.make_good_sat,
        "work_proof": full.work_proof or "",
        **s.amounts,
        "paid_btc": d.btc_amount(s.amounts["paid_sat"]),
        "btc_usd": full.btc_usd_decimal.exact,
        "btc_usd_display": full.btc_usd_decimal.display,
        "electricity_kwh": "" if kwh is None else kwh.exact,
        "electricity_kwh_display": "" if kwh is None else kwh.display,
    }
    for k in RATE_DISPLAY:
        rate = None if full.rates is None else getattr(full.rates, k)
        row[k] = "" if rate is None else rate.exact
        row[f"{k}_display"] = "" if rate is None else rate.display
    row |= {
        "period_pot_sat": s.pot_sat,
        "operator_retained_sat": s.operator_retained_sat,
        "blocks": " ".join(s.blocks),
    }
    for k in BENCHMARK_CSV:
        field = k.removeprefix("network_")
        value = None if full.benchmark is None else getattr(full.benchmark, field)
        row[k] = "" if value is None else value.exact
        row[f"{k}_display"] = "" if value is None else value.display
    return {k: row[k] for k in STATEMENT_CSV_COLUMNS}


CREDIT_CSV_COLUMNS = [
    "entry",
    "time_ms",
    "time_display",
    "reason",
    "reference",
    "description",
    "balance",
    "amount_sat",
    "amount_btc",
    "owed_after_sat",
    "owed_after_btc",
]


def credits_csv(rows: list[CreditRow]) -> list[dict[str, Any]]:
    """A miner account's lines oldest first, each with what the pool owes after it (voided
    lines count for nothing): the last line's owed_after is its balance, immature and
    spendable together."""
    owed = 0
    out = []
    for c in sorted(rows, key=lambda r: r.entry):
        if c.balance != "voided":
            owed += c.amount_sat
        out.append(
            {
                "entry": c.entry,
                "time_ms": c.time_ms,
                "time_display": d.utc_ms(c.time_ms),
                "reason": c.reason,
                "reference": c.reference,
                "description": describe(c),
                "balance": c.balance,
                "amount_sat": c.amount_sat,
                "amount_btc": d.btc_amount(c.amount_sat),
                "owed_after_sat": owed,
                "owed_after_btc": d.btc_amount(owed),
            }
        )
    return out


def holder(h: HolderSummary) -> m.Holder:
    t = h.totals
    return m.Holder(
        holder=h.holder,
        tokens=d.exact(h.tokens),
        balance_sat=h.balance_sat,
        sent_sat=h.sent_sat,
        totals=m.StatementAmounts.model_validate(dict(t)),
        display=m.HolderDisplay(
            tokens=d.exact(h.tokens),
            balance=d.sat(h.balance_sat),
            credited=d.sat(t["paid_sat"]),
            sent=d.sat(h.sent_sat),
            costs=d.sat(t["electricity_sat"] + t["service_sat"]),
        ),
    )


def series(window: str, step_s: int, points: list[SeriesPoint]) -> m.Series:
    """A chart's points with the unit that reads best for their largest value."""
    peak = max((p.hs for p in points), default=0)
    divisor, i = 1, 0
    while peak >= 1000 * divisor and i < len(d.HASH_UNITS) - 1:
        divisor, i = divisor * 1000, i + 1
    end = points[-1].t + step_s if points else 0
    return m.Series(
        window=window,  # checked by the handler
        step_s=step_s,
        end=end,
        scale=m.HashScale(unit=d.HASH_UNITS[i], divisor=divisor),
        points=[m.Point(t=p.t, hs=p.hs) for p in points],
    )


def transfer(t: TransferRow) -> m.Transfer:
    return m.Transfer.model_validate(
        {
            "id": t.ext_id,
            "ts": t.ts_s,
            "from": t.sender,
            "to": t.receiver,
            "amount": t.amount,
            "balance_after": d.exact(t.balance_after),
            "display": {"time": d.utc(t.ts_s)},
        }
    )


def pool_payment(p: PoolPayment) -> m.PoolPayment:
    return m.PoolPayment(
        payout=p.payout,
        status=p.status,
        txid=p.txid,
        time_ms=p.time_ms,
        total_sat=p.total_sat,
        outputs=p.outputs,
        display=m.LineDisplay(time=d.utc_ms(p.time_ms), amount=d.btc(p.total_sat)),
    )


def daily(e: DailyEarning) -> m.DailyEarning:
    return m.DailyEarning(
        day=datetime.fromtimestamp(e.day_start, UTC).date().isoformat(),
        day_start=e.day_start,
        credited_sat=e.credited_sat,
        spendable_sat=e.spendable_sat,
        debited_sat=e.debited_sat,
        paid_out_sat=e.paid_out_sat,
        display=m.DailyDisplay(
            credited=d.sat(e.credited_sat),
            spendable=d.sat(e.spendable_sat),
            debited=d.sat(e.debited_sat),
            paid_out=d.sat(e.paid_out_sat),
        ),
    )


def payout_settings(
    account: str, address: str | None, minimum: int | None, default: int
) -> m.PayoutSettings:
    effective = minimum if minimum is not None else default
    return m.PayoutSettings(
        account=account,
        address=address,
        min_payout_sat=minimum,
        effective_min_payout_sat=effective,
        display=m.SettingsDisplay(effective_min_payout=d.sat(effective)),
    )


def network(job: Job | None) -> m.Network | None:
    """The chain as the current job sees it (None: no job yet)."""
    if job is None:
        return None
    t = job.template
    difficulty = network_difficulty(t.bits)
    # Satoshis a TH/s earns a day at this template's value: value x TH x day / (D x 2**32).
    hashprice = Fraction(t.coinbase_value_sat * 10**12 * 86_400) / (difficulty * 2**32)
    return m.Network(
        height=t.height,
        prev_hash=t.prev_hash_hex,
        bits=f"{t.bits:08x}",
        difficulty=exact(difficulty, d.difficulty(difficulty)),
        coinbase_value_sat=t.coinbase_value_sat,
        fees_sat=t.fees_sat,
        transactions=len(t.transactions),
        hashprice_sat_per_th_day=exact(hashprice, d.hashprice(hashprice)),
        template_time=t.curtime,
        display=m.NetworkDisplay(
            height=d.group(t.height),
            block_value=d.btc(t.coinbase_value_sat),
            fees=d.btc(t.fees_sat),
        ),
    )


def event_summary(event: Mapping[str, Any]) -> str:
    """A live event in words, its time in UTC: what the dashboard's live feed shows."""
    when = d.utc_ms(int(event["time_ms"])) if "time_ms" in event else ""
    ref = str(event.get("reference", ""))
    short = ref[:16] + "…" if len(ref) == 64 else ref
    kind = event["type"]
    if kind == "block_found":
        verdict = "accepted" if event.get("accepted") else f"rejected ({event.get('reason')})"
        what = f"block {event.get('height')} found by {event.get('finder')}, {verdict}"
    elif kind == "fpps_booked" and ref.isdigit():
        what = f"FPPS booked to {d.utc(int(ref))}"
    elif kind == "settlement_posted" and ref.isdigit():
        what = f"token period from {d.utc(int(ref))} settled"
    elif kind == "payout_sent":
        what = f"payout sent, txid {short}"
    else:
        what = f"{kind.replace('_', ' ')} {short}".rstrip()
    return f"{when} · {what}" if when else what
