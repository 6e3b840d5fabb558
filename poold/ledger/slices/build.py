"""Shares -> share slices: one row per (worker, minute, network bits) of a batch, exactly, cut
at block times: given the times of found blocks (`cuts`, unix ms), a slice holds only shares
on one side of each, those at or before a cut apart from those after it. So every slice lies
within one round (the work between two blocks), and a block's effort can be summed from whole
slices (`slices.window.round_effort`) although slices are per minute.

`slices_from_arrays` is ingest's path (NumPy sort keys and one Numba pass over a batch read by
`shares.scan`); `slices_from_tuples` is the plain loop it must equal (the oracle in the tests,
and the path for a batch whose sort key would not fit 64 bits). A slice's difficulty is the
exact sum of its shares' num/den, reduced; numerators are summed in two 32-bit halves so no
sum can overflow. Its credited difficulty (what FPPS pays) is the sum of each share's
difficulty capped at the network difficulty of its bits: None when no share of the slice was
over it (then it equals the difficulty; always so on mainnet). Imports numpy, numba, the chain
rules and the share log's types; no database code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numba as nb
import numpy as np
import numpy.typing as npt

from poold.chain.targets import network_difficulty
from poold.shares.format import ShareTuple
from poold.shares.scan import ArrayBatch

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
SLICE_S = 60
#: (account id, worker id, slice start s, bits, diff num, diff den, shares, first ms, last ms,
#: credited num, credited den); the credited pair is None when it equals the difficulty.
SliceTuple = tuple[int, int, int, int, int, int, int, int, int, int | None, int | None]


@dataclass(slots=True)
class SliceColumns:
    """Slices as columns (ids, start, bits, shares, first/last ms as int64 arrays; the exact
    difficulty as Python ints, which may pass 64 bits)."""

    account_id: I64
    worker_id: I64
    slice_start: I64
    bits: I64
    diff_num: list[int]
    diff_den: list[int]
    shares: I64
    first_ms: I64
    last_ms: I64
    credit_num: list[int | None]
    credit_den: list[int | None]

    def __len__(self) -> int:
        return len(self.diff_num)

    @classmethod
    def from_tuples(cls, rows: list[SliceTuple]) -> SliceColumns:
        def col(i: int) -> I64:
            return np.array([r[i] for r in rows], dtype=np.int64).reshape(-1)

        return cls(
            col(0),
            col(1),
            col(2),
            col(3),
            [r[4] for r in rows],
            [r[5] for r in rows],
            col(6),
            col(7),
            col(8),
            [r[9] for r in rows],
            [r[10] for r in rows],
        )

    def tuples(self) -> list[SliceTuple]:
        return list(
            zip(
                self.account_id.tolist(),
                self.worker_id.tolist(),
                self.slice_start.tolist(),
                self.bits.tolist(),
                self.diff_num,
                self.diff_den,
                self.shares.tolist(),
                self.first_ms.tolist(),
                self.last_ms.tolist(),
                self.credit_num,
                self.credit_den,
                strict=True,
            )
        )


def rounds_of(ts_ms: I64, cuts: Sequence[int]) -> I64:
    """Per share, how many cuts lie strictly before it: shares with equal counts are in the
    same round (a share at a cut's very millisecond belongs before it: the block's share)."""
    if not len(cuts):
        return np.zeros(ts_ms.shape[0], np.int64)
    return np.searchsorted(np.sort(np.asarray(cuts, np.int64)), ts_ms, side="left").astype(np.int64)


def slices_from_tuples(
    shares: Sequence[ShareTuple],
    ids: Mapping[tuple[bytes, bytes], tuple[int, int]],
    cuts: Sequence[int] = (),
) -> list[SliceTuple]:
    """The reference: `ids` maps (account, worker) bytes to (worker id, account id)."""
    diff: dict[tuple[int, int, int, int], Fraction] = {}
    credit: dict[tuple[int, int, int, int], Fraction] = {}
    over: set[tuple[int, int, int, int]] = set()
    rest: dict[tuple[int, int, int, int], tuple[int, int, int, int]] = {}  # aid, n, first, last
    nets: dict[int, Fraction] = {}
    ordered = sorted(cuts)
    for ts, bits, num, den, account, worker in shares:
        wid, aid = ids[(account, worker)]
        key = (wid, ts // 60_000 * SLICE_S, sum(1 for c in ordered if c < ts), bits)
        if bits not in nets:
            nets[bits] = network_difficulty(bits)
        sd = Fraction(num, den)
        if sd > nets[bits]:
            over.add(key)
        if key in diff:
            _a, n, first, last = rest[key]
            diff[key] += sd
            credit[key] += min(sd, nets[bits])
            rest[key] = (aid, n + 1, min(first, ts), max(last, ts))
        else:
            diff[key], credit[key] = sd, min(sd, nets[bits])
            rest[key] = (aid, 1, ts, ts)
    out: list[tuple[tuple[int, int, int, int], SliceTuple]] = []
    for key, (aid, n, first, last) in rest.items():
        wid, start, _round, bits = key
        c = credit[key]
        c_num, c_den = (c.numerator, c.denominator) if key in over else (None, None)
        d = diff[key]
        row = (aid, wid, start, bits, d.numerator, d.denominator, n, first, last, c_num, c_den)
        out.append((key, row))
    return [row for _key, row in sorted(out)]  # worker, minute, round, bits


@nb.njit(cache=True, nogil=True)
def _accumulate(group: I64, num: U64, ts: I64, n_groups: int) -> tuple[I64, I64, I64, I64, I64]:
    """Per group: (low 32-bit sum, high 32-bit sum, count, first ts, last ts)."""
    lo = np.zeros(n_groups, np.int64)
    hi = np.zeros(n_groups, np.int64)
    count = np.zeros(n_groups, np.int64)
    first = np.full(n_groups, np.iinfo(np.int64).max, np.int64)
    last = np.full(n_groups, np.iinfo(np.int64).min, np.int64)
    mask = np.uint64(0xFFFFFFFF)
    for i in range(group.shape[0]):
        g = group[i]
        lo[g] += np.int64(num[i] & mask)
        hi[g] += np.int64(num[i] >> np.uint64(32))
        count[g] += 1
        t = ts[i]
        if t < first[g]:
            first[g] = t
        if t > last[g]:
            last[g] = t
    return lo, hi, count, first, last


def _ranks(values: I64) -> tuple[I64, I64]:
    """(distinct values, rank of each value), cheaply when they are all the same."""
    if values.shape[0] and bool((values == values[0]).all()):
        return values[:1].copy(), np.zeros(values.shape[0], np.int64)
    uniq, rank = np.unique(values, return_inverse=True)
    return uniq, rank.astype(np.int64)


def slices_from_arrays(
    batch: ArrayBatch, wid_of: I64, aid_of: I64, cuts: Sequence[int] = ()
) -> SliceColumns | None:
    """Slices of an array batch (`wid_of[g]`, `aid_of[g]`: ids of name group g) cut at `cuts`,
    sorted like the reference (worker, minute, round, bits); None when the sort key would not
    fit 64 bits."""
    empty = np.empty(0, np.int64)
    if batch.ts_ms.shape[0] == 0:
        return SliceColumns(empty, empty, empty, empty, [], [], empty, empty, empty, [], [])
    wids, w_rank_of_group = np.unique(wid_of, return_inverse=True)
    w_rank = w_rank_of_group.astype(np.int64)[batch.group]
    minute = batch.ts_ms // 60_000
    m0 = int(minute.min())
    m_span = int(minute.max()) - m0 + 1
    bits, b_rank = _ranks(batch.bits)
    dens, d_rank = _ranks(batch.diff_den.view(np.int64))
    rounds = rounds_of(batch.ts_ms, cuts)
    n_rounds = int(rounds.max()) + 1 if rounds.shape[0] else 1
    sizes = (len(wids), m_span, len(bits), len(dens))
    if math.prod(sizes) * n_rounds >= 1 << 62:
        return None
    minute_round = (minute - m0) * n_rounds + rounds
    key = ((w_rank * m_span * n_rounds + minute_round) * sizes[2] + b_rank) * sizes[3] + d_rank
    uniq, group = np.unique(key, return_inverse=True)
    lo, hi, count, first, last = _accumulate(
        group.astype(np.int64), batch.diff_num, batch.ts_ms, len(uniq)
    )
    d_idx = uniq % sizes[3]
    rest = uniq // sizes[3]
    b_idx = rest % sizes[2]
    rest //= sizes[2]
    m_idx = rest % (m_span * n_rounds) // n_rounds
    w_idx = rest // (m_span * n_rounds)
    nums = [(h << 32) + lo_ for h, lo_ in zip(hi.tolist(), lo.tolist(), strict=True)]
    den_of = dens.view(np.uint64)[d_idx].tolist()
    credit_num, credit_den = _credited(batch, bits, b_rank, dens, d_rank, group, len(uniq), b_idx)
    aid_by_rank = np.empty(len(wids), np.int64)
    aid_by_rank[w_rank_of_group] = aid_of
    cols = SliceColumns(
        aid_by_rank[w_idx],
        wids[w_idx].astype(np.int64),
        (m_idx + m0) * SLICE_S,
        bits[b_idx],
        nums,
        den_of,
        count,
        first,
        last,
        credit_num,
        credit_den,
    )
    if len(dens) > 1 or any(d != 1 for d in den_of):
        cols = _merge_scales(cols, cuts)
    return cols


def _credited(
    batch: ArrayBatch,
    bits: I64,
    b_rank: I64,
    dens: I64,
    d_rank: I64,
    group: npt.NDArray[np.intp],
    n_groups: int,
    b_idx: I64,
) -> tuple[list[int | None], list[int | None]]:
    """Each slice's credited difficulty (numerator, denominator), None where no share of it
    was over its network difficulty. A share num/den is over nd exactly when num >
    floor(nd x den): one integer threshold per (bits, den) pair, compared in NumPy."""
    nets = [network_difficulty(int(b)) for b in bits.tolist()]
    limit = np.empty((len(nets), dens.shape[0]), np.uint64)
    for i, nd in enumerate(nets):
        for j, d in enumerate(dens.view(np.uint64).tolist()):
            limit[i, j] = min(nd.numerator * d // nd.denominator, (1 << 64) - 1)
    over = batch.diff_num > limit[b_rank, d_rank]
    none: list[int | None] = [None] * n_groups
    if not over.any():
        return none, list(none)
    g = group.astype(np.int64)
    lo, hi, _count, _first, _last = _accumulate(
        g, np.where(over, np.uint64(0), batch.diff_num), batch.ts_ms, n_groups
    )
    capped = np.bincount(g[over], minlength=n_groups).tolist()
    den_of = dens.view(np.uint64)[d_rank]
    slice_den = np.zeros(n_groups, np.uint64)
    slice_den[g] = den_of
    c_num, c_den = list(none), list(none)
    for k, (h, low, n, den, b) in enumerate(
        zip(hi.tolist(), lo.tolist(), capped, slice_den.tolist(), b_idx.tolist(), strict=True)
    ):
        if n:
            credit = Fraction((h << 32) + low, den) + n * nets[b]
            c_num[k], c_den[k] = credit.numerator, credit.denominator
    return c_num, c_den


def _merge_scales(cols: SliceColumns, cuts: Sequence[int] = ()) -> SliceColumns:
    """Merge rows of one (worker, start, round, bits) with different denominators, and
    reduce."""
    diff: dict[tuple[int, int, int, int], Fraction] = {}
    credit: dict[tuple[int, int, int, int], Fraction] = {}
    over: set[tuple[int, int, int, int]] = set()  # slices with a share over the network diff.
    rest: dict[tuple[int, int, int, int], tuple[int, int, int, int]] = {}  # aid, n, first, last
    rounds = rounds_of(cols.first_ms, cuts).tolist()
    for i, (aid, wid, start, bits, num, den, n, first, last, c_num, c_den) in enumerate(
        cols.tuples()
    ):
        key = (wid, start, rounds[i], bits)
        part = Fraction(num, den)
        cred = part if c_num is None or c_den is None else Fraction(c_num, c_den)
        if c_num is not None:
            over.add(key)
        if key in diff:
            _a, n0, f0, l0 = rest[key]
            diff[key] += part
            credit[key] += cred
            rest[key] = (aid, n0 + n, min(f0, first), max(l0, last))
        else:
            diff[key], credit[key] = part, cred
            rest[key] = (aid, n, first, last)
    rows: list[SliceTuple] = []
    for k in sorted(diff):
        aid, n, first, last = rest[k]
        c = credit[k]
        c_num, c_den = (c.numerator, c.denominator) if k in over else (None, None)
        rows.append(
            (aid, k[0], k[1], k[3], diff[k].numerator, diff[k].denominator, n, first, last,
             c_num, c_den)
        )  # fmt: skip
    return SliceColumns.from_tuples(rows)
