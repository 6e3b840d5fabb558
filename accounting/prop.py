"""PROP and SOLO: a block's reward split over its round, or kept by its finder.

PROP (the same rounding rules as PPLNS, docs/concepts/money-rules.md): the round is every share
since the previous block, each scoring share_diff / network_diff; fee = floor(reward x
pool_fee); each account's exact quota = (reward - fee) x score / the round's total score;
satoshis by largest remainder (ties: smaller account id). It is PPLNS whose window is exactly
the round (factor = the round's total score), so it runs on the same exact kernels. The pool fee
is taken on every block, as in PPLNS, even from a round with no shares: such a round leaves what
the fee leaves (reward - fee) `unallocated` (kept by the pool, shown openly). SOLO: the finder's
account takes reward - fee. Always sum(credits) + fee + unallocated == reward. Imports
`accounting` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from accounting.money import parse_shares, rate, satoshis
from accounting.pplns import PplnsResult, split_parsed


def prop_split(
    block_reward_sat: int,
    shares: Sequence[tuple[str, object, object]],
    *,
    pool_fee: object = 0,
) -> PplnsResult:
    """Split one block reward over its round: `shares` = [(account, share_difficulty,
    network_difficulty)], oldest first (order does not change the result). Numbers are read
    exactly as everywhere in `accounting`."""
    reward = satoshis(block_reward_sat, "block_reward_sat")
    fee = rate(pool_fee, "pool_fee")
    parsed = parse_shares(shares)
    _accounts, _idx, sds, nds = parsed
    total = sum((sd / nd for sd, nd in zip(sds, nds, strict=True)), Fraction(0))
    if total == 0:
        fee_sat = reward * fee.numerator // fee.denominator
        return PplnsResult({}, fee_sat, reward - fee_sat, 0, dict)
    return split_parsed(reward, *parsed, factor=total, pool_fee=fee)


def solo_split(block_reward_sat: int, finder: str, *, pool_fee: object = 0) -> PplnsResult:
    """The finder's account takes the reward less the pool fee (floor(reward x pool_fee))."""
    reward = satoshis(block_reward_sat, "block_reward_sat")
    fee = rate(pool_fee, "pool_fee")
    if not isinstance(finder, str) or not finder:
        raise TypeError("finder: expected a non-empty account name (str)")
    fee_sat = reward * fee.numerator // fee.denominator
    return PplnsResult({finder: reward - fee_sat}, fee_sat, 0, 1, lambda: {finder: Fraction(1)})


__all__ = ["prop_split", "solo_split"]
