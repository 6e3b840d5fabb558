"""Read-only views of the ledger: pool, miner and holder pages, as typed rows.

Every function returns dataclasses of exact values (integer satoshis, Fractions, H/s rounded
down to an integer); how they are shown (JSON, decimals, CSV) is the API's business. Lists are
paginated by the caller's limit/offset and always ordered, newest first. Never writes; imports
no aiohttp and nothing of poold.tokens; holds no state (the caller owns the `MinuteCache`).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from accounting import StatementBenchmark, mean_hashprice, statement_benchmark
from poold.chain.targets import network_difficulty
from poold.ledger import journal
from poold.ledger.models import (
    STATEMENT_AMOUNTS,
    Account,
    Block,
    JournalEntry,
    JournalLine,
    Payout,
    PayoutItem,
    PayoutSetting,
    RejectCount,
    ShareSlice,
    SliceRollup,
    SliceSum,
    StatementRoot,
    TokenPeriod,
    TokenStatement,
    TokenTransfer,
    Worker,
)
from poold.ledger.network import hashprices
from poold.ledger.slices.exact import exact_sums

WINDOWS = {"10m": 600, "1h": 3600, "24h": 86400}


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def _rate(total: Fraction, seconds: int) -> int:
    value = total * 2**32 / seconds
    return value.numerator // value.denominator


def _sums(conn: Connection, since: int, account_id: int | None = None) -> dict[Any, Fraction]:
    """Summed difficulty per (account, worker) of slices starting at or after `since`."""
    conds = [ShareSlice.slice_start >= since]
    if account_id is not None:
        conds.append(ShareSlice.account_id == account_id)
    joins = (
        (Account, ShareSlice.account_id == Account.id),
        (Worker, ShareSlice.worker_id == Worker.id),
    )
    return exact_sums(conn, [Account.name, Worker.name], conds, joins)


@dataclass(frozen=True)
class Hashrates:
    total: dict[str, int]  # window label -> H/s
    workers: dict[str, dict[str, int]]  # "account.worker" -> window label -> H/s


def hashrates(conn: Connection, now: int, account_id: int | None = None) -> Hashrates:
    """H/s over 10 min / 1 h / 24 h (slices of complete minutes), total and per worker."""
    end = now // 60 * 60
    out = Hashrates({}, {})
    for label, span in WINDOWS.items():
        sums = _sums(conn, end - span, account_id)
        out.total[label] = _rate(sum(sums.values(), Fraction(0)), span)
        for (a, w), v in sums.items():
            out.workers.setdefault(f"{a}.{w}", {})[label] = _rate(v, span)
    return out


OLD_AFTER_S = 3600  # minutes older than this are summed from a per-process cache ...
OLD_REFRESH_S = 600  # ... rebuilt this often: a late slice for an old minute shows within it


@dataclass
class MinuteCache:
    """Pool-wide minute sums older than `OLD_AFTER_S`, kept by whoever calls `minute_sums`
    (the ledger process, or the API when it reads in threads): [since, horizon) as of
    `built`, per ledger URL."""

    entries: dict[str, tuple[int, int, float, dict[tuple[Any, ...], Fraction]]] = field(
        default_factory=dict
    )
    lock: threading.Lock = field(default_factory=threading.Lock)


def minute_sums(
    conn: Connection, since: int, end: int, cache: MinuteCache
) -> dict[tuple[Any, ...], Fraction]:
    """Pool-wide summed difficulty per (minute, network bits) for minutes >= `since`.

    A day of slices is millions of rows, and the pool page wants it every few seconds; but
    minutes older than an hour almost never change (only a backlog ingested late). So those are
    summed once and kept in `cache` for `OLD_REFRESH_S`; each call reads only the newer rows.
    """
    key = conn.engine.url.render_as_string(hide_password=True)
    with cache.lock:
        old = cache.entries.get(key)
        if old is None or old[0] > since or time.monotonic() - old[2] > OLD_REFRESH_S:
            horizon = max(since, end - OLD_AFTER_S)
            sums = exact_sums(
                conn,
                [ShareSlice.slice_start, ShareSlice.bits],
                [ShareSlice.slice_start >= since, ShareSlice.slice_start < horizon],
            )
            old = cache.entries[key] = (since, horizon, time.monotonic(), sums)
        out = {k: v for k, v in old[3].items() if k[0] >= since}
    recent = exact_sums(
        conn,
        [ShareSlice.slice_start, ShareSlice.bits],
        [ShareSlice.slice_start >= max(since, old[1])],
    )
    for k, v in recent.items():
        out[k] = out.get(k, Fraction(0)) + v
    return out


@dataclass(frozen=True)
class PoolOverview:
    hashrate_hs: dict[str, int]
    workers_online: int
    miners_online: int
    blocks: dict[str, int]  # status -> count
    round_effort: Fraction  # network difficulties since the last block's time (1 = average)
    window_fill: Fraction  # share of the PPLNS window the newest work covers, in [0, 1]


def pool_overview(
    conn: Connection, now: int, cache: MinuteCache, factor: Fraction = Fraction(2)
) -> PoolOverview:
    """The pool page from one pass over the slices: pool-wide sums per minute and network
    difficulty since the older of 24 h ago and the last block found, from which the hashrate
    windows, the round's effort and the PPLNS window fill all follow. Per worker only the last
    10 minutes are read (who is online), and minutes older than an hour come from a cache
    (`minute_sums`, kept in `cache`)."""
    end = now // 60 * 60
    blocks = conn.execute(select(Block.status, func.count()).group_by(Block.status)).all()
    last = conn.execute(select(func.max(Block.found_ms)).where(Block.accepted.is_(True))).scalar()
    round_start = 0 if last is None else int(last) // 60_000 * 60
    since = min(end - WINDOWS["24h"], round_start)
    minutes = minute_sums(conn, since, end, cache)
    totals = {
        label: _rate(sum((v for (t, _b), v in minutes.items() if t >= end - s), Fraction(0)), s)
        for label, s in WINDOWS.items()
    }
    # Online: a share in the last 10 minutes (a worker below 1 H/s, at a test chain's tiny
    # difficulties, is online too: its rate rounds to 0, its shares do not).
    online = [k for k, v in _sums(conn, end - WINDOWS["10m"]).items() if v > 0]
    scores = {k: v / network_difficulty(int(k[1])) for k, v in minutes.items()}
    # Effort: the work since the last block found, by share time, in network difficulties;
    # 1 = an average round (as each block's own effort, `slices.window.round_effort`): the
    # minutes after the block's from the minute sums, its own minute from its slices (ingest
    # cuts them at the block's time). Window fill: how much of `factor` network difficulties
    # the newest shares cover now (the rest would be unallocated).
    effort = sum((v for (t, _b), v in scores.items() if t > round_start), Fraction(0))
    if last is not None:
        tail = exact_sums(
            conn,
            [ShareSlice.bits],
            [ShareSlice.slice_start == round_start, ShareSlice.last_ms > int(last)],
        )
        effort += sum((v / network_difficulty(int(k[0])) for k, v in tail.items()), Fraction(0))
    # The window walks back from now until it holds `factor`: what it covers is the smaller of
    # `factor` and all the work up to now.
    covered = sum((v for (t, _b), v in scores.items() if t <= end), Fraction(0))
    if covered < factor and since > 0:  # older work may still be inside the window
        older = exact_sums(conn, [ShareSlice.bits], [ShareSlice.slice_start < since])
        covered += sum((v / network_difficulty(int(k[0])) for k, v in older.items()), Fraction(0))
    fill = min(Fraction(1), covered / factor)
    return PoolOverview(
        totals,
        len(online),
        len({a for a, _w in online}),
        {s: int(n) for s, n in blocks},
        effort,
        fill,
    )


@dataclass(frozen=True)
class BlockRow:
    height: int
    hash: str
    status: str
    reward_sat: int
    found_ms: int
    finder: str  # account.worker
    confirmations: int
    effort: Fraction | None = None  # the round's work in network difficulties (None: unsettled)


def blocks(conn: Connection, page: Page) -> list[BlockRow]:
    rows = conn.execute(
        select(
            Block.height,
            Block.hash,
            Block.status,
            Block.reward_sat,
            Block.found_ms,
            Account.name,
            Worker.name,
            Block.confirmations,
            Block.effort_num,
            Block.effort_den,
        )
        .join(Account, Block.account_id == Account.id)
        .join(Worker, Block.worker_id == Worker.id)
        .order_by(Block.found_ms.desc(), Block.id.desc())
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    return [
        BlockRow(int(h), bh, s, int(r), int(t), f"{a}.{w}", int(c), _fraction(en, ed))
        for h, bh, s, r, t, a, w, c, en, ed in rows
    ]


def _fraction(num: int | None, den: int | None) -> Fraction | None:
    return None if num is None or den is None else Fraction(int(num), int(den))


@dataclass(frozen=True)
class WorkerRow:
    name: str
    hashrate_hs: dict[str, int]  # window label -> H/s
    last_seen_ms: int | None  # its newest share the ledger holds (or worker record)
    best_hash: int | None  # its best share ever: the smallest header hash
    user_agent: str | None


LAST_SEEN_S = 30 * 86400  # a worker's newest share is looked for this far back


def workers(conn: Connection, aid: int, now: int) -> list[WorkerRow]:
    """Every worker of the account: hashrate, when last seen (its newest share in the last 30
    days, else the last worker record), best share difficulty, user agent."""
    rates = hashrates(conn, now, aid).workers
    seen = dict(
        conn.execute(
            select(ShareSlice.worker_id, func.max(ShareSlice.last_ms))
            .where(ShareSlice.account_id == aid, ShareSlice.slice_start >= now - LAST_SEEN_S)
            .group_by(ShareSlice.worker_id)
        ).all()
    )
    account = conn.execute(select(Account.name).where(Account.id == aid)).scalar_one()
    out = []
    for wid, name, agent, best, heard in conn.execute(
        select(Worker.id, Worker.name, Worker.user_agent, Worker.best_hash, Worker.seen_ms)
        .where(Worker.account_id == aid)
        .order_by(Worker.name)
    ):
        last = [int(v) for v in (seen.get(wid), heard) if v is not None]
        out.append(
            WorkerRow(
                name,
                {k: rates.get(f"{account}.{name}", {}).get(k, 0) for k in WINDOWS},
                max(last) if last else None,
                None if best is None else int(best, 16),
                agent,
            )
        )
    return out


def share_counters(conn: Connection) -> tuple[int, dict[str, int]]:
    """Shares accepted (every slice: the day sums of folded ones plus those not folded yet)
    and rejected by reason, over every node and restart."""
    folded = conn.execute(select(SliceRollup.folded_id)).scalar() or 0
    accepted = conn.execute(
        select(func.coalesce(func.sum(SliceSum.shares), 0)).where(
            SliceSum.span == 86400, SliceSum.account_id == 0
        )
    ).scalar()
    fresh = conn.execute(
        select(func.coalesce(func.sum(ShareSlice.shares), 0)).where(ShareSlice.id > folded)
    ).scalar()
    rejected = conn.execute(
        select(RejectCount.reason, func.sum(RejectCount.count)).group_by(RejectCount.reason)
    ).all()
    return int(accepted or 0) + int(fresh or 0), {r: int(n) for r, n in rejected}


def account_rejects(conn: Connection, name: str) -> dict[str, int]:
    return {
        r: int(n)
        for r, n in conn.execute(
            select(RejectCount.reason, RejectCount.count).where(RejectCount.account == name)
        )
    }


def account_id(conn: Connection, name: str) -> int | None:
    found = conn.execute(select(Account.id).where(Account.name == name)).scalar()
    return None if found is None else int(found)


@dataclass(frozen=True)
class MinerView:
    account: str
    hashrates: Hashrates
    shares_accepted: int
    immature_sat: int  # owed once its blocks mature
    spendable_sat: int  # owed now: a payout may pay it


def miner(conn: Connection, name: str, aid: int, now: int) -> MinerView:
    account = journal.miner(name)
    mine = JournalLine.account == account
    pending = journal.balances(conn, "pending", mine).get(account, 0)
    posted = journal.balances(conn, "posted", mine).get(account, 0)
    shares = conn.execute(
        select(func.coalesce(func.sum(ShareSlice.shares), 0)).where(ShareSlice.account_id == aid)
    ).scalar()
    return MinerView(
        name,
        hashrates(conn, now, aid),
        int(shares or 0),
        -pending,
        -posted,
    )


@dataclass(frozen=True)
class CreditRow:
    entry: int
    reason: str  # the journal entry's kind
    reference: str
    time_ms: int
    balance: str  # what the line counts as now: immature | spendable | voided
    amount_sat: int  # what the pool owes the miner more (negative: less)
    height: int | None = None  # the block's, for a line that refers to a found block


def credits(conn: Connection, name: str, page: Page) -> list[CreditRow]:
    """Every journal line of the miner's account, newest first, with what it counts as now:
    `spendable` (posted), `immature` (its block has not matured) or `voided` (orphaned)."""
    resolution = aliased(JournalEntry)
    rows = conn.execute(
        select(
            JournalEntry.id,
            JournalEntry.kind,
            JournalEntry.reference,
            JournalEntry.created_ms,
            JournalEntry.phase,
            resolution.phase,
            JournalLine.amount_sat,
            Block.height,
        )
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .outerjoin(resolution, resolution.pending_id == JournalEntry.id)
        .outerjoin(Block, Block.hash == JournalEntry.reference)
        .where(JournalLine.account == journal.miner(name))
        .order_by(JournalEntry.id.desc(), JournalLine.id.desc())
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    state = {"post": "spendable", "void": "voided", None: "immature"}
    return [
        CreditRow(
            int(i),
            k,
            ref,
            int(t),
            "spendable" if phase == "posted" else state[res],
            -int(v),
            None if h is None else int(h),
        )
        for i, k, ref, t, phase, res, v, h in rows
    ]


@dataclass(frozen=True)
class PayoutRow:
    payout: int
    status: str
    txid: str | None
    time_ms: int
    amount_sat: int
    address: str
    confirmations: int = 0


def payouts(conn: Connection, name: str, page: Page) -> list[PayoutRow]:
    """The payouts of a miner account or of `holder:<name>`, newest first."""
    rows = conn.execute(
        select(
            Payout.id,
            Payout.status,
            Payout.txid,
            Payout.created_ms,
            PayoutItem.amount_sat,
            PayoutItem.address,
            Payout.confirmations,
        )
        .join(PayoutItem, PayoutItem.payout_id == Payout.id)
        .where(PayoutItem.account == name)
        .order_by(Payout.id.desc())
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    return [
        PayoutRow(int(i), s, t, int(c), int(a), ad, int(n or 0)) for i, s, t, c, a, ad, n in rows
    ]


def holder_known(conn: Connection, holder: str) -> bool:
    return bool(
        conn.execute(
            select(TokenTransfer.id)
            .where((TokenTransfer.sender == holder) | (TokenTransfer.receiver == holder))
            .limit(1)
        ).first()
    )


@dataclass(frozen=True)
class StatementRow:
    period_start: int
    period_end: int
    token_seconds: Fraction
    th_per_s_nominal: Fraction  # what the holder's tokens promise, TH/s over the period
    th_per_s_delivered: Fraction  # ... and what the fleet delivered of it
    amounts: dict[str, int]  # STATEMENT_AMOUNTS, satoshis
    btc_usd: Fraction
    hashprice_sat_per_th_day: Fraction | None  # None: nothing delivered
    delivery_ratio: Fraction = Fraction(1)
    pot_sat: int = 0  # the period's holders' pot
    operator_retained_sat: int = 0
    inputs: dict[str, Any] | None = None  # the period's published inputs (rates), if committed
    blocks: tuple[str, ...] = ()  # the fleet's blocks whose credits the period counted
    fpps_periods: tuple[int, ...] = ()  # ... and the FPPS bookings (their period ends)
    # The network's hashprice over the period (time-weighted; None: no sample of it), the
    # seconds of the period it covers, and the line against it.
    network_hashprice: Fraction | None = None
    covered_s: int = 0
    benchmark: StatementBenchmark | None = None
    make_good_sat: int = 0  # the holder's part of the period's make-good


def _fleet_blocks(conn: Connection, start: int, end: int, miners: list[str]) -> tuple[str, ...]:
    """The blocks found in [start, end) whose credits went to the fleet: what the period's
    block earnings came from."""
    return tuple(
        conn.execute(
            select(Block.hash)
            .join(JournalEntry, JournalEntry.reference == Block.hash)
            .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
            .where(
                Block.found_ms >= start * 1000,
                Block.found_ms < end * 1000,
                Block.status == "confirmed",
                JournalLine.account.in_(miners),
            )
            .distinct()
            .order_by(Block.hash)
        ).scalars()
    )


def _fleet_bookings(conn: Connection, miners: list[str]) -> list[int]:
    """The ends of the FPPS bookings that credited the fleet, oldest first."""
    refs = conn.execute(
        select(JournalEntry.reference)
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .where(JournalEntry.kind == "fpps_period", JournalLine.account.in_(miners))
        .distinct()
    ).scalars()
    return sorted(int(r) for r in refs)


def statements(
    conn: Connection,
    holder: str,
    page: Page,
    th_per_token: Fraction,
    fleet: tuple[str, ...] = (),
    pool_fee: Fraction = Fraction(0),
) -> list[StatementRow]:
    """The holder's statements, newest first, each with what is behind it and its benchmark
    against the network's hashprice (`accounting.statement_benchmark`, at `pool_fee`)."""
    rows = conn.execute(
        select(
            TokenPeriod.period_start,
            TokenPeriod.period_end,
            TokenPeriod.delivery_ratio,
            TokenPeriod.delivered_th_per_s,
            TokenPeriod.earnings_sat,
            TokenPeriod.btc_usd,
            TokenPeriod.holders_pot_sat,
            TokenPeriod.operator_retained_sat,
            StatementRoot.inputs,
            TokenStatement.token_seconds,
            TokenStatement.make_good_sat,
            *(getattr(TokenStatement, f) for f in STATEMENT_AMOUNTS),
        )
        .join(TokenPeriod, TokenPeriod.period_start == TokenStatement.period_start)
        .outerjoin(StatementRoot, StatementRoot.period_start == TokenStatement.period_start)
        .where(TokenStatement.holder == holder)
        .order_by(TokenStatement.period_start.desc())
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    miners = [journal.miner(a) for a in fleet]
    bookings = _fleet_bookings(conn, miners)  # once, not per period
    samples = (
        hashprices(conn, min(int(r[0]) for r in rows), max(int(r[1]) for r in rows)) if rows else []
    )
    out: list[StatementRow] = []
    for (
        start,
        end,
        ratio_text,
        delivered_text,
        earnings,
        price,
        pot,
        retained,
        inputs_text,
        ts_text,
        make_good,
        *amounts,
    ) in rows:
        seconds = int(end) - int(start)
        nominal = Fraction(ts_text) * th_per_token / seconds
        delivered = Fraction(delivered_text)
        hashprice = Fraction(int(earnings)) / (delivered * seconds / 86400) if delivered else None
        blocks = _fleet_blocks(conn, int(start), int(end), miners)
        fpps = tuple(b for b in bookings if int(start) < b <= int(end))
        line = {f: int(v) for f, v in zip(STATEMENT_AMOUNTS, amounts, strict=True)}
        network, covered = mean_hashprice(samples, int(start), int(end))
        benchmark = (
            None
            if network is None
            else statement_benchmark(
                nominal_th_seconds=nominal * seconds,
                delivery_ratio=Fraction(ratio_text),
                hashprice_sat_per_th_day=network,
                pool_fee=pool_fee,
                gross_sat=line["gross_sat"],
                electricity_sat=line["electricity_sat"],
                service_sat=line["service_sat"],
            )
        )
        out.append(
            StatementRow(
                int(start),
                int(end),
                Fraction(ts_text),
                nominal,
                nominal * Fraction(ratio_text),
                line,
                Fraction(price),
                hashprice,
                Fraction(ratio_text),
                int(pot),
                int(retained),
                None if inputs_text is None else json.loads(inputs_text),
                blocks,
                fpps,
                network,
                covered,
                benchmark,
                int(make_good or 0),
            )
        )
    return out


@dataclass(frozen=True)
class HolderSummary:
    holder: str
    tokens: Fraction  # held now
    totals: dict[str, int]  # STATEMENT_AMOUNTS summed over every settled period
    balance_sat: int  # owed to the holder now
    sent_sat: int = 0  # paid out on chain (payouts sent or confirmed)


def holder_summary(conn: Connection, holder: str, now: int) -> HolderSummary:
    totals = conn.execute(
        select(
            *(func.coalesce(func.sum(getattr(TokenStatement, f)), 0) for f in STATEMENT_AMOUNTS)
        ).where(TokenStatement.holder == holder)
    ).one()
    held: int | Fraction = 0
    for sender, amount in conn.execute(
        select(TokenTransfer.sender, TokenTransfer.amount).where(
            TokenTransfer.ts <= now,
            (TokenTransfer.sender == holder) | (TokenTransfer.receiver == holder),
        )
    ):
        held += -Fraction(amount) if sender == holder else Fraction(amount)
    owed = conn.execute(
        select(func.coalesce(func.sum(JournalLine.amount_sat), 0)).where(
            JournalLine.account == journal.holder(holder)
        )
    ).scalar()
    sent = conn.execute(
        select(func.coalesce(func.sum(PayoutItem.amount_sat), 0))
        .join(Payout, Payout.id == PayoutItem.payout_id)
        .where(
            PayoutItem.account == journal.holder(holder),
            Payout.status.in_(("sent", "confirmed")),
        )
    ).scalar()
    return HolderSummary(
        holder,
        Fraction(held),
        {f: int(v) for f, v in zip(STATEMENT_AMOUNTS, totals, strict=True)},
        -int(owed or 0),
        int(sent or 0),
    )


#: Chart windows: (seconds covered, seconds per point).
SERIES = {
    "1h": (3600, 60),
    "24h": (86400, 1800),
    "7d": (7 * 86400, 3 * 3600),
    "30d": (30 * 86400, 12 * 3600),
}


@dataclass(frozen=True)
class SeriesPoint:
    t: int  # start of the point, unix seconds
    hs: int


def hashrate_series(
    conn: Connection,
    now: int,
    window: str,
    account_id: int | None = None,
    worker_id: int | None = None,
) -> list[SeriesPoint]:
    """H/s per point over the window, oldest first, zeros included. The last point includes
    the current minute so far (a chart's newest point is partial; the 10m/1h/24h figures of
    `hashrates` use complete minutes only)."""
    span, step = SERIES[window]
    end = (now // 60 + 1) * 60
    start = end - span
    conds = [ShareSlice.slice_start >= start, ShareSlice.slice_start < end]
    if account_id is not None:
        conds.append(ShareSlice.account_id == account_id)
    if worker_id is not None:
        conds.append(ShareSlice.worker_id == worker_id)
    totals = [Fraction(0)] * (span // step)
    for (t,), v in exact_sums(conn, [ShareSlice.slice_start], conds).items():
        totals[(int(t) - start) // step] += v
    return [SeriesPoint(start + i * step, _rate(v, step)) for i, v in enumerate(totals)]


def payout_counts(conn: Connection) -> dict[str, int]:
    """Payout runs by status (for /metrics)."""
    return {
        s: int(n)
        for s, n in conn.execute(select(Payout.status, func.count()).group_by(Payout.status))
    }


@dataclass(frozen=True)
class TransferRow:
    ext_id: str
    ts_s: int  # unix seconds
    sender: str | None  # None: minted
    receiver: str | None  # None: burned
    amount: str  # exact, as imported
    balance_after: Fraction


def holder_transfers(conn: Connection, holder: str, page: Page) -> list[TransferRow]:
    """The holder's token movements, newest first, each with its balance after it."""
    rows = conn.execute(
        select(
            TokenTransfer.id,
            TokenTransfer.ext_id,
            TokenTransfer.ts,
            TokenTransfer.sender,
            TokenTransfer.receiver,
            TokenTransfer.amount,
        )
        .where((TokenTransfer.sender == holder) | (TokenTransfer.receiver == holder))
        .order_by(TokenTransfer.ts, TokenTransfer.id)
    ).all()
    balance = Fraction(0)
    out: list[TransferRow] = []
    for _i, ext_id, ts, sender, receiver, amount in rows:
        balance += -Fraction(amount) if sender == holder else Fraction(amount)
        out.append(TransferRow(ext_id, int(ts), sender, receiver, amount, balance))
    out.reverse()
    return out[page.offset : page.offset + page.limit]


def newest_period(conn: Connection) -> int | None:
    """Start of the newest settled token period (an index lookup)."""
    found = conn.execute(select(func.max(TokenPeriod.period_start))).scalar()
    return None if found is None else int(found)


def worker_id(conn: Connection, account_id: int, name: str) -> int | None:
    found: int | None = conn.execute(
        select(Worker.id).where(Worker.account_id == account_id, Worker.name == name)
    ).scalar()
    return found


@dataclass(frozen=True)
class PoolPayment:
    payout: int
    status: str
    txid: str | None
    time_ms: int
    total_sat: int
    outputs: int


def pool_payments(conn: Connection, page: Page) -> list[PoolPayment]:
    """Every payout run of the pool, newest first (no addresses: a miner's own are on its
    page)."""
    outputs = (
        select(PayoutItem.payout_id, func.count().label("n"))
        .group_by(PayoutItem.payout_id)
        .subquery()
    )
    rows = conn.execute(
        select(
            Payout.id,
            Payout.status,
            Payout.txid,
            Payout.created_ms,
            Payout.total_sat,
            func.coalesce(outputs.c.n, 0),
        )
        .outerjoin(outputs, outputs.c.payout_id == Payout.id)
        .order_by(Payout.id.desc())
        .limit(page.limit)
        .offset(page.offset)
    ).all()
    return [PoolPayment(int(i), st, tx, int(t), int(v), int(n)) for i, st, tx, t, v, n in rows]


@dataclass(frozen=True)
class DailyEarning:
    day_start: int  # unix seconds, 00:00 UTC
    credited_sat: int  # credits posted or pending that day (voided ones left out)
    spendable_sat: int  # of those, what already counts as spendable
    debited_sat: int = 0  # debits other than payouts (a fleet account's token periods), > 0
    paid_out_sat: int = 0  # what payouts took from the account, > 0


def daily_earnings(conn: Connection, name: str, page: Page) -> list[DailyEarning]:
    """A miner's account per UTC day, newest first (by when each entry was made): credits,
    debits and payouts, so that credited - debited - paid out is the day's change of what the
    pool owes it (voided credits left out)."""
    resolution = aliased(JournalEntry)
    rows = conn.execute(
        select(
            JournalEntry.created_ms,
            JournalEntry.kind,
            JournalEntry.phase,
            resolution.phase,
            JournalLine.amount_sat,
        )
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .outerjoin(resolution, resolution.pending_id == JournalEntry.id)
        .where(JournalLine.account == journal.miner(name))
    ).all()
    days: dict[int, list[int]] = {}
    for created, kind, phase, res, amount in rows:
        if phase == "pending" and res == "void":
            continue
        acc = days.setdefault(int(created) // 86_400_000 * 86_400, [0, 0, 0, 0])
        if amount < 0:  # a credit: what the pool owes more
            acc[0] += -int(amount)
            if phase == "posted" or res == "post":
                acc[1] += -int(amount)
        elif kind == "payout":
            acc[3] += int(amount)
        else:
            acc[2] += int(amount)
    ordered = sorted(days.items(), reverse=True)[page.offset : page.offset + page.limit]
    return [DailyEarning(d, c, sp, db, po) for d, (c, sp, db, po) in ordered]


def payout_setting(conn: Connection, name: str) -> tuple[str | None, int | None]:
    row = conn.execute(
        select(PayoutSetting.address, PayoutSetting.min_payout_sat).where(
            PayoutSetting.account == name
        )
    ).first()
    return (None, None) if row is None else (row[0], row[1])


#: Fleet series steps: label -> seconds.
FLEET_STEPS = {"1d": 86_400, "1h": 3600}


@dataclass(frozen=True)
class FleetPeriod:
    start: int  # unix seconds
    end: int  # the period's end, or now for the period under way
    complete: bool  # over: it ended before now
    step: int  # the period's length (a day or an hour)
    delivered_th_per_s: Fraction  # the fleet's measured hashrate over [start, end)
    hashprice: Fraction | None  # the network's, time-weighted (None: no sample of it)
    covered_s: int  # seconds of [start, end) the network's samples cover
    earned_sat: int  # FPPS bookings ending in it and credits of blocks found in it
    immature_sat: int  # of which block credits not matured yet

    @property
    def fpps_value(self) -> Fraction | None:
        """Delivered TH·days x hashprice: the work's value at the network's hashprice."""
        if self.hashprice is None:
            return None
        return self.delivered_th_per_s * (self.end - self.start) * self.hashprice / 86_400


def fleet_series(
    conn: Connection, fleet: tuple[str, ...], step: int, page: Page, now: int
) -> list[FleetPeriod]:
    """The token fleet per UTC day (or hour), newest first, from its first share to the
    period under way: delivered TH/s (as token settlement measures it), the network's
    hashprice, and what the fleet accounts were credited (FPPS bookings whose period ends in
    it, credits of the blocks found in it; voided ones left out)."""
    ids = [
        int(i)
        for i in conn.execute(select(Account.id).where(Account.name.in_(list(fleet)))).scalars()
    ]
    if not ids:
        return []
    first, last = conn.execute(
        select(func.min(ShareSlice.slice_start), func.max(ShareSlice.slice_start)).where(
            ShareSlice.account_id.in_(ids)
        )
    ).one()
    if first is None:
        return []
    # Through the period under way, or the last share's if this clock is behind the ledger.
    newest = max(now, int(last)) // step * step
    oldest = int(first) // step * step
    starts = list(range(newest, oldest - 1, -step))[page.offset : page.offset + page.limit]
    if not starts:
        return []
    lo, hi = starts[-1], starts[0] + step
    bucket = (ShareSlice.slice_start - ShareSlice.slice_start % step).label("bucket")
    work = exact_sums(
        conn,
        [bucket],
        [
            ShareSlice.account_id.in_(ids),
            ShareSlice.slice_start >= lo,
            ShareSlice.slice_start < hi,
        ],
    )
    earned, immature = _fleet_earnings(conn, [journal.miner(a) for a in fleet], lo, hi, step)
    samples = hashprices(conn, lo, hi)
    out = []
    for start in starts:
        # The period under way is measured so far; one after now (a clock behind the
        # ledger's shares) in full.
        end = start + step if now <= start else min(start + step, now)
        done = work.get((start,), Fraction(0))
        network, covered = mean_hashprice(samples, start, end)
        out.append(
            FleetPeriod(
                start,
                end,
                start + step <= now,
                step,
                done * 2**32 / (end - start) / 10**12,
                network,
                covered,
                earned.get(start, 0),
                immature.get(start, 0),
            )
        )
    return out


def _fleet_earnings(
    conn: Connection, miners: list[str], lo: int, hi: int, step: int
) -> tuple[dict[int, int], dict[int, int]]:
    """Per period start in [lo, hi): what the fleet was credited, and of it what is still
    immature (the token settlement's rule: FPPS by booking end, blocks by when found)."""
    earned: dict[int, int] = {}
    immature: dict[int, int] = {}
    for reference, amount in conn.execute(
        select(JournalEntry.reference, JournalLine.amount_sat)
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .where(
            JournalEntry.kind == "fpps_period",
            func.length(JournalEntry.reference) == len(str(hi)),
            JournalEntry.reference > str(lo),
            JournalEntry.reference <= str(hi),
            JournalLine.account.in_(miners),
        )
    ):
        end = int(reference)
        start = (end - 1) // step * step  # a booking ending on a period's end is that period's
        earned[start] = earned.get(start, 0) - int(amount)
    resolution = aliased(JournalEntry)
    for found_ms, amount, res in conn.execute(
        select(Block.found_ms, JournalLine.amount_sat, resolution.phase)
        .join(JournalEntry, JournalEntry.reference == Block.hash)
        .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
        .outerjoin(resolution, resolution.pending_id == JournalEntry.id)
        .where(
            JournalEntry.kind.in_(("pplns_block", "prop_block", "solo_block")),
            Block.found_ms >= lo * 1000,
            Block.found_ms < hi * 1000,
            JournalLine.account.in_(miners),
        )
    ):
        if res == "void":
            continue
        start = int(found_ms) // 1000 // step * step
        earned[start] = earned.get(start, 0) - int(amount)
        if res is None:
            immature[start] = immature.get(start, 0) - int(amount)
    return earned, immature
