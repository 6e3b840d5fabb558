"""PPLNS: walk the newest shares until `factor` network difficulties are covered, split exactly.

Rules (docs/concepts/money-rules.md): each share scores share_diff / network_diff; the share
crossing the window edge counts only for its inside part; fee = floor(reward x pool_fee);
account quota = (reward - fee) x score / factor; what an unfilled window leaves is
`unallocated`; satoshis by largest remainder (ties: smaller account id; `unallocated` loses
ties). Always sum(credits) + fee + unallocated == reward. Imports numpy, `accounting` only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from accounting.kernels import SAFE_WORK, mul_div, mul_div_small, walk_window
from accounting.money import (
    largest_remainder_array,
    largest_remainder_int,
    parse_shares,
    positive,
    rate,
    satoshis,
)

I64 = npt.NDArray[np.int64]
LIMB = 1 << 62  # bound for the int64 fast split (mul_div's precondition)
SMALL_D = 1 << 60  # mul_div_small's bounds: divisor below 2**60, quotients below 2**53
SMALL_Q = 1 << 53


class AccountNames(tuple[str, ...]):
    """Account names in id order, checked unique once, when built: the table a split's
    `account_idx` points into. Build it once per account table and pass it to every split
    (a plain sequence is checked again on each call: 50,000 names cost about 2 ms)."""

    __slots__ = ()

    def __new__(cls, names: Iterable[str]) -> AccountNames:
        table = super().__new__(cls, names)
        if len(set(table)) != len(table):
            raise ValueError("accounts must be unique")
        return table

    @classmethod
    def of_dict(cls, ids: dict[str, int]) -> AccountNames:
        """The names of an {account: id} dict built in id order (unique by construction)."""
        return super().__new__(cls, ids)


class _Credits(Mapping[str, int]):
    """Each account's satoshis held as two arrays (account index, amount); the dict a reader
    sees is built the first time it is read, so a caller that only needs the arrays (or one
    account) does not pay 50,000 dict insertions."""

    def __init__(self, accounts: Sequence[str], ids: I64, sat: I64) -> None:
        self._accounts, self.ids, self.sat = accounts, ids, sat

    @functools.cached_property
    def _dict(self) -> dict[str, int]:
        names = map(self._accounts.__getitem__, self.ids.tolist())
        return dict(zip(names, self.sat.tolist(), strict=True))

    def __getitem__(self, key: str) -> int:
        return self._dict[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __repr__(self) -> str:
        return repr(self._dict)


class _NamesAt(Sequence[str]):
    """names[i] = accounts[ids[i]], and "" (the unallocated claimant) at len(ids): read only
    for the tie group at the cut-off."""

    def __init__(self, accounts: Sequence[str], ids: I64) -> None:
        self._accounts, self._ids = accounts, ids

    def __len__(self) -> int:
        return int(self._ids.shape[0]) + 1

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return "" if i == self._ids.shape[0] else self._accounts[int(self._ids[i])]


@dataclass(frozen=True)
class PplnsResult:
    credits: Mapping[str, int]
    pool_fee_sat: int
    unallocated_sat: int
    shares_used: int
    _scores: Callable[[], dict[str, Fraction]] = field(repr=False)

    @functools.cached_property
    def scores(self) -> dict[str, Fraction]:
        """Each account's score in network difficulties (built on demand: 50k Fractions)."""
        return self._scores()

    @property
    def total_sat(self) -> int:
        return sum(self.credits.values()) + self.pool_fee_sat + self.unallocated_sat


def pplns_split(
    block_reward_sat: int,
    shares: Sequence[tuple[str, object, object]],
    *,
    factor: object = 2,
    pool_fee: object = 0,
) -> PplnsResult:
    """Split one block reward over `shares` = [(account, share_difficulty, network_difficulty)],
    oldest first, including the block-finding share last. Difficulties are exact numbers
    (int, str, Decimal, Fraction); floats are refused."""
    return split_parsed(block_reward_sat, *parse_shares(shares), factor=factor, pool_fee=pool_fee)


def split_parsed(
    block_reward_sat: int,
    accounts: dict[str, int],
    idx: list[int],
    sds: list[Fraction],
    nds: list[Fraction],
    *,
    factor: object,
    pool_fee: object,
) -> PplnsResult:
    """`pplns_split` over shares already parsed by `money.parse_shares` (PROP parses them
    once to find its round's total, then splits with that total as the factor)."""
    # One epoch per run of equal network difficulty; work = difficulty x the epoch's common
    # denominator, so every share's work is an exact integer.
    epoch_of: list[int] = []
    epoch_net: list[Fraction] = []
    scale: list[int] = []
    start = 0
    for i in range(len(nds) + 1):
        if i == len(nds) or (i > start and nds[i] != nds[start]):
            if i > start:
                den = math.lcm(*(sds[j].denominator for j in range(start, i)))
                scale.append(den)
                epoch_net.append(nds[start] * den)
                epoch_of.extend([len(epoch_net) - 1] * (i - start))
            start = i
    work = [int(sds[j] * scale[epoch_of[j]]) for j in range(len(sds))]
    if work and max(work) * len(work) >= SAFE_WORK:
        # Exotic mixes of difficulties overflow int64 work units: walk in Python ints instead.
        f = positive(factor, "factor")
        fee = rate(pool_fee, "pool_fee")
        reward = satoshis(block_reward_sat, "block_reward_sat")
        runs, partial, used = _walk_python(work, idx, epoch_of, epoch_net, f)
        fee_sat = reward * fee.numerator // fee.denominator
        return _split(reward, reward - fee_sat, fee_sat, f, runs, partial, list(accounts), used)
    return pplns_split_arrays(
        block_reward_sat,
        np.array(idx, dtype=np.int64),
        np.array(work, dtype=np.int64),
        np.array(epoch_of, dtype=np.int64),
        epoch_net,
        AccountNames.of_dict(accounts),
        factor=factor,
        pool_fee=pool_fee,
    )


def pplns_split_arrays(
    block_reward_sat: int,
    account_idx: I64,
    work: I64,
    epoch_idx: I64,
    epoch_net_work: Sequence[object],
    accounts: Sequence[str],
    *,
    factor: object = 2,
    pool_fee: object = 0,
) -> PplnsResult:
    """The same split over NumPy columns, oldest first: `work[i]` = share (or slice) difficulty
    x a scale, `epoch_net_work[epoch_idx[i]]` = that epoch's network difficulty x the same scale.

    Rows may be single shares or pre-aggregated slices (account x time slice x epoch, summed
    work): a slice that straddles the window edge is cut pro rata, exactly."""
    reward = satoshis(block_reward_sat, "block_reward_sat")
    f = positive(factor, "factor")
    fee = rate(pool_fee, "pool_fee")
    n = work.shape[0]
    if not (account_idx.shape[0] == n == epoch_idx.shape[0]):
        raise ValueError("account_idx, work and epoch_idx must have the same length")
    nets = [positive(w, f"epoch_net_work[{i}]") for i, w in enumerate(epoch_net_work)]
    if not isinstance(accounts, AccountNames) and len(set(accounts)) != len(accounts):
        raise ValueError("accounts must be unique")

    fee_sat = reward * fee.numerator // fee.denominator
    dist = reward - fee_sat
    runs_np: list[tuple[Fraction, I64, I64]] = []
    remaining = f
    partial: tuple[int, Fraction] | None = None
    i = n - 1
    used = 0
    while i >= 0 and remaining > 0:
        e = int(epoch_idx[i])
        if not 0 <= e < len(nets):
            raise ValueError(f"epoch_idx[{i}] = {e} is out of range")
        net = nets[e]
        cap = remaining * net  # window left, in this epoch's work units
        threshold = -(-cap.numerator // cap.denominator)  # ceil: work is integral
        acc = np.zeros(len(accounts), dtype=np.int64)
        stop, status, cum = (
            int(x)
            for x in walk_window(work, account_idx, epoch_idx, i, min(threshold, SAFE_WORK), acc)
        )
        if status == 1 and cum + int(work[stop]) < threshold:
            # Only reachable when the window exceeds 2**62 work units: the cap, not the edge.
            raise ValueError("window work does not fit int64 safely: use a coarser scale")
        if status == 3:
            raise ValueError(f"work[{stop}] must be > 0 and < 2**61 (use a coarser scale)")
        if status == 4:
            raise ValueError(f"account_idx[{stop}] is out of range")
        nz = np.flatnonzero(acc)
        runs_np.append((net, nz, acc[nz]))
        used += i - stop if stop >= 0 else i + 1
        if status == 1:
            # The crossing share counts for exactly what is left of the window.
            partial = (int(account_idx[stop]), remaining - Fraction(cum) / net)
            used += 1
            remaining = Fraction(0)
            break
        remaining -= Fraction(cum) / net
        i = stop
    if len(runs_np) == 1:
        fast = _split_one_epoch(reward, dist, fee_sat, f, runs_np[0], partial, accounts, used)
        if fast is not None:
            return fast
    runs = [(net, (ids.tolist(), vals.tolist())) for net, ids, vals in runs_np]
    return _split(reward, dist, fee_sat, f, runs, partial, accounts, used)


def _split_one_epoch(
    reward: int,
    dist: int,
    fee_sat: int,
    factor: Fraction,
    run: tuple[Fraction, I64, I64],
    partial: tuple[int, Fraction] | None,
    accounts: Sequence[str],
    used: int,
) -> PplnsResult | None:
    """The common case exactly, in int64: one network difficulty in the window.

    Each account's quota is dist x v / (net x factor) (+ the crossing share's part for one
    account); `mul_div` gives floor and remainder over one denominator, the crossing share and
    `unallocated` are folded in as Fractions, and all remainders are put on one common
    denominator L. Returns None (use the general path) when L or a floor would not fit int64.
    """
    net, ids, vals = run
    fn, fd = factor.numerator, factor.denominator
    c = dist * fd * net.denominator
    den = net.numerator * fn
    g = math.gcd(c, den)
    c, den = c // g, den // g
    cq, cr = divmod(c, den)
    vmax = int(vals.max()) if vals.size else 0
    if den >= LIMB or cq >= LIMB or cq * vmax >= LIMB:
        return None
    extra = Fraction(0)
    crossing = -1
    if partial is not None:
        a, r = partial
        extra = dist * r / factor
        hit = np.flatnonzero(ids == a)
        if hit.size:
            crossing = int(hit[0])
        else:
            ids = np.append(ids, a)
            vals = np.append(vals, 0)
            crossing = ids.size - 1
    unallocated = dist - Fraction(c * int(vals.sum()), den) - extra
    common = math.lcm(den, extra.denominator, unallocated.denominator)
    if common >= LIMB:
        return None
    small = den < SMALL_D and cr * vmax // den < SMALL_Q
    q, r_den = (mul_div_small if small else mul_div)(vals, cr, den)
    floors = q + cq * vals
    rems = r_den * (common // den)
    if crossing >= 0:
        total = Fraction(int(floors[crossing]) * den + int(r_den[crossing]), den) + extra
        whole = total.numerator // total.denominator
        floors[crossing] = whole
        rems[crossing] = int((total - whole) * common)
    un_floor = unallocated.numerator // unallocated.denominator
    floors = np.append(floors, un_floor)
    rems = np.append(rems, int((unallocated - un_floor) * common))
    n_ids = ids.shape[0]
    split = largest_remainder_array(dist, floors, rems, _NamesAt(accounts, ids), last=n_ids)
    un_sat = int(split[n_ids])
    credits = _Credits(accounts, ids, split[:n_ids])
    if int(split.sum()) + fee_sat != reward:  # pragma: no cover - an invariant, not a branch
        raise AssertionError("PPLNS split does not conserve satoshis")

    def scores() -> dict[str, Fraction]:
        keys = map(accounts.__getitem__, ids.tolist())
        out = {k: Fraction(int(v)) / net for k, v in zip(keys, vals.tolist(), strict=True)}
        if partial is not None:
            out[accounts[partial[0]]] += partial[1]
        return out

    return PplnsResult(credits, fee_sat, un_sat, used, scores)


def _walk_python(
    work: list[int], acct: list[int], epoch: list[int], nets: list[Fraction], factor: Fraction
) -> tuple[list[tuple[Fraction, tuple[list[int], list[int]]]], tuple[int, Fraction] | None, int]:
    """The same walk as the kernel, in Python ints (no overflow), for exotic inputs."""
    runs: list[tuple[Fraction, tuple[list[int], list[int]]]] = []
    remaining, i, used = factor, len(work) - 1, 0
    while i >= 0 and remaining > 0:
        e, net = epoch[i], nets[epoch[i]]
        cap = remaining * net
        acc: dict[int, int] = {}
        cum = 0
        while i >= 0 and epoch[i] == e:
            if cum + work[i] >= cap:
                runs.append((net, (list(acc), list(acc.values()))))
                return runs, (acct[i], remaining - Fraction(cum) / net), used + 1
            cum += work[i]
            acc[acct[i]] = acc.get(acct[i], 0) + work[i]
            used += 1
            i -= 1
        runs.append((net, (list(acc), list(acc.values()))))
        remaining -= Fraction(cum) / net
    return runs, None, used


def _split(
    reward: int,
    dist: int,
    fee_sat: int,
    factor: Fraction,
    runs: list[tuple[Fraction, tuple[list[int], list[int]]]],
    partial: tuple[int, Fraction] | None,
    accounts: Sequence[str],
    used: int,
) -> PplnsResult:
    # Every score as an integer numerator over one common denominator D.
    dens = [net.numerator for net, _ in runs]
    if partial is not None:
        dens.append(partial[1].denominator)
    d = math.lcm(*dens) if dens else 1
    if len(runs) == 1:
        net, (idx, vals) = runs[0]
        mult = net.denominator * (d // net.numerator)
        nums = list(map(mult.__mul__, vals))  # C-level loop over Python ints
        if partial is not None:
            a, r = partial
            extra = r.numerator * (d // r.denominator)
            try:
                nums[idx.index(a)] += extra
            except ValueError:
                idx.append(a)
                nums.append(extra)
    else:
        merged: dict[int, int] = {}
        for net, (ids, vals) in runs:
            mult = net.denominator * (d // net.numerator)
            for a, v in zip(ids, vals, strict=True):
                merged[a] = merged.get(a, 0) + v * mult
        if partial is not None:
            a, r = partial
            merged[a] = merged.get(a, 0) + r.numerator * (d // r.denominator)
        idx, nums = list(merged), list(merged.values())
    keys = list(map(accounts.__getitem__, idx))
    s_total = sum(nums)
    fn, fd = factor.numerator, factor.denominator
    den = d * fn
    k = dist * fd
    quota_nums = list(map(k.__mul__, nums))
    quota_nums.append(dist * (fn * d - fd * s_total))  # unallocated
    keys.append("")
    split = largest_remainder_int(dist, quota_nums, den, keys, last=len(idx))
    unallocated = split.pop()
    keys.pop()

    def scores() -> dict[str, Fraction]:
        return {a: Fraction(n, d) for a, n in zip(keys, nums, strict=True)}

    result = PplnsResult(dict(zip(keys, split, strict=True)), fee_sat, unallocated, used, scores)
    if result.total_sat != reward:  # pragma: no cover - an invariant, not a branch
        raise AssertionError("PPLNS split does not conserve satoshis")
    return result


__all__ = ["PplnsResult", "pplns_split", "pplns_split_arrays", "split_parsed"]
