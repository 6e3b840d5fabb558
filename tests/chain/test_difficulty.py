from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poold.chain.difficulty import format_difficulty, to_difficulty
from poold.chain.targets import (
    DIFF1_TARGET,
    MAX_TARGET,
    bits_from_target,
    network_difficulty,
    target_from_bits,
    target_from_difficulty,
)


def test_known_bits() -> None:
    assert target_from_bits(0x1D00FFFF) == DIFF1_TARGET
    assert network_difficulty(0x1D00FFFF) == 1
    # Mainnet block 840000: bits 0x17034219, difficulty 86388558925171.02...
    d = network_difficulty(0x17034219)
    assert abs(float(d) - 86388558925171.02) < 0.01
    # Regtest: every other hash is a block.
    assert target_from_bits(0x207FFFFF) == 0x7FFFFF << (8 * 29)


def test_share_target_extremes() -> None:
    assert target_from_difficulty(Fraction(1)) == DIFF1_TARGET
    # At 2**-32 the target is 0xffff * 2**240: all but 1 in 65536 hashes are shares.
    assert target_from_difficulty(Fraction(1, 2**32)) == 0xFFFF << 240 < MAX_TARGET
    assert target_from_difficulty(Fraction(1, 2**48)) == MAX_TARGET  # capped (never configured)
    assert target_from_difficulty(Fraction(65536)) == DIFF1_TARGET // 65536


@given(st.integers(min_value=1, max_value=MAX_TARGET))
def test_bits_roundtrip_never_exceeds_target(target: int) -> None:
    bits = bits_from_target(target)
    decoded = target_from_bits(bits)
    assert decoded <= target
    assert bits_from_target(decoded) == bits


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.5", Fraction(1, 2)),
        ("1/4", Fraction(1, 4)),
        (65536, Fraction(65536)),
        (Decimal("0.25"), Fraction(1, 4)),
        (0.5, Fraction(1, 2)),
    ],
)
def test_to_difficulty_exact(value: object, expected: Fraction) -> None:
    assert to_difficulty(value) == expected


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (0, "> 0"),
        (-1, "> 0"),
        ("abc", "cannot read"),
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        ("1/8589934592", "outside"),
        (2**70, "outside"),
        (True, "boolean"),
        ([1], "expected a number"),
    ],
)
def test_to_difficulty_rejects(value: object, needle: str) -> None:
    with pytest.raises((ValueError, TypeError), match=needle):
        to_difficulty(value)


def test_format_difficulty() -> None:
    assert format_difficulty(Fraction(8)) == 8
    assert format_difficulty(Fraction(1, 4)) == 0.25
