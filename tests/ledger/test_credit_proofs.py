"""Miners' verifiable credits, on SQLite and PostgreSQL: every PPLNS/PROP/SOLO block and FPPS
booking gets a Merkle-sum tree in its own transaction; each miner's proof passes the
standalone verifier, the scores are the window rule's, the chain links settlements in order,
and a tampered credit, score, fee or link is caught. Also each block's exact round effort."""

from __future__ import annotations

import copy
import itertools
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from accounting import reference
from poold.chain.targets import network_difficulty
from poold.ledger.credit_proofs import credit_proof, credit_roots
from poold.ledger.ingest import ingest
from poold.ledger.models import Block, CreditRoot, ShareSlice
from poold.ledger.settle import settle_pending, verify
from tests.ledger.test_fpps import FEE, SUBSIDY, book
from tests.ledger.test_ingest import write_shares
from tests.ledger.test_settle import BITS, T0, mine
from tests.verifier import UNANCHORED, check, complete, verifier


def proof(engine: sa.Engine, account: str, reference_: str) -> dict[str, Any]:
    with engine.connect() as conn:
        found = credit_proof(conn, account, reference_)
    assert found is not None
    # Through JSON, as a miner gets it.
    return json.loads(json.dumps(found))  # type: ignore[no-any-return]


def verified(p: dict[str, Any]) -> Any:
    """`verify.py`'s verdict; these ledgers are never anchored and their settlements are dated
    in the past, so the grace for anchoring is waived (tests/test_verify.py checks it)."""
    return check(p, **UNANCHORED)


def fails(p: dict[str, Any], why: str) -> None:
    with pytest.raises(verifier.Failed, match=why):
        verified(p)


@pytest.mark.parametrize("scheme", ["pplns", "prop", "solo"])
def test_every_credited_miner_of_a_block_can_verify_its_credit(
    ledger: sa.Engine, tmp_path: Path, scheme: str
) -> None:
    mine(tmp_path / "log", 40, {25: True, 39: True})
    ingest(ledger, tmp_path / "log", 0)
    fee = Fraction(1, 100)
    settled = settle_pending(ledger, pool_fee=fee, scheme=scheme)
    assert len(settled) == 2
    for s in settled:
        for account, credit in s.credits.items():
            p = proof(ledger, account, s.block_hash)
            assert int(p["line"]["credit_sat"]) == credit
            assert verified(p).lines[-1].startswith("not anchored on chain yet")
        with ledger.connect() as conn:
            lines = json.loads(
                conn.execute(
                    sa.select(CreditRoot.lines).where(CreditRoot.reference == s.block_hash)
                ).scalar_one()
            )
        assert {a: v["credit_sat"] for a, v in lines.items() if v["credit_sat"]} == {
            a: c for a, c in s.credits.items() if c
        }
        total = sum(v["credit_sat"] for v in lines.values())
        assert total + s.pool_fee_sat + s.unallocated_sat == 5_000_000_000
    # The scores are the rule's: PPLNS against the slow reference over every slice.
    if scheme == "pplns":
        with ledger.connect() as conn:
            rows = conn.execute(
                sa.select(ShareSlice.slice_start, ShareSlice.account_id, ShareSlice.diff_num,
                          ShareSlice.diff_den, ShareSlice.bits)
                .order_by(ShareSlice.slice_start, ShareSlice.account_id)
            ).all()  # fmt: skip
        last = settled[0]
        found = T0 + 25 * 60_000
        shares = [
            (f"m{a - 1}", Fraction(int(n), int(d)), network_difficulty(int(b)))
            for t, a, n, d, b in rows
            if t * 1000 <= found
        ]
        _c, _f, _u, scores = reference.pplns(5_000_000_000, shares, Fraction(2), fee)
        p = proof(ledger, next(iter(last.credits)), last.block_hash)
        with ledger.connect() as conn:
            stored = conn.execute(
                sa.select(CreditRoot.lines).where(CreditRoot.reference == last.block_hash)
            ).scalar_one()
        got = {a: Fraction(v["score"]) for a, v in json.loads(stored).items()}
        assert got == {a: s for a, s in scores.items() if s}
        assert p["period"]["inputs"]["score_total"] == "2"


def test_tampering_with_a_miners_proof_is_caught(ledger: sa.Engine, tmp_path: Path) -> None:
    mine(tmp_path / "log", 40, {25: True, 39: True})
    ingest(ledger, tmp_path / "log", 0)
    first, second = settle_pending(ledger, pool_fee=Fraction(1, 100))
    account = max(first.credits, key=lambda a: first.credits[a])
    good = proof(ledger, account, first.block_hash)
    verified(good)
    # The later settlement links to this one: its proof carries the chain after it.
    assert [link["key"] for link in good["chain"]] == [f"pplns:{second.block_hash}"]

    bad = copy.deepcopy(good)
    bad["line"]["credit_sat"] += 1
    fails(bad, "does not climb")
    bad = copy.deepcopy(good)
    bad["line"]["score"] = str(Fraction(bad["line"]["score"]) * 2)
    fails(bad, "does not climb")
    bad = copy.deepcopy(good)
    bad["period"]["inputs"]["fee_sat"] += 1
    fails(bad, "commitment")
    bad = copy.deepcopy(good)
    bad["chain"][0]["previous"] = "00" * 32
    fails(bad, "chain breaks")
    bad = copy.deepcopy(good)
    bad["path"][0]["sums"][0] += 5
    fails(bad, "does not climb")

    # An operator who rebuilds a consistent tree and commitment around an overcredited line
    # (another miner underpaid) still fails the rules: the quota allows floor or floor + 1.
    from accounting.merkle_sum import CREDIT, GENESIS, period_tree, proof_document

    with ledger.connect() as conn:
        row = conn.execute(
            sa.select(CreditRoot).where(CreditRoot.reference == first.block_hash)
        ).one()
    lines = json.loads(row.lines)
    other = next(a for a in lines if a != account and lines[a]["credit_sat"] > 10)
    lines[account]["credit_sat"] += 10
    lines[other]["credit_sat"] -= 10
    salts = {a: bytes([i + 1]) * 16 for i, a in enumerate(sorted(lines))}
    tree = period_tree(lines, salts, CREDIT)
    forged = proof_document(
        tree, account, salts[account], lines[account], json.loads(row.inputs), GENESIS, (), CREDIT
    )
    fails(complete(forged), "quota")


def test_fpps_bookings_are_verifiable_with_carried_remainders(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    avg = Fraction(12_345_678, 7)
    write_shares(tmp_path / "log", 150)
    ingest(ledger, tmp_path / "log", 0)
    first = book(ledger, 1_000, avg)
    write_shares(tmp_path / "log", 150, start=150)
    ingest(ledger, tmp_path / "log", 0)
    second = book(ledger, 2_000, avg)
    assert first is not None and second is not None
    checked = 0
    for booked, end in ((first, 1_000), (second, 2_000)):
        with ledger.connect() as conn:
            lines = json.loads(
                conn.execute(
                    sa.select(CreditRoot.lines).where(CreditRoot.reference == str(end))
                ).scalar_one()
            )
        for account in lines:
            p = proof(ledger, account, str(end))
            verified(p)
            assert int(p["line"]["credit_sat"]) == booked.credits.get(account, 0)
            assert Fraction(p["line"]["carry_out"]) == booked.carried.get(account, 0)
            assert p["period"]["inputs"]["subsidy_sat"] == SUBSIDY
            assert Fraction(p["period"]["inputs"]["pool_fee"]) == FEE
            checked += 1
    # The second booking carries in what the first carried out.
    p1 = proof(ledger, "acct0", "1000")
    p2 = proof(ledger, "acct0", "2000")
    assert p2["line"]["carry_in"] == p1["line"]["carry_out"] != "0"
    bad = copy.deepcopy(p2)
    bad["period"]["inputs"]["avg_fees_sat"] = str(avg + 1)
    fails(bad, "commitment")
    assert checked >= 4
    with ledger.connect() as conn:
        chain = credit_roots(conn, 10, 0)
    assert [c["key"] for c in chain] == ["fpps:2000", "fpps:1000"]
    assert chain[0]["previous"] == chain[1]["commitment"]


def test_an_fpps_line_crediting_more_than_a_block_per_share_is_refused(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    """Every third share of `write_shares` is over its network difficulty (1): each counts one
    block, so no score exceeds the share count. An operator who rebuilds a consistent tree,
    inputs and commitment around uncapped scores (and the credits they give) is refused."""
    from accounting.merkle_sum import FPPS_CREDIT, GENESIS, period_tree, proof_document

    write_shares(tmp_path / "log", 150)
    ingest(ledger, tmp_path / "log", 0)
    booked = book(ledger, 1_000, Fraction(0))
    assert booked is not None
    with ledger.connect() as conn:
        row = conn.execute(sa.select(CreditRoot).where(CreditRoot.reference == "1000")).one()
    lines = json.loads(row.lines)
    block = SUBSIDY * (1 - FEE)
    for account, line in lines.items():
        assert Fraction(line["score"]) <= line["shares"]
        assert line["credit_sat"] <= block * line["shares"]
        verified(proof(ledger, account, "1000"))
    account = sorted(lines)[0]
    forged_lines = copy.deepcopy(lines)
    forged = forged_lines[account]
    forged["score"] = str(forged["shares"] + 1)
    forged["credit_sat"] = int(block * (forged["shares"] + 1))
    forged["carry_in"] = forged["carry_out"] = "0"
    inputs = json.loads(row.inputs)
    inputs["booked_sat"] = sum(v["credit_sat"] for v in forged_lines.values())
    salts = {a: bytes([i + 1]) * 16 for i, a in enumerate(sorted(forged_lines))}
    tree = period_tree(forged_lines, salts, FPPS_CREDIT)
    doc = proof_document(tree, account, salts[account], forged, inputs, GENESIS, (), FPPS_CREDIT)
    fails(complete(doc), "more than one block")


def test_each_settled_block_records_its_exact_round_effort(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    mine(tmp_path / "log", 40, {25: True, 39: True})
    ingest(ledger, tmp_path / "log", 0)
    settle_pending(ledger)
    with ledger.connect() as conn:
        efforts = dict(
            conn.execute(sa.select(Block.found_ms, Block.effort_num).order_by(Block.found_ms)).all()
        )
        dens = dict(conn.execute(sa.select(Block.found_ms, Block.effort_den)).all())
        rows = conn.execute(
            sa.select(ShareSlice.slice_start, ShareSlice.diff_num, ShareSlice.diff_den)
        ).all()
    net = network_difficulty(BITS)
    bounds = [None, T0 + 25 * 60_000, T0 + 39 * 60_000]
    for before, found in itertools.pairwise(bounds):
        assert found is not None
        want = sum(
            (
                Fraction(int(n), int(d)) / net
                for t, n, d in rows
                if (before is None or t * 1000 > before // 60_000 * 60_000) and t * 1000 <= found
            ),
            Fraction(0),
        )
        assert Fraction(int(efforts[found + 1]), int(dens[found + 1])) == want > 0


def test_ledger_verify_checks_the_credit_chain_against_the_journal(
    ledger: sa.Engine, tmp_path: Path
) -> None:
    mine(tmp_path / "log", 40, {25: True, 39: True})
    ingest(ledger, tmp_path / "log", 0)
    first, _second = settle_pending(ledger, pool_fee=Fraction(1, 100))
    assert verify(ledger) == []
    with ledger.begin() as conn:
        row = conn.execute(
            sa.select(CreditRoot.id, CreditRoot.lines).where(
                CreditRoot.reference == first.block_hash
            )
        ).one()
        lines = json.loads(row.lines)
        account = next(a for a in lines if lines[a]["credit_sat"])
        lines[account]["credit_sat"] += 1  # the stored lines no longer match root or journal
        conn.execute(
            sa.update(CreditRoot).where(CreditRoot.id == row.id).values(lines=json.dumps(lines))
        )
    problems = verify(ledger)
    assert any("does not match its lines" in p for p in problems), problems
    assert any("differ from its credit lines" in p for p in problems), problems
    with ledger.begin() as conn:
        conn.execute(
            sa.update(CreditRoot).where(CreditRoot.id == row.id).values(previous="11" * 32)
        )
    assert any("credit chain breaks" in p for p in verify(ledger))
