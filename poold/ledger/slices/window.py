"""The PPLNS window over share slices: which slices a block's split walks, and in what order.

The rule (`window_shares`, the reference): every slice up to and including the block's minute,
oldest first, ordered by content (minute, account id, worker id, bits) so the result never
depends on how ingest batched the log; rows with the same key are adjacent and belong to one
account, so merging them changes nothing.

`window` gives the same split input without reading the window's slices: it walks the pool's
per-minute sums (`sums`) newest first until the window is covered (exactly, in Fractions) —
that minute is the edge; the minutes after it count in full, so they are read as per-account
sums over the fewest aligned day/hour/10-minute blocks; a ragged 10-minute block at either
end is summed from at most five minutes of its slices (added, or subtracted from the whole
block's sum: `sums.cover`); only the edge minute's slices come back one by one.
`round_shares` is PROP's input, summed the same way: the minutes since the previous block.
`round_effort` (a block's effort, shown on the pool page) is finer: the work between the
previous block's time and this one's, by share time. Imports the ledger models, the slice
sums and difficulty math only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from poold.chain.targets import network_difficulty
from poold.ledger.models import Account, Block, ShareSlice, SliceSum
from poold.ledger.slices.exact import exact_sums
from poold.ledger.slices.sums import POOL, blocks, cover, fold, sums

#: A slice as the window sees it: (minute start s, account id, worker id, bits, difficulty).
SliceRow = tuple[int, int, int, int, Fraction]
Share = tuple[str, Fraction, Fraction]  # (account, difficulty, network difficulty)

FIRST_PAGE_S = 6 * 3600


def minute_of(found_ms: int) -> int:
    return found_ms // 60_000 * 60


class _Nets(dict[int, Fraction]):
    def __missing__(self, bits: int) -> Fraction:
        self[bits] = net = network_difficulty(bits)
        return net


_NETS = _Nets()


def window_shares(rows: Sequence[SliceRow], found_ms: int, names: Mapping[int, str]) -> list[Share]:
    """The reference rule over slices held in memory."""
    last = minute_of(found_ms)
    nets = _Nets()
    return [
        (names[a], diff, nets[bits])
        for _t, a, _w, bits, diff in sorted((r for r in rows if r[0] <= last), key=lambda r: r[:4])
    ]


def round_rows(
    rows: Sequence[SliceRow], found_ms: int, after: int | None, names: Mapping[int, str]
) -> list[Share]:
    """The reference PROP round over slices held in memory: minutes in (after, block minute]."""
    last = minute_of(found_ms)
    nets = _Nets()
    return [
        (names[a], diff, nets[bits])
        for t, a, _w, bits, diff in sorted(rows, key=lambda r: r[:4])
        if (after is None or t > after) and t <= last
    ]


def _oldest_minute(conn: Connection, last: int) -> int | None:
    """The pool's first minute with work, at or before `last` (None: no work yet)."""
    found = conn.execute(
        select(func.min(SliceSum.start)).where(
            SliceSum.span == 60, SliceSum.account_id == POOL, SliceSum.start <= last
        )
    ).scalar()
    return None if found is None else int(found)


def _names(conn: Connection) -> dict[int, str]:
    return {int(i): n for i, n in conn.execute(select(Account.id, Account.name))}


def _all_rows(conn: Connection, last: int) -> list[SliceRow]:
    return [
        (int(t), int(a), int(w), int(b), Fraction(int(n), int(d)))
        for t, a, w, b, n, d in conn.execute(
            select(
                ShareSlice.slice_start,
                ShareSlice.account_id,
                ShareSlice.worker_id,
                ShareSlice.bits,
                ShareSlice.diff_num,
                ShareSlice.diff_den,
            ).where(ShareSlice.slice_start <= last)
        )
    ]


def window(conn: Connection, found_ms: int, factor: Fraction) -> list[Share]:
    """The split input for a block found at `found_ms` (same result as `window_shares`).

    Folds new slices into the sums first, in the caller's transaction, so the sums it reads
    are complete (see `sums.fold`)."""
    fold(conn)  # first: from here no slice (nor the account it names) can be added
    names = _names(conn)
    last = minute_of(found_ms)
    oldest = _oldest_minute(conn, last)
    if oldest is None:
        return []
    edge = _edge(conn, last, oldest, factor)
    out: list[Share] = []
    if edge is not None:
        merged: dict[tuple[int, int, int], Fraction] = {}
        for a, wk, bits, n, d in conn.execute(
            select(
                ShareSlice.account_id,
                ShareSlice.worker_id,
                ShareSlice.bits,
                ShareSlice.diff_num,
                ShareSlice.diff_den,
            ).where(ShareSlice.slice_start == edge)
        ):
            key = (int(a), int(wk), int(bits))
            merged[key] = merged.get(key, Fraction(0)) + Fraction(int(n), int(d))
        out += [(names[k[0]], merged[k], _NETS[k[2]]) for k in sorted(merged)]
    full = _sums_after(conn, edge if edge is not None else oldest - 60, last)
    out += [(names[a], full[(bits, a)], _NETS[bits]) for bits, a in sorted(full) if full[(bits, a)]]
    return out


def round_start(conn: Connection, found_ms: int) -> int | None:
    """PROP: the minute of the newest block accepted before this block's minute (its round
    starts after that minute), or None for the pool's first round. Blocks found in the same
    minute share one round: slices are per minute."""
    prev = conn.execute(
        select(func.max(Block.found_ms)).where(
            Block.accepted.is_(True), Block.found_ms < minute_of(found_ms) * 1000
        )
    ).scalar()
    return None if prev is None else minute_of(int(prev))


def round_shares(conn: Connection, found_ms: int) -> list[Share]:
    """PROP: the work of every minute after `round_start` up to the block's minute, per
    (network difficulty, account), in content order (like `window`, folds new slices first)."""
    fold(conn)
    names = _names(conn)
    last = minute_of(found_ms)
    after = round_start(conn, found_ms)
    if after is None:
        oldest = _oldest_minute(conn, last)
        if oldest is None:
            return []
        after = oldest - 60
    full = _sums_after(conn, after, last)
    return [(names[a], full[(bits, a)], _NETS[bits]) for bits, a in sorted(full) if full[(bits, a)]]


def previous_block_ms(conn: Connection, found_ms: int, block_id: int | None = None) -> int | None:
    """When the accepted block before this one was found: the newest found earlier (one found
    in the same millisecond counts as earlier when its id is smaller). None: the first."""
    earlier = Block.found_ms < found_ms
    if block_id is not None:
        earlier = or_(earlier, and_(Block.found_ms == found_ms, Block.id < block_id))
    prev = conn.execute(
        select(func.max(Block.found_ms)).where(Block.accepted.is_(True), earlier)
    ).scalar()
    return None if prev is None else int(prev)


def work_between(conn: Connection, after_ms: int | None, through_ms: int) -> Fraction:
    """The pool's work in network difficulties from shares in (after_ms, through_ms], by
    share time: the whole minutes between from the pool's sums (a few rows per hour, day or
    10 minutes), the two edge minutes from their slices. Ingest cuts slices at block times,
    so an edge minute's slices fall on one side of each block; a slice a block did not cut
    (another node's, ingested before that block reached the ledger) counts by its last share.
    Folds new slices first, like `window`."""
    fold(conn)
    last = minute_of(through_ms)
    if after_ms is None:
        oldest = _oldest_minute(conn, last)
        if oldest is None:
            return Fraction(0)
        first, edge = oldest - 60, None
    else:
        first = edge = minute_of(after_ms)
    total = Fraction(0)
    runs = blocks(first, last - 60) if last - 60 > first else []
    if runs:
        work = sums(
            conn,
            [SliceSum.bits],
            [
                SliceSum.account_id == POOL,
                or_(
                    *(
                        and_(SliceSum.span == span, SliceSum.start.between(lo, hi))
                        for span, lo, hi in runs
                    )
                ),
            ],
        )
        total += sum((v / _NETS[int(k[0])] for k, v in work.items()), Fraction(0))
    edges = [(last, ShareSlice.last_ms <= through_ms)]
    if edge is not None:
        edges = (
            [(edge, and_(ShareSlice.last_ms > after_ms, ShareSlice.last_ms <= through_ms))]
            if edge == last
            else [(edge, ShareSlice.last_ms > after_ms), *edges]
        )
    for minute, cond in edges:
        part = exact_sums(conn, [ShareSlice.bits], [ShareSlice.slice_start == minute, cond])
        total += sum((v / _NETS[int(k[0])] for k, v in part.items()), Fraction(0))
    return total


def round_effort(conn: Connection, found_ms: int, block_id: int | None = None) -> Fraction:
    """The block's effort: the pool's work from the previous accepted block to this one, by
    share time (`work_between`), in network difficulties (1 = an average round). Blocks found
    in the same minute each get their own. With several daemons, shares are ordered by the
    clock of the daemon that took them: a share taken within one clock skew of a block may
    count in the neighbouring round (the efforts still add up to all the work)."""
    return work_between(conn, previous_block_ms(conn, found_ms, block_id), found_ms)


def _sums_after(conn: Connection, after: int, last: int) -> dict[tuple[Any, ...], Fraction]:
    """Per (bits, account id) work of the minutes in (after, last], from the fewest aligned
    sum blocks plus at most a few ragged minutes of slices (`sums.cover`)."""
    summed, plus, minus = cover(after, last)
    full: dict[tuple[Any, ...], Fraction] = defaultdict(Fraction)
    if summed:
        per_block = sums(
            conn,
            [SliceSum.bits, SliceSum.account_id],
            [
                SliceSum.account_id != POOL,
                or_(
                    *(
                        and_(SliceSum.span == span, SliceSum.start.between(first, final))
                        for span, first, final in summed
                    )
                ),
            ],
        )
        for key, diff in per_block.items():
            full[key] += diff
    for ranges, sign in ((plus, 1), (minus, -1)):
        if ranges:
            ragged = exact_sums(
                conn,
                [ShareSlice.bits, ShareSlice.account_id],
                [or_(*(ShareSlice.slice_start.between(a, b) for a, b in ranges))],
            )
            for key, diff in ragged.items():
                full[key] += sign * diff
    return full


def _edge(conn: Connection, last: int, oldest: int, factor: Fraction) -> int | None:
    """The newest minute at or before `last` where the pool's work, summed newest first,
    reaches `factor` (in network-difficulty units): the minute the window edge cuts. None
    when all the work up to `last` does not reach it. Reads the pool's minute sums a page
    at a time (6 h, then 4x wider)."""
    remaining = factor
    hi, span = last, FIRST_PAGE_S
    while hi >= oldest:
        lo = hi - span
        scores = sums(
            conn,
            [SliceSum.start, SliceSum.bits],
            [
                SliceSum.span == 60,
                SliceSum.account_id == POOL,
                SliceSum.start > lo,
                SliceSum.start <= hi,
            ],
        )
        per_minute: dict[int, Fraction] = {}
        for (minute, bits), diff in scores.items():
            per_minute[minute] = per_minute.get(minute, Fraction(0)) + diff / _NETS[bits]
        for minute in sorted(per_minute, reverse=True):
            if per_minute[minute] >= remaining:
                return minute
            remaining -= per_minute[minute]
        hi, span = lo, span * 4
    return None
