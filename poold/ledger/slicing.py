"""Shares -> share slices: one row per (worker, minute, network bits) of a batch, exactly.

`slices_from_arrays` is ingest's path (NumPy sort keys and one Numba pass over a batch read by
`shares.scan`); `slices_from_tuples` is the plain loop it must equal (the oracle in the tests,
and the path for a batch whose sort key would not fit 64 bits). A slice's difficulty is the
exact sum of its shares' num/den, reduced; numerators are summed in two 32-bit halves so no
sum can overflow. Imports numpy, numba and the share log's types; no database code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numba as nb
import numpy as np
import numpy.typing as npt

from poold.shares.format import ShareTuple
from poold.shares.scan import ArrayBatch

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
SLICE_S = 60
#: (account id, worker id, slice start s, bits, diff num, diff den, shares, first ms, last ms)
SliceTuple = tuple[int, int, int, int, int, int, int, int, int]


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
                strict=True,
            )
        )


def slices_from_tuples(
    shares: Sequence[ShareTuple], ids: Mapping[tuple[bytes, bytes], tuple[int, int]]
) -> list[SliceTuple]:
    """The reference: `ids` maps (account, worker) bytes to (worker id, account id)."""
    acc: dict[tuple[int, int, int], list[int]] = {}
    for ts, bits, num, den, account, worker in shares:
        wid, aid = ids[(account, worker)]
        key = (wid, ts // 60_000 * SLICE_S, bits)
        v = acc.get(key)
        if v is None:
            acc[key] = [num, den, 1, ts, ts, aid]
            continue
        f = Fraction(v[0], v[1]) + Fraction(num, den)
        v[0], v[1] = f.numerator, f.denominator
        v[2] += 1
        v[3] = min(v[3], ts)
        v[4] = max(v[4], ts)
    out = []
    for (wid, start, bits), (num, den, n, first, last, aid) in acc.items():
        g = math.gcd(num, den)
        out.append((aid, wid, start, bits, num // g, den // g, n, first, last))
    return sorted(out, key=lambda r: (r[1], r[2], r[3]))


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


def slices_from_arrays(batch: ArrayBatch, wid_of: I64, aid_of: I64) -> SliceColumns | None:
    """Slices of an array batch (`wid_of[g]`, `aid_of[g]`: ids of name group g), sorted by
    (worker id, start, bits); None when the sort key would not fit 64 bits."""
    empty = np.empty(0, np.int64)
    if batch.ts_ms.shape[0] == 0:
        return SliceColumns(empty, empty, empty, empty, [], [], empty, empty, empty)
    wids, w_rank_of_group = np.unique(wid_of, return_inverse=True)
    w_rank = w_rank_of_group.astype(np.int64)[batch.group]
    minute = batch.ts_ms // 60_000
    m0 = int(minute.min())
    m_span = int(minute.max()) - m0 + 1
    bits, b_rank = _ranks(batch.bits)
    dens, d_rank = _ranks(batch.diff_den.view(np.int64))
    sizes = (len(wids), m_span, len(bits), len(dens))
    if math.prod(sizes) >= 1 << 62:
        return None
    key = ((w_rank * m_span + (minute - m0)) * sizes[2] + b_rank) * sizes[3] + d_rank
    uniq, group = np.unique(key, return_inverse=True)
    lo, hi, count, first, last = _accumulate(
        group.astype(np.int64), batch.diff_num, batch.ts_ms, len(uniq)
    )
    d_idx = uniq % sizes[3]
    rest = uniq // sizes[3]
    b_idx = rest % sizes[2]
    rest //= sizes[2]
    m_idx = rest % m_span
    w_idx = rest // m_span
    nums = [(h << 32) + lo_ for h, lo_ in zip(hi.tolist(), lo.tolist(), strict=True)]
    den_of = dens.view(np.uint64)[d_idx].tolist()
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
    )
    if len(dens) > 1 or any(d != 1 for d in den_of):
        cols = _merge_scales(cols)
    return cols


def _merge_scales(cols: SliceColumns) -> SliceColumns:
    """Merge rows of one (worker, start, bits) with different denominators, and reduce."""
    diff: dict[tuple[int, int, int], Fraction] = {}
    rest: dict[tuple[int, int, int], tuple[int, int, int, int]] = {}  # aid, count, first, last
    for aid, wid, start, bits, num, den, n, first, last in cols.tuples():
        key = (wid, start, bits)
        if key in diff:
            _a, n0, f0, l0 = rest[key]
            diff[key] += Fraction(num, den)
            rest[key] = (aid, n0 + n, min(f0, first), max(l0, last))
        else:
            diff[key] = Fraction(num, den)
            rest[key] = (aid, n, first, last)
    return SliceColumns.from_tuples(
        [
            (r[0], k[0], k[1], k[2], diff[k].numerator, diff[k].denominator, r[1], r[2], r[3])
            for k in sorted(diff)
            for r in (rest[k],)
        ]
    )
