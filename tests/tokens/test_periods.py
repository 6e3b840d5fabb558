"""A token period settled from the ledger, on SQLite and PostgreSQL: it waits until it can be
done right, equals `accounting.token_settle` on independently gathered inputs, balances the
journal, happens once, and freezes what it used."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
import sqlalchemy as sa

from accounting import token_settle
from poold.config import TokensConfig
from poold.ledger.ingest import ingest
from poold.ledger.maturity import _apply, _pending
from poold.ledger.models import Account, ShareSlice, TokenStatement, Worker
from poold.ledger.settle import balances, settle_pending, verify
from poold.shares.log import read_log
from poold.tokens.settle import period_of, set_price, settle_period
from poold.tokens.transfers import TokenError, import_transfers, parse_records
from tests.ledger.test_settle import T0, mine

CFG = TokensConfig(
    enabled=True,
    th_per_token=Fraction(1, 10**24),  # tiny tokens: the test fleet's hashrate is tiny too
    w_per_th=Fraction(215, 10),
    usd_per_kwh=Fraction(5, 100),
    service_usd_per_th_day=Fraction(1, 100),
    discount=Fraction(1, 10),
    fleet_accounts=("m0", "m1"),
)
START, END = period_of(T0 // 1000, CFG)
PRICE = Fraction(6543210, 100)


def test_a_period_settles_once_and_exactly(ledger: sa.Engine, tmp_path: Path) -> None:
    log = tmp_path / "log"
    mine(log, 40, {30: True, 39: True})
    ingest(ledger, log, 0)
    settled = settle_pending(ledger, pool_fee=Fraction(1, 100))
    transfers = [
        {"id": "mint:a", "ts": START - 10, "to": "alice", "amount": "600"},
        {"id": "mint:b", "ts": START + 3600, "to": "bob", "amount": "400"},
        {"id": "a->c", "ts": START + 40_000, "from": "alice", "to": "carol", "amount": "250.5"},
    ]
    import_transfers(ledger, parse_records(transfers))

    assert "ends at" in (settle_period(ledger, CFG, START, now=END).waiting or "")
    assert "no BTC/USD price" in (settle_period(ledger, CFG, START, now=END + 400).waiting or "")
    set_price(ledger, START, PRICE, CFG)
    waiting = settle_period(ledger, CFG, START, now=END + 400).waiting or ""
    assert "is not mature yet" in waiting  # the fleet's blocks found today are still immature
    for block_hash, entry in _pending(ledger):
        _apply(ledger, block_hash, entry, 100)

    # Defect 3 of issue 13: a node not yet ingested through the period's end holds it.
    lagging = settle_period(ledger, CFG, START, now=END + 400, through_ms=END * 1000 - 1)
    assert lagging.settled is None and "ingested only through" in (lagging.waiting or "")
    done = settle_period(ledger, CFG, START, now=END + 400, through_ms=END * 1000)
    assert done.settled is not None and done.waiting is None

    # The same settlement from inputs gathered independently: credits as settled, hashrate
    # straight from the share log, transfers as given.
    earnings = sum(s.credits.get(a, 0) for s in settled for a in CFG.fleet_accounts)
    work = sum(
        Fraction(int(r["diff_num"]), int(r["diff_den"]))
        for _p, r in read_log(log)
        if r["t"] == "share" and r["account"] in CFG.fleet_accounts
    )
    want = token_settle(
        START,
        END,
        {"alice": 600},
        [(START + 3600, None, "bob", 400), (START + 40_000, "alice", "carol", Fraction(5010, 20))],
        th_per_token=CFG.th_per_token,
        w_per_th=CFG.w_per_th,
        usd_per_kwh=CFG.usd_per_kwh,
        btc_usd=PRICE,
        delivered_th_per_s=work * 2**32 / (END - START) / 10**12,
        period_earnings_sat=earnings,
        service_usd_per_th_day=CFG.service_usd_per_th_day,
        discount=CFG.discount,
    )
    got = done.settled
    assert got.lines == want.lines and got.holders_pot_sat == want.holders_pot_sat
    assert got.operator_retained_sat == want.operator_retained_sat > 0
    assert earnings > 0 and set(got.lines) == {"alice", "bob", "carol"}

    bal = balances(ledger)
    assert verify(ledger) == []
    for holder, line in want.lines.items():
        assert -bal.get(f"holder:{holder}", 0) == line.paid_sat
    with ledger.connect() as conn:
        rows = conn.execute(
            sa.select(TokenStatement.holder, TokenStatement.paid_sat).order_by(
                TokenStatement.holder
            )
        ).all()
    assert [(h, p) for h, p in rows] == [(h, want.lines[h].paid_sat) for h in sorted(want.lines)]

    again = settle_period(ledger, CFG, START, now=END + 10**6)
    assert again.settled is None and again.waiting is None  # settled once: nothing changes
    assert balances(ledger) == bal
    late = parse_records(
        [{"id": "late", "ts": START + 50_000, "from": "bob", "to": "dave", "amount": "1"}]
    )
    with pytest.raises(TokenError, match="falls in a period already settled"):
        import_transfers(ledger, late)
    with pytest.raises(TokenError, match="already settled: its price is final"):
        set_price(ledger, START, PRICE * 2, CFG)


def test_debt_is_carried_into_the_next_period(ledger: sa.Engine) -> None:
    """The fleet hashes but finds nothing: electricity and service are owed, carried as the
    holder's debt into the next period, which starts from it."""
    with ledger.begin() as conn:  # one busy minute: ~50,000 TH/s over the day
        conn.execute(sa.insert(Account).values(id=1, name="m0"))
        conn.execute(sa.insert(Worker).values(id=1, account_id=1, name="rig"))
        conn.execute(
            sa.insert(ShareSlice).values(
                node_id=0,
                account_id=1,
                worker_id=1,
                slice_start=START + 600,
                bits=0x1D00FFFF,
                diff_num=10**15,
                diff_den=1,
                shares=1,
                first_ms=0,
                last_ms=0,
            )
        )
    cfg = CFG.model_copy(update={"th_per_token": Fraction(10_000)})
    import_transfers(
        ledger, parse_records([{"id": "m", "ts": START - 1, "to": "alice", "amount": "5"}])
    )
    nxt = START + CFG.period_s
    for start in (START, nxt):
        set_price(ledger, start, PRICE, cfg)
    first = settle_period(ledger, cfg, START, now=nxt + CFG.period_s + 400).settled
    assert first is not None
    line = first.lines["alice"]
    assert line.gross_sat == 0 and line.electricity_sat > 0
    assert line.debt_out_sat == line.electricity_sat + line.service_sat and line.paid_sat == 0
    second = settle_period(ledger, cfg, nxt, now=nxt + CFG.period_s + 400).settled
    assert second is not None
    assert second.lines["alice"].debt_in_sat == line.debt_out_sat  # brought in, still owed
    assert second.lines["alice"].debt_out_sat == line.debt_out_sat  # no hashrate, no new cost
    assert balances(ledger)["holder:alice:debt"] == line.debt_out_sat
    assert verify(ledger) == []


def test_each_settled_period_commits_its_statements_in_a_chain(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    """Two periods settled: the second's commitment links to the first's; a holder's proof of
    the first period carries that link and passes the standalone verifier; the salts never
    leave the ledger except in the holder's own proof."""
    from poold.tokens.proofs import proof_for, roots
    from tests.verifier import UNANCHORED, check

    log = tmp_path / "log"
    mine(log, 40, {})
    ingest(ledger, log, 0)
    import_transfers(
        ledger,
        parse_records(
            [
                {"id": "mint:a", "ts": START - 10, "to": "alice", "amount": "600"},
                {"id": "mint:b", "ts": START - 10, "to": "bob", "amount": "2.5"},
            ]
        ),
    )
    second = START + CFG.period_s
    for start in (START, second):
        set_price(ledger, start, PRICE, CFG)
        assert settle_period(ledger, CFG, start, now=second + 10**6).settled is not None
    with ledger.connect() as conn:
        chain = roots(conn, 10, 0)
        assert [r["period_start"] for r in chain] == [second, START]
        assert chain[0]["previous"] == chain[1]["commitment"]
        proof = proof_for(conn, "bob", START)
        assert proof_for(conn, "nobody", START) is None
    assert proof is not None
    assert [link["commitment"] for link in proof["chain"]] == [chain[0]["commitment"]]
    check(proof, **UNANCHORED)
    assert "salt" not in str(chain)


def test_a_short_delivery_is_made_good_once_from_the_operator(ledger: sa.Engine) -> None:
    """Tokens promise more than the fleet delivered (under 95 %): with `make_good` the
    shortfall TH*s at the period's network hashprice is posted to the holders by token-seconds
    (largest remainder) from the operator's account, once; the statements show each part, the
    published inputs commit the total, and each holder's proof says it."""
    import json

    from accounting import hashprice
    from accounting.money import largest_remainder
    from poold.chain.targets import network_difficulty
    from poold.ledger.models import StatementRoot
    from poold.ledger.network import record_sample
    from poold.tokens.proofs import proof_for
    from tests.verifier import UNANCHORED, check, complete

    with ledger.begin() as conn:  # one minute of work: far below what the tokens promise
        conn.execute(sa.insert(Account).values(id=1, name="m0"))
        conn.execute(sa.insert(Worker).values(id=1, account_id=1, name="rig"))
        conn.execute(
            sa.insert(ShareSlice).values(
                node_id=0, account_id=1, worker_id=1, slice_start=START + 600, bits=0x1D00FFFF,
                diff_num=10**15, diff_den=1, shares=1, first_ms=0, last_ms=0,
            )
        )  # fmt: skip
    record_sample(ledger, t_s=START - 60, height=840_000, bits=0x17034219,
                  avg_fees_sat=Fraction(2_500_000), fee_blocks=144)  # fmt: skip
    cfg = CFG.model_copy(update={"th_per_token": Fraction(10**8), "make_good": True})
    transfers = [
        {"id": "a", "ts": START - 1, "to": "alice", "amount": "2"},
        {"id": "b", "ts": START - 1, "to": "bob", "amount": "1"},
    ]
    import_transfers(ledger, parse_records(transfers))
    set_price(ledger, START, PRICE, cfg)
    done = settle_period(ledger, cfg, START, now=END + 400).settled
    assert done is not None and done.delivery_ratio < Fraction(95, 100)
    hp = hashprice(network_difficulty(0x17034219), 312_500_000, 2_500_000)
    value = (done.nominal_th_seconds - done.delivered_th_seconds) * hp / 86400
    total = value.numerator // value.denominator
    assert total > 0
    parts = largest_remainder(
        total, {"alice": total * Fraction(2, 3), "bob": total * Fraction(1, 3)}
    )
    with ledger.connect() as conn:
        got = dict(
            conn.execute(sa.select(TokenStatement.holder, TokenStatement.make_good_sat)).all()
        )
        inputs = json.loads(conn.execute(sa.select(StatementRoot.inputs)).scalar_one())
    assert got == parts and inputs["make_good_sat"] == total
    b = balances(ledger)
    assert b["operator:make_good"] == total  # a debit: the operator owes it
    assert b["holder:alice"] <= -parts["alice"] and b["holder:bob"] <= -parts["bob"]
    # Once: settling again changes nothing.
    assert settle_period(ledger, cfg, START, now=END + 500).settled is None
    assert balances(ledger)["operator:make_good"] == total
    assert verify(ledger) == []
    with ledger.connect() as conn:
        doc = proof_for(conn, "bob", START)
    assert doc is not None
    lines = check(complete(json.loads(json.dumps(doc))), **UNANCHORED).lines
    assert any(f"worth {total} sat" in x and f"part is {total // 3} sat" in x for x in lines)


@pytest.mark.parametrize(
    ("nodes", "why"),
    [
        ((0,), "the leaves of node(s) [1] do not reach this daemon"),
        ((0, 1), "the leaf files hold 0 TH·s of the fleet's work, the statement claims"),
    ],
)
def test_a_work_root_missing_other_nodes_work_is_not_committed(
    ledger: sa.Engine, tmp_path: Path, nodes: tuple[int, ...], why: str
) -> None:
    """The fleet's shares of the period came from nodes 0 and 1, but node 1's leaves do not
    reach the leader, or the leaf files lack the shares: a root over them would make the
    statement's honest delivery look misstated, so the period settles without a work root
    and the log says why."""
    import numpy as np
    from structlog.testing import capture_logs

    from poold.ledger.models import StatementRoot, WorkRoot
    from poold.shares.leaves import LEAF, write_leaves

    with ledger.begin() as conn:
        conn.execute(sa.insert(Account).values(id=1, name="m0"))
        conn.execute(sa.insert(Worker).values(id=1, account_id=1, name="rig"))
        for node in (0, 1):
            conn.execute(
                sa.insert(ShareSlice).values(
                    node_id=node, account_id=1, worker_id=1, slice_start=START + 60,
                    bits=0x1D00FFFF, diff_num=1000, diff_den=1, shares=1, first_ms=0, last_ms=0,
                )
            )  # fmt: skip
    dirs = []
    for node in nodes:
        work = tmp_path / f"work{node}"
        work.mkdir()
        write_leaves(work / f"leaves-{START}.bin", node, START, END, [], [], np.zeros(0, LEAF))
        dirs.append((node, work))
    alice = {"id": "a", "ts": START - 1, "to": "alice", "amount": "1"}
    import_transfers(ledger, parse_records([alice]))
    set_price(ledger, START, PRICE, CFG)
    with capture_logs() as events:
        done = settle_period(ledger, CFG, START, now=END + 400, work_dirs=dirs).settled
    assert done is not None
    [skipped] = [e for e in events if e["event"] == "work_proof_skipped"]
    assert why in skipped["reason"], skipped
    with ledger.connect() as conn:
        inputs = json.loads(conn.execute(sa.select(StatementRoot.inputs)).scalar_one())
        assert conn.execute(sa.select(sa.func.count()).select_from(WorkRoot)).scalar_one() == 0
    assert "work_root" not in inputs and verify(ledger) == []
    # No root, no sample to wait for: the leaves are released at once (an unsettled period's
    # are not), so no node's share-log retention waits on this period.
    from poold.tokens.work import released

    assert released(ledger, [START, END]) == [START]
