"""Holder statements through the whole daemon: a simulated fleet mines on simnet through one
token period (a minute here, a day in production) with a transfer in the middle; the daemon
books FPPS, settles the period by itself, and the API's statement for each holder equals
`accounting.token_settle` on inputs gathered independently (hashrate from the share log)."""

from __future__ import annotations

import asyncio
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from accounting import hashprice, mean_hashprice, token_settle
from poold.api.auth import create_token
from poold.chain.targets import network_difficulty
from poold.ledger.db import make_engine
from poold.ledger.models import JournalEntry, JournalLine, NetworkSample
from poold.ledger.settle import verify
from poold.shares.log import read_log
from poold.tokens.settle import set_price
from poold.tokens.transfers import import_transfers, parse_records
from tests.helpers import PATIENCE_S, FakeClock, wait_for

pytestmark = pytest.mark.slow

TOKENS = {
    "enabled": True,
    "th_per_token": "1/1000000000",
    "w_per_th": "20",
    "usd_per_kwh": "0.05",
    "service_usd_per_th_day": "0.01",
    "fleet_accounts": ["fleet"],
    "period_s": 60,
    "settle_delay_s": 2,
}


async def test_statements_through_the_daemon(
    start_daemon: Any, config_factory: Any, tmp_path: Path
) -> None:
    cfg = config_factory(
        pool={"scheme": "fpps", "fpps_period_s": 5, "fee": "1/50"},
        ledger={
            "url": f"sqlite:///{tmp_path / 'l.db'}",
            "ingest_interval_s": 0.5,
            "ingest_open_minutes": True,
            "auto_migrate": True,
        },
        tokens=TOKENS,
        api={"listen": "127.0.0.1:0"},
    )
    # The daemon's clock is the test's: a period is walked through second by second, each
    # second only once the fleet got a share in at the last one, so the period holds work
    # from start to end however slow the machine is.
    start = 1_800_000_000 // 60 * 60
    end = start + 60
    clock = FakeClock(start)
    rd = await start_daemon(cfg, clock=clock)
    engine = rd.daemon.ledger
    transfers = [
        {"id": "m:alice", "ts": start, "to": "alice", "amount": "3"},
        {"id": "m:bob", "ts": start + 1, "to": "bob", "amount": "1"},
        {"id": "a->c", "ts": start + 30, "from": "alice", "to": "carol", "amount": "1.5"},
    ]
    import_transfers(engine, parse_records(transfers))
    set_price(engine, start, Fraction(6500012, 100), cfg.tokens)
    admin = create_token(engine, "admin")

    host, port = rd.address
    fleet = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "poold",
        "simulate",
        "--url",
        f"stratum+tcp://{host}:{port}",
        "--miners",
        "2",
        "--duration",
        str(PATIENCE_S),
        "--account",
        "fleet",
        stdout=asyncio.subprocess.DEVNULL,
    )
    metrics = rd.daemon.metrics
    for second in range(start + 1, end + cfg.tokens.settle_delay_s + 2):
        seen = metrics.shares_accepted
        await wait_for(lambda seen=seen: metrics.shares_accepted > seen, "a share this second")
        clock.now_s = second
    fleet.terminate()
    await fleet.wait()
    await wait_for(lambda: rd.daemon.token_periods, "the daemon to settle the period")
    assert rd.daemon.token_periods, "the daemon did not settle the period"
    ahost, aport = rd.daemon.api_addresses[0]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as s:
        api = {}
        for h in ("alice", "bob", "carol"):
            async with s.get(f"http://{ahost}:{aport}/api/v1/holders/{h}/statements") as r:
                assert r.status == 200
                api[h] = (await r.json())["items"]
    await rd.shutdown()

    # Independent inputs: the fleet's work straight from the share log, its FPPS earnings
    # from the bookings whose period ended inside this one.
    work = sum(
        Fraction(int(r["diff_num"]), int(r["diff_den"]))
        for _p, r in read_log(cfg.sharelog.path)
        if r["t"] == "share" and r["account"] == "fleet" and start <= int(r["ts"]) // 1000 < end
    )
    check = make_engine(cfg.ledger.url)
    with check.connect() as conn:
        earned = -sum(
            int(v)
            for ref, v in conn.execute(
                sa.select(JournalEntry.reference, JournalLine.amount_sat)
                .join(JournalLine, JournalLine.entry_id == JournalEntry.id)
                .where(
                    JournalEntry.kind == "fpps_period",
                    JournalLine.account == "miner:fleet",
                )
            )
            if start < int(ref) <= end
        )
    want = token_settle(
        start,
        end,
        {},
        [
            (start, None, "alice", 3),
            (start + 1, None, "bob", 1),
            (start + 30, "alice", "carol", Fraction(3, 2)),
        ],
        th_per_token=Fraction(1, 10**9),
        w_per_th=20,
        usd_per_kwh=Fraction(5, 100),
        btc_usd=Fraction(6500012, 100),
        delivered_th_per_s=work * 2**32 / (end - start) / 10**12,
        period_earnings_sat=earned,
        service_usd_per_th_day=Fraction(1, 100),
    )
    assert work > 0 and earned > 0
    for holder, line in want.lines.items():
        [got] = api[holder]
        assert got["period_start"] == start
        assert Fraction(got["token_seconds"]) == line.token_seconds
        for field in ("gross_sat", "electricity_sat", "service_sat", "net_sat", "paid_sat"):
            assert got[field] == getattr(line, field), (holder, field)
    # The daemon sampled the network as it mined (the simnet's bits, the height being mined,
    # the mean fees of its blocks): each statement is benchmarked against that hashprice.
    with check.connect() as conn:
        samples = conn.execute(
            sa.select(
                NetworkSample.t_s, NetworkSample.bits, NetworkSample.subsidy_sat,
                NetworkSample.avg_fees_sat,
            ).order_by(NetworkSample.t_s)
        ).all()  # fmt: skip
    assert samples and {int(b) for _t, b, _s, _f in samples} == {rd.daemon.bitcoind.bits}
    steps = [
        (int(t), hashprice(network_difficulty(int(b)), int(sub), Fraction(f)))
        for t, b, sub, f in samples
    ]
    mean, covered = mean_hashprice(steps, start, end)
    for holder in want.lines:
        [got] = api[holder]
        bench = got["benchmark"]
        assert covered > 0 and bench["covered_s"] == covered
        assert Fraction(bench["hashprice_sat_per_th_day"]["exact"]) == mean
    assert verify(check) == []
    check.dispose()
