"""Token periods: gather one period's inputs from the ledger, settle them with
`accounting.token_settle`, and post the result once (key `tokens:<period start>`).

Inputs, all from the ledger:
  - the fleet's earnings: PPLNS credits of blocks found in the period (once each is
    confirmed; the settlement waits while one is pending) and FPPS bookings whose period ends
    inside it, for the configured fleet accounts;
  - the fleet's delivered TH/s: its slices' summed difficulty x 2**32 / period / 10**12;
  - token balances at the start and the transfers during the period;
  - the period's BTC/USD price (entered by the operator; the settlement waits without it);
  - each holder's debt carried out of the previous period.
Posting (satoshis, debits positive), balanced because E - retained = pot = sum of gross:
  + E_a               miner:<fleet account>:spendable   (the fleet's earnings are taken)
  - retained          operator:retained                 (hashrate beyond the tokens)
  - electricity/service operator:electricity, operator:service
  - paid_h            holder:<h>                        (what the pool now owes holder h)
  + debt_out - debt_in holder:<h>:debt                  (a receivable from the holder)
  + written_off       operator:written_off
Imports accounting, the config and the ledger; no network, no node.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

import structlog
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine

from accounting import TokenSettlement, mean_hashprice, token_settle
from accounting.money import largest_remainder
from poold.config import TokensConfig
from poold.ledger import journal
from poold.ledger.db import bulk_insert_tuples, fenced, ledger_entry
from poold.ledger.journal import AlreadyPosted, post
from poold.ledger.models import (
    STATEMENT_AMOUNTS,
    Account,
    Block,
    JournalEntry,
    JournalLine,
    Settlement,
    ShareSlice,
    TokenPeriod,
    TokenPrice,
    TokenStatement,
    TokenTransfer,
)
from poold.ledger.network import hashprices
from poold.ledger.settle import BLOCK_KEYS, CREDIT_KINDS
from poold.ledger.slices.exact import exact_sums
from poold.tokens.proofs import commit_period, published_inputs
from poold.tokens.transfers import TokenError, balances_at, transfers_between
from poold.tokens.work import WorkDirs, WorkMismatch, WorkWait, commit_work

log = structlog.get_logger(__name__)


def period_of(t: int, cfg: TokensConfig) -> tuple[int, int]:
    """The period [start, end) containing unix time t."""
    start = (t - cfg.cutoff_s) // cfg.period_s * cfg.period_s + cfg.cutoff_s
    return start, start + cfg.period_s


@ledger_entry
def set_price(engine: Engine, period_start: int, btc_usd: Fraction, cfg: TokensConfig) -> None:
    """Enter (or correct, until the period is settled) the BTC/USD rate of a period."""
    set_prices(engine, [(period_start, btc_usd)], cfg)


@ledger_entry
def set_prices(engine: Engine, prices: list[tuple[int, Fraction]], cfg: TokensConfig) -> None:
    """Several periods' rates in one transaction: all are entered, or none."""
    with fenced(engine) as conn:
        for period_start, btc_usd in prices:
            if period_of(period_start, cfg)[0] != period_start:
                raise TokenError(f"period_start {period_start} is not the start of a period")
            if btc_usd <= 0:
                raise TokenError(f"btc_usd for {period_start} must be > 0")
            if conn.execute(
                select(TokenPeriod.period_start).where(TokenPeriod.period_start == period_start)
            ).first():
                raise TokenError(f"period {period_start} is already settled: its price is final")
            conn.execute(delete(TokenPrice).where(TokenPrice.period_start == period_start))
            conn.execute(insert(TokenPrice).values(period_start=period_start, btc_usd=str(btc_usd)))


@dataclass(frozen=True)
class PeriodInputs:
    earnings: dict[str, int]  # fleet account -> satoshis earned in the period
    delivered_th_per_s: Fraction
    btc_usd: Fraction
    opening: dict[str, int | Fraction]
    transfers: list[tuple[int, str | None, str | None, int | Fraction]]
    debt_in: dict[str, int]


def _earnings(conn: Connection, fleet: tuple[str, ...], start: int, end: int) -> dict[str, int]:
    want = {journal.miner(a): a for a in fleet}
    pending = conn.execute(
        select(Block.hash)
        .join(Account, Block.account_id == Account.id)
        .join(
            JournalEntry,
            (JournalEntry.reference == Block.hash) & JournalEntry.kind.in_(CREDIT_KINDS),
        )
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .where(
            Block.found_ms >= start * 1000,
            Block.found_ms < end * 1000,
            Block.status == "pending",
            JournalLine.account.in_(list(want)),
        )
        .limit(1)
    ).scalar()
    if pending is not None:
        raise _Wait(f"block {pending} found in the period is not mature yet")
    unsettled = conn.execute(
        select(Block.hash)
        .outerjoin(
            Settlement,
            or_(*(Settlement.key == prefix + Block.hash for prefix in BLOCK_KEYS.values())),
        )
        .where(
            Block.found_ms >= start * 1000,
            Block.found_ms < end * 1000,
            Block.accepted.is_(True),
            Settlement.id.is_(None),
        )
        .limit(1)
    ).scalar()
    if unsettled is not None:
        raise _Wait(f"block {unsettled} found in the period is not settled yet")
    out: dict[str, int] = {}
    pplns = conn.execute(
        select(JournalLine.account, func.sum(JournalLine.amount_sat))
        .join(JournalEntry, JournalLine.entry_id == JournalEntry.id)
        .join(Block, JournalEntry.reference == Block.hash)
        .where(
            JournalEntry.kind.in_(CREDIT_KINDS),
            Block.status == "confirmed",
            Block.found_ms >= start * 1000,
            Block.found_ms < end * 1000,
            JournalLine.account.in_(list(want)),
        )
        .group_by(JournalLine.account)
    )
    for account, total in pplns:
        out[want[account]] = out.get(want[account], 0) - int(total)
    # FPPS bookings are referenced by their period end in unix seconds (10 digits until 2286,
    # so text order is number order).
    fpps = conn.execute(
        select(JournalLine.account, func.sum(JournalLine.amount_sat))
        .join(JournalEntry, JournalLine.entry_id == JournalEntry.id)
        .where(
            JournalEntry.kind == "fpps_period",
            func.length(JournalEntry.reference) == len(str(end)),
            JournalEntry.reference > str(start),
            JournalEntry.reference <= str(end),
            JournalLine.account.in_(list(want)),
        )
        .group_by(JournalLine.account)
    )
    for account, total in fpps:
        out[want[account]] = out.get(want[account], 0) - int(total)
    return {a: v for a, v in out.items() if v}


def _delivered_th_per_s(conn: Connection, fleet: tuple[str, ...], start: int, end: int) -> Fraction:
    conds = [
        Account.name.in_(list(fleet)),
        ShareSlice.slice_start >= start,
        ShareSlice.slice_start < end,
    ]
    joins = ((Account, ShareSlice.account_id == Account.id),)
    work = sum(exact_sums(conn, [], conds, joins).values(), Fraction(0))
    return work * 2**32 / (end - start) / 10**12


class _Wait(Exception):
    """The period cannot be settled right yet; the message says what it waits for."""


def gather(conn: Connection, cfg: TokensConfig, start: int, end: int) -> PeriodInputs:
    price = conn.execute(
        select(TokenPrice.btc_usd).where(TokenPrice.period_start == start)
    ).scalar()
    if price is None:
        raise _Wait(f"no BTC/USD price for the period starting {start}: `poold tokens price`")
    previous = conn.execute(
        select(TokenStatement.holder, TokenStatement.debt_out_sat).where(
            TokenStatement.period_start == start - cfg.period_s
        )
    ).all()
    return PeriodInputs(
        earnings=_earnings(conn, cfg.fleet_accounts, start, end),
        delivered_th_per_s=_delivered_th_per_s(conn, cfg.fleet_accounts, start, end),
        btc_usd=Fraction(price),
        opening=balances_at(conn, start),
        transfers=transfers_between(conn, start, end),
        debt_in={h: int(d) for h, d in previous if d},
    )


def _atoms(amount: int | Fraction, q: int) -> int:
    """amount x q as an int (q is a multiple of every denominator), in integer arithmetic."""
    if isinstance(amount, int):
        return amount * q
    return amount.numerator * (q // amount.denominator)


def compute(inputs: PeriodInputs, cfg: TokensConfig, start: int, end: int) -> TokenSettlement:
    """`token_settle` on the period's inputs. Fractional token amounts are first scaled to whole
    atoms (and TH per token divided by the same factor), which is the same arithmetic but
    takes accounting's integer fast path; the lines are then labelled with that factor, so
    their token-seconds read in tokens again."""
    q = math.lcm(
        *(v.denominator for v in inputs.opening.values() if isinstance(v, Fraction)),
        *(t[3].denominator for t in inputs.transfers if isinstance(t[3], Fraction)),
    )
    opening: Mapping[str, int | Fraction] = inputs.opening
    transfers: list[tuple[int, str | None, str | None, int | Fraction]] = inputs.transfers
    if q > 1:
        opening = {h: _atoms(v, q) for h, v in inputs.opening.items()}
        transfers = [(t, a, b, _atoms(x, q)) for t, a, b, x in inputs.transfers]
    result = token_settle(
        start,
        end,
        opening,
        transfers,
        th_per_token=cfg.th_per_token / q,
        w_per_th=cfg.w_per_th,
        usd_per_kwh=cfg.usd_per_kwh,
        btc_usd=inputs.btc_usd,
        delivered_th_per_s=inputs.delivered_th_per_s,
        period_earnings_sat=sum(inputs.earnings.values()),
        service_usd_per_th_day=cfg.service_usd_per_th_day,
        discount=cfg.discount,
        negative_policy=cfg.negative_policy,
        debt_in=inputs.debt_in,
    )
    if q > 1:
        for line in result.lines.values():
            line.atoms_per_token *= q
    return result


@dataclass(frozen=True)
class PeriodResult:
    period_start: int
    settled: TokenSettlement | None  # None: already settled, or waiting (see `waiting`)
    waiting: str | None = None


@ledger_entry
def settle_period(
    engine: Engine,
    cfg: TokensConfig,
    period_start: int,
    *,
    now: float | None = None,
    through_ms: int | None = None,
    work_dirs: WorkDirs = (),
) -> PeriodResult:
    """Settle the period starting at `period_start` once; a second call changes nothing.
    With `through_ms` (the daemon's gate: every node's shares before it are ingested) a
    period ending after it waits. With `work_dirs` (and `work_proof` on) the period's
    work-proof root over every node's leaf file goes into its published inputs; it waits for
    them."""
    start, end = period_of(period_start, cfg)
    if start != period_start:
        raise TokenError(f"{period_start} is not the start of a period")
    now = time.time() if now is None else now
    if now < end + cfg.settle_delay_s:
        return PeriodResult(
            start, None, f"the period ends at {end}; settled {cfg.settle_delay_s} s after"
        )
    if through_ms is not None and through_ms < end * 1000:
        return PeriodResult(
            start,
            None,
            f"the period ends at {end}, but the shares of every node are ingested only "
            f"through {through_ms / 1000:.3f}",
        )
    key = f"tokens:{start}"
    try:
        with fenced(engine) as conn:
            if conn.execute(select(Settlement.id).where(Settlement.key == key)).first():
                return PeriodResult(start, None)
            try:
                inputs = gather(conn, cfg, start, end)
                work = {}
                if work_dirs and cfg.work_proof:
                    delivered = inputs.delivered_th_per_s
                    try:
                        work = commit_work(
                            conn, start, end, work_dirs, cfg.fleet_accounts, delivered
                        )
                    except WorkMismatch as why:  # settled without a work root, said loudly
                        log.warning("work_proof_skipped", period_start=start, reason=str(why))
            except (_Wait, WorkWait) as wait:
                return PeriodResult(start, None, str(wait))
            result = compute(inputs, cfg, start, end)
            entry_id = _post(conn, start, key, inputs, result)
            conn.execute(
                insert(TokenPeriod).values(
                    period_start=start,
                    period_end=end,
                    entry_id=entry_id,
                    btc_usd=str(inputs.btc_usd),
                    delivered_th_per_s=str(inputs.delivered_th_per_s),
                    nominal_th_seconds=str(result.nominal_th_seconds),
                    delivery_ratio=str(result.delivery_ratio),
                    earnings_sat=sum(inputs.earnings.values()),
                    holders_pot_sat=result.holders_pot_sat,
                    operator_retained_sat=result.operator_retained_sat,
                )
            )
            if result.lines:
                bulk_insert_tuples(
                    conn,
                    TokenStatement.__table__,  # type: ignore[arg-type]
                    ["holder", "period_start", "token_seconds", *STATEMENT_AMOUNTS],
                    [
                        (
                            h,
                            start,
                            str(line.token_seconds),
                            line.gross_sat,
                            line.electricity_sat,
                            line.service_sat,
                            line.net_sat,
                            line.debt_in_sat,
                            line.paid_sat,
                            line.debt_out_sat,
                            line.written_off_sat,
                        )
                        for h, line in sorted(result.lines.items())
                    ],
                )
            # The statements' Merkle-sum root and its link in the chain, in this transaction.
            q = next(iter(result.lines.values())).atoms_per_token if result.lines else 1
            published = published_inputs(
                cfg,
                start,
                end,
                atoms_per_token=q,
                btc_usd=inputs.btc_usd,
                delivered_th_per_s=inputs.delivered_th_per_s,
                earnings_sat=sum(inputs.earnings.values()),
                holders_pot_sat=result.holders_pot_sat,
            )
            published.update(work)
            shortfall = _make_good(conn, cfg, start, end, key, inputs, result)
            if shortfall is not None:
                published.update(shortfall[0])
            commit_period(conn, start, published, result)
            return PeriodResult(start, result)
    except AlreadyPosted:
        return PeriodResult(start, None)  # another process settled it first


def _make_good(
    conn: Connection,
    cfg: TokensConfig,
    start: int,
    end: int,
    key: str,
    inputs: PeriodInputs,
    result: TokenSettlement,
) -> tuple[dict[str, object], dict[str, int]] | None:
    """The make-good of a period delivered under the threshold (`[tokens] make_good`): the
    shortfall TH*s (nominal - delivered) valued at the period's network hashprice (subsidy +
    average fees over difficulty, time-weighted), floored to the satoshi, no pool fee, split
    by token-seconds with the largest remainder and posted once (key `make_good:<start>`) from
    the operator's account, which may go negative. Returns the published inputs it adds and
    each holder's part (also written on their statements); None when none is due."""
    if not cfg.make_good or not result.lines or result.delivery_ratio >= cfg.delivery_threshold:
        return None
    hashprice, covered = mean_hashprice(hashprices(conn, start, end), start, end)
    if hashprice is None or covered == 0:
        raise _Wait(f"no network sample for the period starting {start}: its make-good is "
                    "valued at the network's hashprice")  # fmt: skip
    shortfall = result.nominal_th_seconds - inputs.delivered_th_per_s * (end - start)
    value = shortfall * hashprice / 86400
    total = value.numerator // value.denominator
    seconds = {h: line.token_seconds for h, line in result.lines.items()}
    held = sum(seconds.values(), Fraction(0))
    parts = largest_remainder(total, {h: total * ts / held for h, ts in seconds.items()})
    if total:
        lines = [(journal.holder(h), -v) for h, v in sorted(parts.items()) if v]
        lines.append((journal.operator("make_good"), total))
        post(conn, kind="token_make_good", reference=str(start), key=f"make_good:{start}",
             lines=lines)  # fmt: skip
    for h, v in parts.items():
        if v:
            conn.execute(
                update(TokenStatement)
                .where(TokenStatement.holder == h, TokenStatement.period_start == start)
                .values(make_good_sat=v)
            )
    return {
        "delivery_threshold": str(cfg.delivery_threshold),
        "make_good_sat": total,
        "network_hashprice": str(hashprice),
    }, parts


def _post(
    conn: Connection, start: int, key: str, inputs: PeriodInputs, result: TokenSettlement
) -> int:
    lines = [(journal.miner(a), e) for a, e in sorted(inputs.earnings.items())]
    lines.append((journal.operator("retained"), -result.operator_retained_sat))
    elec = service = written_off = 0
    for h, line in sorted(result.lines.items()):
        elec += line.electricity_sat
        service += line.service_sat
        written_off += line.written_off_sat
        if line.paid_sat:
            lines.append((journal.holder(h), -line.paid_sat))
        if line.debt_out_sat != line.debt_in_sat:
            lines.append((journal.holder(h, debt=True), line.debt_out_sat - line.debt_in_sat))
    lines += [
        (journal.operator("electricity"), -elec),
        (journal.operator("service"), -service),
        (journal.operator("written_off"), written_off),
    ]
    lines = [(a, v) for a, v in lines if v]
    return post(conn, kind="token_period", reference=str(start), key=key, lines=lines)


@ledger_entry
def settle_due(
    engine: Engine,
    cfg: TokensConfig,
    *,
    now: float | None = None,
    through_ms: int | None = None,
    work_dirs: WorkDirs = (),
) -> list[PeriodResult]:
    """Settle every period that is due, oldest first, from the one after the last settled (or
    the first with a transfer); stops at the first that has to wait, and returns it last."""
    now = time.time() if now is None else now
    with engine.connect() as conn:
        last = conn.execute(select(func.max(TokenPeriod.period_start))).scalar()
        first_ts = conn.execute(select(func.min(TokenTransfer.ts))).scalar()
    if last is not None:
        start = int(last) + cfg.period_s
    elif first_ts is not None:
        start = period_of(int(first_ts), cfg)[0]
    else:
        return []
    out = []
    while start + cfg.period_s + cfg.settle_delay_s <= now:
        result = settle_period(
            engine, cfg, start, now=now, through_ms=through_ms, work_dirs=work_dirs
        )
        out.append(result)
        if result.waiting is not None:
            break
        start += cfg.period_s
    return out
