"""FPPS: every share is worth min(share_diff, network_diff) / network_diff x (subsidy + average
fees) x (1 - fee): its difficulty is capped at its block's network difficulty, so no share is
ever worth more than a whole block.

Credits accumulate exactly per account and are booked per period as floor(value + carried
remainder); the sub-satoshi remainder is carried forward, never lost, never rounded per share.
Imports numpy and `accounting` only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from accounting.kernels import SAFE_WORK, epoch_account_sums
from accounting.money import non_negative, parse_shares, positive, rate, satoshis, whole

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FppsResult:
    credits: dict[str, int]  # satoshis booked this period
    carry: dict[str, Fraction]  # sub-satoshi remainders, each in [0, 1)


def avg_fees(fees_per_block: Sequence[int], n: int = 144) -> Fraction:
    """Mean total fees (sat) of the last `n` blocks, exactly."""
    count = whole(n, "n")
    if count <= 0:
        raise ValueError(f"n: must be > 0, got {n!r}")
    fees = list(fees_per_block)
    last = [satoshis(fee, f"fees_per_block[{i}]") for i, fee in enumerate(fees)][-count:]
    if not last:
        raise ValueError("fees_per_block: need at least one block")
    return Fraction(sum(last), len(last))


def credited_difficulty(share_difficulty: object, network_difficulty: object) -> Fraction:
    """The difficulty FPPS pays a share for: its own, capped at the network difficulty of its
    block (no share is worth more than a whole block: on regtest, or a testnet's
    minimum-difficulty blocks, every share is over the network's difficulty)."""
    sd = positive(share_difficulty, "share_difficulty")
    nd = positive(network_difficulty, "network_difficulty")
    return min(sd, nd)


def fpps_share_value(
    share_difficulty: object,
    network_difficulty: object,
    *,
    subsidy_sat: int,
    avg_fees_sat: object,
    pool_fee: object = 0,
) -> Fraction:
    """Exact value of one share in satoshis (a Fraction): min(share_diff, network_diff) /
    network_diff x (subsidy + average fees) x (1 - fee); never more than one block's value."""
    credited = credited_difficulty(share_difficulty, network_difficulty)
    nd = positive(network_difficulty, "network_difficulty")
    block = satoshis(subsidy_sat, "subsidy_sat") + non_negative(avg_fees_sat, "avg_fees_sat")
    return credited / nd * block * (1 - rate(pool_fee, "pool_fee"))


def fpps_settle(
    shares: Sequence[tuple[str, object, object]],
    *,
    subsidy_sat: int,
    avg_fees_sat: object,
    pool_fee: object = 0,
    carry_in: Mapping[str, object] | None = None,
) -> FppsResult:
    """Book one period: shares as (account, share_difficulty, network_difficulty), each
    credited at most its network difficulty (one block's value)."""
    accounts, idx, sds, nds = parse_shares(shares)
    credited = [min(sd, nd) for sd, nd in zip(sds, nds, strict=True)]
    return _settle_exact(
        accounts, idx, credited, nds, subsidy_sat, avg_fees_sat, pool_fee, carry_in
    )


def fpps_settle_sums(
    rows: Sequence[tuple[str, object, object, int]],
    *,
    subsidy_sat: int,
    avg_fees_sat: object,
    pool_fee: object = 0,
    carry_in: Mapping[str, object] | None = None,
) -> FppsResult:
    """Book one period from sums of shares (the ledger's slices): rows as (account, credited
    difficulty, network difficulty, shares), where the credited difficulty is the sum of the
    row's shares' difficulties each capped at the network difficulty (`credited_difficulty`)
    before summing. A row crediting more than `shares` blocks is refused: it would pay some
    share more than a block."""
    plain: list[tuple[str, object, object]] = []
    counts: list[int] = []
    for i, row in enumerate(rows):
        if len(row) != 4:
            raise ValueError(
                f"rows[{i}]: expected (account, credited_difficulty, network_difficulty, shares)"
            )
        plain.append(row[:3])
        counts.append(whole(row[3], f"rows[{i}].shares"))
    accounts, idx, sds, nds = parse_shares(plain)
    for i, (sd, nd, n) in enumerate(zip(sds, nds, counts, strict=True)):
        if n < 1 or sd > nd * n:
            raise ValueError(
                f"rows[{i}]: {n} share(s) cannot be credited {sd} at network difficulty {nd} "
                "(no share is worth more than a block)"
            )
    return _settle_exact(accounts, idx, sds, nds, subsidy_sat, avg_fees_sat, pool_fee, carry_in)


def _settle_exact(
    accounts: dict[str, int],
    idx: list[int],
    sds: list[Fraction],
    nds: list[Fraction],
    subsidy_sat: int,
    avg_fees_sat: object,
    pool_fee: object,
    carry_in: Mapping[str, object] | None,
) -> FppsResult:
    """Book credited difficulties (already capped) exactly."""
    block = satoshis(subsidy_sat, "subsidy_sat") + non_negative(avg_fees_sat, "avg_fees_sat")
    block_sat = block * (1 - rate(pool_fee, "pool_fee"))
    # Group by network difficulty; work = difficulty x the group's common denominator.
    epochs: dict[Fraction, int] = {}
    ep = [epochs.setdefault(nd, len(epochs)) for nd in nds]
    scale = [1] * len(epochs)
    for sd, e in zip(sds, ep, strict=True):
        scale[e] = math.lcm(scale[e], sd.denominator)
    work = [int(sd * scale[e]) for sd, e in zip(sds, ep, strict=True)]
    nets = [nd * scale[e] for nd, e in epochs.items()]
    for account in carry_in or {}:
        accounts.setdefault(account, len(accounts))
    if work and max(work) * len(work) >= SAFE_WORK:
        # Exotic mixes of difficulties overflow int64 work units: sum in Python ints instead.
        rows = [[0] * len(accounts) for _ in nets]
        for a, w, e in zip(idx, work, ep, strict=True):
            rows[e][a] += w
        booked, rem, den = _book(rows, nets, block_sat)
        return _result(idx, list(accounts), booked, rem, den, carry_in)
    sums = epoch_account_sums(
        np.array(work, dtype=np.int64),
        np.array(idx, dtype=np.int64),
        np.array(ep, dtype=np.int64),
        len(nets),
        len(accounts),
    )
    booked, rem, den = _book([row.tolist() for row in sums], nets, block_sat)
    return _result(idx, list(accounts), booked, rem, den, carry_in)


def fpps_credit_arrays(
    account_idx: I64,
    work: I64,
    epoch_idx: I64,
    epoch_net_work: Sequence[Fraction],
    n_accounts: int,
    *,
    block_sat: Fraction,
) -> tuple[I64, list[int], int]:
    """The fast path over per-share columns: (booked satoshis per account, remainder
    numerators, denominator).

    A share's credited work is min(work, the epoch's network work) (never more than a block);
    value_a = sum over shares of credited / net_e x block_sat; booked_a = floor(value_a) and
    remainder_a = value_a - booked_a = rem[a] / den exactly (no carry handling here)."""
    # Integer work above floor(net) is above net: those shares count one whole block each.
    limit = np.array(
        [min(n.numerator // n.denominator, SAFE_WORK) for n in epoch_net_work], dtype=np.int64
    )
    over = work > limit[epoch_idx] if work.shape[0] else np.zeros(0, dtype=np.bool_)
    blocks = None
    if over.any():
        blocks = np.bincount(account_idx[over], minlength=n_accounts).tolist()
        work = np.where(over, 0, work)
    sums = epoch_account_sums(work, account_idx, epoch_idx, len(epoch_net_work), n_accounts)
    booked, rem, den = _book([row.tolist() for row in sums], epoch_net_work, block_sat, blocks)
    return np.array(booked, dtype=np.int64), rem, den


def _book(
    rows: list[list[int]],
    nets: Sequence[Fraction],
    block_sat: Fraction,
    blocks: list[int] | None = None,
) -> tuple[list[int], list[int], int]:
    """value_a = (sum_e rows[e][a] / nets[e] + blocks[a]) x block_sat -> (floors, remainder
    numerators, den)."""
    n_accounts = len(rows[0]) if rows else 0
    d = math.lcm(*(net.numerator for net in nets)) if nets else 1
    den = d * block_sat.denominator
    nums = [0] * n_accounts
    for row, net in zip(rows, nets, strict=True):
        mult = net.denominator * (d // net.numerator) * block_sat.numerator
        nums = [x + y * mult for x, y in zip(nums, row, strict=True)]
    if blocks is not None:
        per_block = d * block_sat.numerator
        nums = [x + b * per_block for x, b in zip(nums, blocks, strict=True)]
    booked = [x // den for x in nums]
    rem = [x - b * den for x, b in zip(nums, booked, strict=True)]
    return booked, rem, den


def fpps_settle_arrays(
    account_idx: I64,
    work: I64,
    epoch_idx: I64,
    epoch_net_work: Sequence[object],
    accounts: Sequence[str],
    *,
    subsidy_sat: int,
    avg_fees_sat: object,
    pool_fee: object = 0,
    carry_in: Mapping[str, object] | None = None,
) -> FppsResult:
    """The same over NumPy columns of shares, units as in `pplns_split_arrays`: each share's
    work is credited at most its epoch's network work (one block)."""
    block = satoshis(subsidy_sat, "subsidy_sat") + non_negative(avg_fees_sat, "avg_fees_sat")
    keep = 1 - rate(pool_fee, "pool_fee")
    nets = [positive(w, f"epoch_net_work[{i}]") for i, w in enumerate(epoch_net_work)]
    n = work.shape[0]
    if not (account_idx.shape[0] == n == epoch_idx.shape[0]):
        raise ValueError("account_idx, work and epoch_idx must have the same length")
    if n and int(work.min()) <= 0:
        raise ValueError("work must be > 0 for every share")
    if n and (int(epoch_idx.min()) < 0 or int(epoch_idx.max()) >= len(nets)):
        raise ValueError("epoch_idx out of range")
    if n and (int(account_idx.min()) < 0 or int(account_idx.max()) >= len(accounts)):
        raise ValueError("account_idx out of range")
    if len(set(accounts)) != len(accounts):
        raise ValueError("accounts must be unique")
    booked, rem, den = fpps_credit_arrays(
        account_idx, work, epoch_idx, nets, len(accounts), block_sat=block * keep
    )
    return _result(account_idx.tolist(), list(accounts), booked.tolist(), rem, den, carry_in)


def _result(
    idx: list[int],
    accounts: list[str],
    booked: list[int],
    rem: list[int],
    den: int,
    carry_in: Mapping[str, object] | None,
) -> FppsResult:
    carry = {k: non_negative(v, f"carry_in[{k!r}]") for k, v in (carry_in or {}).items()}
    for k, v in carry.items():
        if v >= 1:
            raise ValueError(f"carry_in[{k!r}]: a carried remainder must be < 1 satoshi")
    credits: dict[str, int] = {}
    carry_out: dict[str, Fraction] = {}
    for i in sorted(set(idx)):
        credits[accounts[i]] = booked[i]
        carry_out[accounts[i]] = Fraction(rem[i], den)
    for name, v in carry.items():
        total = carry_out.get(name, Fraction(0)) + v
        whole = total.numerator // total.denominator
        credits[name] = credits.get(name, 0) + whole
        carry_out[name] = total - whole
    return FppsResult(credits, carry_out)
