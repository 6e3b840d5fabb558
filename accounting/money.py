"""Exact numbers and the largest-remainder rule.

Money is an `int` of satoshis; every other quantity is parsed exactly into a `Fraction`.
Imports only numpy and the standard library.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

import numpy as np
import numpy.typing as npt

COIN = 100_000_000


def exact(value: object, field: str, *, allow_float: bool = False) -> Fraction:
    """Parse `value` (int, str "0.01" / "3/4", Decimal, Fraction) exactly; name `field` on error."""
    if isinstance(value, bool):
        raise TypeError(f"{field}: expected a number, got a boolean")
    if isinstance(value, Fraction):
        return value
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not allow_float:
            raise TypeError(f"{field}: a float is not exact; pass an int, str, Decimal or Fraction")
        if not math.isfinite(value):
            raise ValueError(f"{field}: {value!r} is not finite")
        return Fraction(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{field}: {value!r} is not finite")
        return Fraction(value)
    if isinstance(value, str):
        try:
            return Fraction(value.strip())
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{field}: cannot read {value!r} as an exact number") from None
    raise TypeError(f"{field}: expected a number, got {type(value).__name__}")


def positive(value: object, field: str) -> Fraction:
    f = exact(value, field)
    if f <= 0:
        raise ValueError(f"{field}: must be > 0, got {value!r}")
    return f


def non_negative(value: object, field: str) -> Fraction:
    f = exact(value, field)
    if f < 0:
        raise ValueError(f"{field}: must be >= 0, got {value!r}")
    return f


def rate(value: object, field: str) -> Fraction:
    """A fraction in [0, 1] (fees, discounts)."""
    f = exact(value, field)
    if not 0 <= f <= 1:
        raise ValueError(f"{field}: must be in [0, 1], got {value!r}")
    return f


def whole(value: object, field: str) -> int:
    """A whole number (satoshis, seconds, counts) read by the same rule as every other number:
    int, str ("21600"), Decimal or Fraction with an integral value; "21600.5" is refused."""
    if type(value) is int:
        return value
    f = exact(value, field)
    if f.denominator != 1:
        raise ValueError(f"{field}: expected a whole number, got {value!r}")
    return f.numerator


def satoshis(value: object, field: str) -> int:
    sat = whole(value, field)
    if sat < 0:
        raise ValueError(f"{field}: must be >= 0 satoshis, got {value!r}")
    return sat


def parse_shares(
    shares: Sequence[tuple[str, object, object]],
) -> tuple[dict[str, int], list[int], list[Fraction], list[Fraction]]:
    """(account, share_difficulty, network_difficulty) rows -> account index and exact columns."""
    accounts: dict[str, int] = {}
    idx, sds, nds = [], [], []
    for i, share in enumerate(shares):
        if len(share) != 3:
            raise ValueError(
                f"shares[{i}]: expected (account, share_difficulty, network_difficulty)"
            )
        account, sd, nd = share
        if not isinstance(account, str):
            raise TypeError(f"shares[{i}].account: expected str")
        idx.append(accounts.setdefault(account, len(accounts)))
        sds.append(positive(sd, f"shares[{i}].share_difficulty"))
        nds.append(positive(nd, f"shares[{i}].network_difficulty"))
    return accounts, idx, sds, nds


def largest_remainder(
    total: int, quotas: Mapping[str, Fraction], *, last: Iterable[str] = ()
) -> dict[str, int]:
    """Split `total` satoshis: floor of each exact quota, then one satoshi each to the largest
    fractional remainders; ties go to the smaller id (plain string order), except ids in `last`,
    which lose every tie. The quotas must add up to `total` exactly."""
    if sum(quotas.values(), Fraction(0)) != total:
        raise ValueError("quotas do not add up to the total")
    floors = {k: q.numerator // q.denominator for k, q in quotas.items()}
    left = total - sum(floors.values())
    late = set(last)
    order = sorted(quotas, key=lambda k: (-(quotas[k] - floors[k]), k in late, k))
    for k in order[:left]:
        floors[k] += 1
    return floors


def _by_key(items: list[int], keys: Sequence[str], last: int | None) -> list[int]:
    """Order tied claimants: smaller key first, `last` after everyone (a C-level string sort
    for large tie groups: 100,000 holders with equal token-seconds are common)."""
    if len(items) <= 64:
        return sorted(items, key=lambda i: (i == last, keys[i]))
    order = np.argsort(np.array([keys[i] for i in items]), kind="stable").tolist()
    ordered = [items[j] for j in order]
    if last is not None and last in ordered:
        ordered.remove(last)
        ordered.append(last)
    return ordered


def largest_remainder_arrays(
    total: int,
    floors: npt.NDArray[np.int64],
    rems: npt.NDArray[np.int64],
    keys: Sequence[str],
    *,
    last: int | None = None,
) -> list[int]:
    """Largest remainder when floors and remainders (over one denominator) are int64 arrays:
    the left-over satoshis go to the largest remainders, ties to the smaller key, `last` loses
    ties. Only the tie group at the cut-off is sorted in Python."""
    result: list[int] = largest_remainder_array(total, floors, rems, keys, last=last).tolist()
    return result


def largest_remainder_array(
    total: int,
    floors: npt.NDArray[np.int64],
    rems: npt.NDArray[np.int64],
    keys: Sequence[str],
    *,
    last: int | None = None,
) -> npt.NDArray[np.int64]:
    """`largest_remainder_arrays` that keeps the result an int64 array (`keys` is read only
    for the tie group at the cut-off, so it may be a lazy sequence)."""
    left = total - int(floors.sum())
    out = floors.copy()
    if left:
        cut = int(np.partition(rems, rems.size - left)[rems.size - left])
        above = np.flatnonzero(rems > cut)
        tied = np.flatnonzero(rems == cut).tolist()
        tied = _by_key(tied, keys, last)
        out[above] += 1
        out[tied[: left - above.size]] += 1
    return out


def largest_remainder_int(
    total: int, nums: list[int], den: int, keys: list[str], *, last: int | None = None
) -> list[int]:
    """`largest_remainder` over integer numerators sharing one denominator (the fast path).

    quota_i = nums[i] / den, with sum(nums) == total * den; `last` is an index losing ties.
    Only the remainders at the cut-off need the tie rule, so the largest ones are selected
    with NumPy when they fit in int64 and only the tied ones are sorted by key."""
    pairs = list(map(divmod, nums, itertools.repeat(den)))  # C-level loop over Python ints
    floors = [q for q, _ in pairs]
    left = total - sum(floors)
    if not left:
        return floors
    rems = [r for _, r in pairs]
    if den < (1 << 63):
        r = np.array(rems, dtype=np.int64)
        cut = int(np.partition(r, len(r) - left)[len(r) - left])  # the left-th largest value
        above = np.flatnonzero(r > cut).tolist()
        tied = np.flatnonzero(r == cut).tolist()
        tied = _by_key(tied, keys, last)
        winners = above + tied[: left - len(above)]
    else:
        order = sorted(range(len(nums)), key=lambda i: (-rems[i], i == last, keys[i]))
        winners = order[:left]
    for i in winners:
        floors[i] += 1
    return floors
