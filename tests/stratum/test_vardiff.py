from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from poold.chain.difficulty import quantize
from poold.stratum.vardiff import Vardiff, VardiffConfig

CFG = VardiffConfig(
    target_share_time_s=10,
    retarget_time_s=60,
    variance=0.3,
    min_difficulty=Fraction(1, 1024),
    max_difficulty=Fraction(1 << 20),
)


def test_fast_shares_raise_difficulty_early() -> None:
    vd = Vardiff(CFG, Fraction(1), now=0)
    new = None
    t = 0.0
    while new is None:
        t += 0.5  # 20x too fast
        new = vd.on_share(t)
    assert t < 60  # did not wait for the full retarget window
    assert new == 16  # capped at a 16x step


def test_slow_shares_lower_and_on_target_keeps() -> None:
    vd = Vardiff(CFG, Fraction(64), now=0)
    assert vd.on_share(30) is None
    assert vd.on_share(61) == 20  # two shares in 61 s: avg 30.5 s -> 64 * 10/30.5 = 20.98 -> 20
    vd2 = Vardiff(CFG, Fraction(64), now=0)
    for t in range(10, 61, 10):
        out = vd2.on_share(t)
    assert out is None and vd2.difficulty == 64


def test_silence_lowers_difficulty_on_tick() -> None:
    vd = Vardiff(CFG, Fraction(64), now=0)
    assert vd.on_tick(100) is None
    assert vd.on_tick(121) == 5  # nothing for 121 s: 64 * 10/121 = 5.29 -> 5


def test_clamped_to_bounds() -> None:
    vd = Vardiff(CFG, Fraction(1 << 20), now=0)
    for i in range(1, 100):
        vd.on_share(i * 0.01)
    assert vd.difficulty == 1 << 20
    vd = Vardiff(CFG, Fraction(1, 1024), now=0)
    assert vd.on_tick(1000) is None and vd.difficulty == Fraction(1, 1024)
    assert vd.on_share(1500) is None and vd.difficulty == Fraction(1, 1024)  # slow, at the floor
    # Pinned at the ceiling, the window still restarts: a later on-target window keeps it.
    vd = Vardiff(CFG, Fraction(1 << 20), now=0)
    for i in range(1, 40):
        vd.on_share(i * 0.01)
    assert all(vd.on_share(t) is None for t in range(10, 200, 10))


@given(st.fractions(min_value=Fraction(1, 2**32), max_value=2**40))
def test_quantize(d: Fraction) -> None:
    q = quantize(d)
    assert 0 < q <= d and q > d / 2
    assert q.denominator == 1 or (q.numerator == 1 and q.denominator & (q.denominator - 1) == 0)
