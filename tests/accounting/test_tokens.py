from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting import reference, token_settle

DAY = 86_400
BASE = dict(
    th_per_token=1,
    w_per_th=20,
    usd_per_kwh="0.06",
    btc_usd=60_000,
    delivered_th_per_s=100,
    period_earnings_sat=10_000_000,
)


def settle(opening, transfers, **kw):
    args = {**BASE, **kw}
    return token_settle(0, DAY, opening, transfers, **args)


def as_reference(opening, transfers, **kw):
    a = {**BASE, **kw}
    return reference.token_settle(
        0,
        DAY,
        {h: Fraction(v) for h, v in opening.items()},
        [(t, s, d, Fraction(x)) for t, s, d, x in transfers],
        th_per_token=Fraction(a["th_per_token"]),
        w_per_th=Fraction(a["w_per_th"]),
        usd_per_kwh=Fraction(a["usd_per_kwh"]),
        btc_usd=Fraction(a["btc_usd"]),
        delivered_th_per_s=Fraction(a["delivered_th_per_s"]),
        earnings=a["period_earnings_sat"],
        service_usd_per_th_day=Fraction(a.get("service_usd_per_th_day", 0)),
        discount=Fraction(a.get("discount", 0)),
        policy=a.get("negative_policy", "carry"),
        debt_in=a.get("debt_in") or {},
    )


def assert_same(got, want) -> None:
    assert got.delivery_ratio == want["delivery_ratio"]
    assert got.holders_pot_sat == want["holders_pot_sat"]
    assert got.operator_retained_sat == want["operator_retained_sat"]
    assert set(got.lines) == set(want["lines"])
    for h, line in got.lines.items():
        w = want["lines"][h]
        for k, v in w.items():
            assert getattr(line, k) == v, (h, k)


def test_mid_period_transfer_moves_token_seconds_at_its_time() -> None:
    r = settle({"ann": 60, "ben": 40}, [(DAY // 2, "ann", "ben", 20)])
    assert r.lines["ann"].token_seconds == 60 * DAY // 2 + 40 * DAY // 2
    assert r.lines["ben"].token_seconds == 40 * DAY // 2 + 60 * DAY // 2
    assert r.delivery_ratio == 1 and r.holders_pot_sat == 10_000_000
    assert r.lines["ann"].gross_sat == r.lines["ben"].gross_sat == 5_000_000
    # 50 TH for 24 h at 20 W/TH = 24 kWh x $0.06 = $1.44 = 2,400 sat at $60,000.
    assert r.lines["ann"].electricity_sat == 2_400


def test_under_delivery_scales_costs_and_over_delivery_keeps_the_excess() -> None:
    under = settle({"a": 200}, [], delivered_th_per_s=100)
    assert under.delivery_ratio == Fraction(1, 2) and under.holders_pot_sat == 10_000_000
    assert under.lines["a"].electricity_sat == 4_800  # costs follow delivered hashrate (100 TH)
    over = settle({"a": 50}, [], delivered_th_per_s=100)
    assert over.delivery_ratio == 1 and over.holders_pot_sat == 5_000_000
    assert over.operator_retained_sat == 5_000_000


def test_negative_net_carried_then_repaid_or_clamped() -> None:
    costly = dict(period_earnings_sat=1_000, service_usd_per_th_day=1)
    first = settle({"a": 100}, [], **costly)
    line = first.lines["a"]
    assert line.net_sat < 0 and line.paid_sat == 0 and line.debt_out_sat == -line.net_sat
    nxt = settle({"a": 100}, [], debt_in={"a": line.debt_out_sat})
    l2 = nxt.lines["a"]
    assert l2.debt_in_sat == line.debt_out_sat and l2.paid_sat == l2.net_sat - l2.debt_in_sat
    clamped = settle({"a": 100}, [], negative_policy="clamp", **costly)
    lc = clamped.lines["a"]
    assert lc.written_off_sat == -lc.net_sat and lc.debt_out_sat == 0 and lc.paid_sat == 0


def test_mint_burn_and_debt_only_holders() -> None:
    r = settle({"a": 10}, [(100, None, "b", 5), (200, "a", None, 10)], debt_in={"c": 7})
    assert r.lines["b"].token_seconds == 5 * (DAY - 100)
    assert r.lines["a"].token_seconds == 10 * 200
    assert r.lines["c"].debt_out_sat == 7 and r.lines["c"].gross_sat == 0


@pytest.mark.parametrize(
    ("opening", "transfers", "kwargs", "error", "needle"),
    [
        ({"a": 1}, [(10, "a", "b", 2)], {}, ValueError, "makes the balance of 'a' negative"),
        ({"a": 1}, [(DAY, "a", "b", 1)], {}, ValueError, "outside the period"),
        ({"a": 1}, [(-1, "a", "b", 1)], {}, ValueError, "outside the period"),
        ({"a": 1}, [(1, "a", "a", 1)], {}, ValueError, "same"),
        ({"a": 1}, [(1, None, None, 1)], {}, ValueError, "sender or a receiver"),
        ({"a": 1}, [(1, "a", "b", 0)], {}, ValueError, "amount: must be > 0"),
        ({"a": -1}, [], {}, ValueError, "opening"),
        ({"a": 1}, [], {"negative_policy": "forgive"}, ValueError, "negative_policy"),
        ({"a": 1}, [], {"btc_usd": 0}, ValueError, "btc_usd"),
        ({"a": 1}, [], {"usd_per_kwh": 0.06}, TypeError, "usd_per_kwh"),
        ({"a": 1}, [], {"discount": "2"}, ValueError, "discount"),
        ({"a": 1}, [(1.5, "a", "b", 1)], {}, TypeError, "transfers\\[0\\].t"),
    ],
)
def test_bad_input(opening, transfers, kwargs, error, needle) -> None:
    with pytest.raises(error, match=needle):
        settle(opening, transfers, **kwargs)


holders = st.sampled_from(["h1", "h2", "h3", "h4", "h5"])


@st.composite
def periods(draw):
    opening = draw(st.dictionaries(holders, st.integers(0, 50), max_size=5))
    balance = dict(opening)
    transfers = []
    for t in sorted(draw(st.lists(st.integers(0, DAY - 1), max_size=12))):
        kind = draw(st.integers(0, 2))
        if kind == 0 or not any(balance.values()):
            dst = draw(holders)
            amt = draw(st.integers(1, 20))
            transfers.append((t, None, dst, amt))
            balance[dst] = balance.get(dst, 0) + amt
            continue
        src = draw(st.sampled_from(sorted(h for h, b in balance.items() if b > 0)))
        amt = draw(st.integers(1, balance[src]))
        dst = None if kind == 2 else draw(holders.filter(lambda h, s=src: h != s))
        transfers.append((t, src, dst, amt))
        balance[src] -= amt
        if dst is not None:
            balance[dst] = balance.get(dst, 0) + amt
    return opening, transfers


@settings(max_examples=150, deadline=None)
@given(
    periods(),
    st.integers(0, 300),
    st.integers(0, 10**8),
    st.sampled_from(["carry", "clamp"]),
    st.dictionaries(holders, st.integers(0, 10**6), max_size=3),
    st.sampled_from([0, 1, "0.35"]),
    st.sampled_from([0, "0.1"]),
)
def test_matches_reference_and_invariants(
    period, delivered, earnings, policy, debts, svc, disc
) -> None:
    opening, transfers = period
    kw = dict(
        delivered_th_per_s=delivered,
        period_earnings_sat=earnings,
        negative_policy=policy,
        debt_in=debts,
        service_usd_per_th_day=svc,
        discount=disc,
    )
    got = settle(opening, transfers, **kw)
    assert_same(got, as_reference(opening, transfers, **kw))
    assert sum(line.gross_sat for line in got.lines.values()) == got.holders_pot_sat or not any(
        line.token_seconds for line in got.lines.values()
    )
    assert got.holders_pot_sat + got.operator_retained_sat == earnings
    for line in got.lines.values():
        assert (
            line.paid_sat - line.debt_out_sat - line.written_off_sat
            == line.net_sat - line.debt_in_sat
        )
        assert line.net_sat == line.gross_sat - line.electricity_sat - line.service_sat


def test_cost_rates_with_huge_denominators_stay_exact() -> None:
    """Found through the ledger's token test: a tiny TH per token and an odd BTC/USD rate make
    the per-second cost rate a fraction whose denominator does not fit int64."""
    kw = {
        "th_per_token": Fraction(1, 10**24),
        "delivered_th_per_s": Fraction(7, 10**20),
        "btc_usd": Fraction(6543210, 100),
        "w_per_th": Fraction(215, 10),
        "discount": Fraction(1, 10),
        "service_usd_per_th_day": Fraction(1, 100),
    }
    opening = {"alice": 600, "bob": 3}
    transfers = [(DAY // 3, "alice", "carol", Fraction(501, 2))]
    assert_same(settle(opening, transfers, **kw), as_reference(opening, transfers, **kw))
