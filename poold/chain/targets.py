"""Targets and difficulty as the chain defines them, on exact integers and fractions: the
diff-1 constant, compact `nBits` (as Bitcoin Core's SetCompact / GetCompact), network
difficulty. The bottom of poold: imports only the standard library.
"""

from __future__ import annotations

from fractions import Fraction

DIFF1_TARGET = 0xFFFF * 2**208
MAX_TARGET = 2**256 - 1


def target_from_difficulty(difficulty: Fraction) -> int:
    """Share target for `difficulty`: floor(diff1 / difficulty), capped at 2**256 - 1."""
    target = (DIFF1_TARGET * difficulty.denominator) // difficulty.numerator
    return min(target, MAX_TARGET)


def difficulty_from_target(target: int) -> Fraction:
    """Exact difficulty of a target: diff1 / target."""
    if target <= 0:
        raise ValueError("target must be positive")
    return Fraction(DIFF1_TARGET, target)


def target_from_bits(bits: int) -> int:
    """Decode compact `nBits` (as Bitcoin Core's arith_uint256::SetCompact, rejecting negatives)."""
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    if bits & 0x00800000:
        raise ValueError(f"nbits {bits:08x} encodes a negative target")
    shift = 8 * (exponent - 3)
    target = mantissa << shift if shift >= 0 else mantissa >> -shift
    if target == 0 or target > MAX_TARGET:
        raise ValueError(f"nbits {bits:08x} encodes an invalid target")
    return target


def bits_from_target(target: int) -> int:
    """Encode a target as compact `nBits` (as GetCompact: the encoded target is <= `target`)."""
    if not 0 < target <= MAX_TARGET:
        raise ValueError("target out of range")
    size = (target.bit_length() + 7) // 8
    shift = 8 * (size - 3)
    mantissa = target >> shift if shift >= 0 else target << -shift
    if mantissa & 0x00800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def network_difficulty(bits: int) -> Fraction:
    """Network difficulty of a block with compact target `bits`: diff1 / target(bits)."""
    return difficulty_from_target(target_from_bits(bits))
