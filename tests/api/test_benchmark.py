"""Statements and the fleet against the network's hashprice, on both ledgers over a real
socket: each statement says what the holder's nominal TH/s would have earned at plain
hashprice and where its gross and net differ from it; the fleet's series per UTC day (or
hour) gives delivered TH/s, the hashprice, the FPPS value of the work and what the fleet was
credited, as JSON and as CSV, exactly, every response checked against the OpenAPI document."""

from __future__ import annotations

import csv
import io
from fractions import Fraction
from pathlib import Path

import sqlalchemy as sa

from accounting import hashprice
from poold.api.app import ApiContext, make_app
from poold.chain.subsidy import subsidy_sat
from poold.chain.targets import network_difficulty
from poold.ledger.models import Account, ShareSlice
from poold.ledger.network import record_sample
from poold.metrics import Metrics
from tests.api.test_api import Api, api, check
from tests.api.test_edges import serve
from tests.helpers import make_config
from tests.ledger.test_settle import BITS, T0
from tests.tokens.test_periods import CFG, START

__all__ = ["api"]
NOW = T0 // 1000 + 40 * 60  # the api fixture's clock
HP1 = hashprice(network_difficulty(BITS), subsidy_sat(140), Fraction(1000, 3))
HP2 = hashprice(network_difficulty(BITS), subsidy_sat(141), 2500)


def sample(ledger: sa.Engine) -> None:
    """The network from before the period (height 140) and from its noon (height 141, other
    fees): the period's hashprice is the mean of the two, half a day each."""
    record_sample(
        ledger, t_s=START - 3600, height=140, bits=BITS, avg_fees_sat=Fraction(1000, 3),
        fee_blocks=144,
    )  # fmt: skip
    record_sample(
        ledger, t_s=START + 43_200, height=141, bits=BITS, avg_fees_sat=Fraction(2500),
        fee_blocks=144,
    )  # fmt: skip


async def test_a_statement_against_plain_hashprice(api: Api, ledger: sa.Engine) -> None:
    _, before = await api.get("/api/v1/holders/alice/statements", "alice")
    assert before["items"][0]["benchmark"] is None  # no record of the network yet
    sample(ledger)
    # The same sample again changes nothing (recorded only when the network changed).
    assert not record_sample(
        ledger, t_s=START + 50_000, height=141, bits=BITS, avg_fees_sat=Fraction(2500),
        fee_blocks=144,
    )  # fmt: skip
    status, listed = await api.get("/api/v1/holders/alice/statements?limit=5&offset=0", "admin")
    check("/api/v1/holders/{holder}/statements", "get", status, listed)
    day = listed["items"][0]
    b = day["benchmark"]
    hp = (HP1 + HP2) / 2
    assert Fraction(b["hashprice_sat_per_th_day"]["exact"]) == hp and b["covered_s"] == 86_400
    nominal_th_s = Fraction(day["token_seconds"]) * CFG.th_per_token
    value = nominal_th_s * hp / 86_400
    assert Fraction(b["hashprice_value_sat"]["exact"]) == value
    ratio = Fraction(day["hashrate"]["delivery_ratio"]["exact"])
    assert Fraction(b["delivery_gap_sat"]["exact"]) == value * ratio - value
    assert Fraction(b["pool_fee_sat"]["exact"]) == -Fraction(1, 100) * value * ratio
    parts = sum(
        Fraction(b[k]["exact"])
        for k in ("hashprice_value_sat", "delivery_gap_sat", "pool_fee_sat",
                  "luck_and_rounding_sat")
    )  # fmt: skip
    assert parts == day["gross_sat"]
    costs = day["electricity_sat"] + day["service_sat"]
    assert Fraction(b["costs_sat"]["exact"]) == -costs
    assert day["gross_sat"] + Fraction(b["costs_sat"]["exact"]) == day["net_sat"]
    assert Fraction(b["costs_share_of_gross"]["exact"]) == Fraction(costs, day["gross_sat"])
    assert b["hashprice_value_sat"]["display"].endswith(" sat")
    # The CSV carries the same, exact.
    _, text = await api.get("/api/v1/holders/alice/statements.csv", "alice")
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert Fraction(row["network_hashprice_sat_per_th_day"]) == hp
    assert row["luck_and_rounding_sat"] == b["luck_and_rounding_sat"]["exact"]


def fleet_work(ledger: sa.Engine) -> Fraction:
    with ledger.connect() as conn:
        rows = conn.execute(
            sa.select(ShareSlice.diff_num, ShareSlice.diff_den)
            .join(Account, Account.id == ShareSlice.account_id)
            .where(Account.name.in_(CFG.fleet_accounts))
        ).all()
    return sum((Fraction(int(n), int(d)) for n, d in rows), Fraction(0))


async def test_the_fleet_against_hashprice_per_day_and_hour(api: Api, ledger: sa.Engine) -> None:
    sample(ledger)
    status, days = await api.get("/api/v1/fleet/daily")
    assert status == 200, days
    check("/api/v1/fleet/daily", "get", 200, days)
    assert days["step"] == "1d" and days["fleet"] == ["m0", "m1"]
    [today] = days["items"]  # the fleet's first share is today: one day, under way
    assert (today["start"], today["end"], today["complete"]) == (START, NOW, False)
    delivered = fleet_work(ledger) * 2**32 / (NOW - START) / 10**12
    assert Fraction(today["delivered_th_per_s"]["exact"]) == delivered
    # The network's hashprice so far today: HP1 until noon; it is 08:40.
    assert Fraction(today["hashprice_sat_per_th_day"]["exact"]) == HP1
    assert today["covered_s"] == NOW - START
    value = delivered * (NOW - START) * HP1 / 86_400
    assert Fraction(today["fpps_value_sat"]["exact"]) == value
    # Earned: the credits of the two blocks found today to m0 and m1 (both matured).
    credited = 0
    for account in CFG.fleet_accounts:
        _, listed = await api.get(f"/api/v1/miners/{account}/credits?limit=50")
        credited += sum(c["amount_sat"] for c in listed["items"] if c["reason"] == "pplns_block")
    assert today["earned_sat"] == credited > 0 and today["immature_sat"] == 0
    assert Fraction(today["earned_vs_value"]["exact"]) == credited / value
    assert today["display"]["period"] == "2027-01-15 (so far)"

    _, hours = await api.get("/api/v1/fleet/daily?step=1h&limit=3")
    check("/api/v1/fleet/daily", "get", 200, hours)
    [hour] = hours["items"]  # 08:00-09:00, under way: every share is in it
    assert hour["start"] == NOW // 3600 * 3600 and hour["earned_sat"] == credited
    assert Fraction(hour["delivered_th_per_s"]["exact"]) == (
        fleet_work(ledger) * 2**32 / (NOW - hour["start"]) / 10**12
    )

    status, text = await api.get("/api/v1/fleet/daily.csv?step=1h")
    [row] = list(csv.DictReader(io.StringIO(text)))
    assert row["delivered_th_per_s"] == hour["delivered_th_per_s"]["exact"]
    assert row["fpps_value_sat"] == hour["fpps_value_sat"]["exact"]
    assert int(row["earned_sat"]) == credited and row["complete"] == "no"

    status, body = await api.get("/api/v1/fleet/daily?step=2h")
    assert status == 400 and body["error"] == "step: expected one of 1d, 1h, got '2h'"


async def test_no_fleet_no_series(tmp_path: Path) -> None:
    ctx = ApiContext(make_config(tmp_path), Metrics(), None)
    async with serve(make_app(ctx)) as get:
        body = await get("/api/v1/fleet/daily", status=404)
        assert "no token fleet" in body["error"]
