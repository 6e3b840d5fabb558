"""Merkle-sum statements and the standalone verifier (`verify.py`): the verifier agrees with
the settlement on generated periods, and every tampering (a leaf, a sum, a sibling, an input,
a chain link) is caught."""

from __future__ import annotations

import ast
import copy
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounting import token_settle
from accounting.merkle_sum import (
    GENESIS,
    SUMMED,
    commitment,
    inputs_digest,
    line_fields,
    node_json,
    period_tree,
    proof_document,
)
from tests.verifier import check, complete, verifier

ROOT = Path(__file__).resolve().parents[2]

START, END = 1_800_000_000, 1_800_086_400


def settle(holders: dict[str, int], **rates: Any) -> tuple[dict[str, Any], dict[str, object]]:
    x: dict[str, Any] = {
        "th_per_token": Fraction(1, 10),
        "w_per_th": Fraction(43, 2),
        "usd_per_kwh": Fraction(5, 100),
        "btc_usd": Fraction(65432),
        "delivered_th_per_s": Fraction(7, 3),
        "period_earnings_sat": 1_234_567,
        "service_usd_per_th_day": Fraction(1, 100),
        "discount": Fraction(1, 10),
        "negative_policy": "carry",
        **rates,
    }
    s = token_settle(START, END, holders, [], **x)
    q = next(iter(s.lines.values())).atoms_per_token
    inputs: dict[str, object] = {
        "period_start": START,
        "period_end": END,
        "atoms_per_token": q,
        "th_per_token": str(x["th_per_token"]),
        "w_per_th": str(x["w_per_th"]),
        "usd_per_kwh": str(x["usd_per_kwh"]),
        "discount": str(x["discount"]),
        "service_usd_per_th_day": str(x["service_usd_per_th_day"]),
        "btc_usd": str(x["btc_usd"]),
        "delivered_th_per_s": str(x["delivered_th_per_s"]),
        "earnings_sat": x["period_earnings_sat"],
        "holders_pot_sat": s.holders_pot_sat,
        "negative_policy": x["negative_policy"],
    }
    lines = {h: line_fields(line) for h, line in s.lines.items()}
    return lines, inputs


def documents(lines: dict[str, Any], inputs: dict[str, object]) -> dict[str, dict[str, Any]]:
    salts = {h: bytes([i % 256]) * 16 for i, h in enumerate(sorted(lines))}
    tree = period_tree(lines, salts)
    # A second period after this one, so the proof carries a chain link.
    first = commitment(tree.root, inputs_digest(inputs), GENESIS)
    later = {"period_start": END, "root": node_json(tree.root), "inputs_digest": "ab" * 32}
    later["previous"] = first.hex()
    later["commitment"] = commitment(tree.root, bytes.fromhex("ab" * 32), first).hex()
    return {
        h: complete(proof_document(tree, h, salts[h], lines[h], inputs, GENESIS, [later]))
        for h in lines
    }


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=6), st.integers(1, 10**6), min_size=1, max_size=9
    ),
    st.integers(0, 10**9),
    st.fractions(Fraction(0), Fraction(50), max_denominator=1000),
    st.sampled_from(["carry", "clamp"]),
    st.fractions(Fraction(1, 100), Fraction(200_000), max_denominator=100),
)
def test_the_verifier_agrees_with_the_settlement(
    holders: dict[str, int], earnings: int, delivered: Fraction, policy: str, price: Fraction
) -> None:
    lines, inputs = settle(
        holders,
        period_earnings_sat=earnings,
        delivered_th_per_s=delivered,
        negative_policy=policy,
        btc_usd=price,
    )
    for doc in documents(lines, inputs).values():
        check(doc, now=END)  # as a holder gets it: through JSON (unanchored: as of its end)


@pytest.fixture
def doc() -> dict[str, Any]:
    lines, inputs = settle({"alice": 600, "bob": 400, "carol": 250, "dave": 1, "erin": 77})
    return json.loads(json.dumps(documents(lines, inputs)["bob"]))


def tamper_leaf(d: dict[str, Any]) -> None:
    d["line"]["paid_sat"] += 1


def tamper_sum(d: dict[str, Any]) -> None:
    d["path"][0]["sums"][1] -= 5  # a sibling claims less gross: the pot no longer adds up


def tamper_sibling(d: dict[str, Any]) -> None:
    h = d["path"][-1]["hash"]
    d["path"][-1]["hash"] = ("0" if h[0] != "0" else "1") + h[1:]


def tamper_chain(d: dict[str, Any]) -> None:
    d["chain"][0]["previous"] = "cd" * 32


def tamper_input(d: dict[str, Any]) -> None:
    d["period"]["inputs"]["btc_usd"] = "70000"


def tamper_anchor(d: dict[str, Any]) -> None:
    d["anchors"] = [{"hash": "00" * 32, "height": 7, "commitment": "ef" * 32}]  # version 1's


def tamper_pot(d: dict[str, Any]) -> None:
    d["period"]["inputs"]["holders_pot_sat"] -= 1


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (tamper_leaf, "does not climb to the period's root"),
        (tamper_sum, "does not climb to the period's root"),
        (tamper_sibling, "does not climb to the period's root"),
        (tamper_chain, "the chain breaks"),
        (tamper_input, "commitment is not H"),
        (tamper_pot, "commitment is not H"),
        (tamper_anchor, r"anchors\[0\] lacks 'type'"),
    ],
)
def test_every_tampering_is_caught(doc: dict[str, Any], tamper: Any, message: str) -> None:
    check(copy.deepcopy(doc), now=END)
    bad = copy.deepcopy(doc)
    tamper(bad)
    with pytest.raises(verifier.Failed, match=message):
        check(bad, now=END)


def test_a_holder_left_out_of_a_consistent_tree_is_caught_by_the_sums() -> None:
    """An operator drops one holder's line and commits to the smaller tree, consistently:
    every path climbs and the commitment holds, but the lines' gross no longer adds up to
    the pot the inputs give."""
    lines, inputs = settle({"alice": 600, "bob": 400, "carol": 250})
    del lines["carol"]
    d = documents(lines, inputs)["bob"]
    with pytest.raises(verifier.Failed, match="gross adds up to"):
        check(d, now=END)


def test_a_wrong_line_under_a_consistent_tree_fails_the_rules() -> None:
    """The operator builds the tree over a wrong line (electricity overcharged by 1 sat): the
    path climbs, the commitment holds, and the rules still catch it."""
    lines, inputs = settle({"alice": 600, "bob": 400})
    lines["bob"]["electricity_sat"] += 1
    lines["bob"]["net_sat"] -= 1
    lines["bob"]["paid_sat"] -= 1
    d = documents(lines, inputs)["bob"]
    with pytest.raises(verifier.Failed, match="electricity_sat is"):
        check(d, now=END)


def test_the_verifier_imports_the_standard_library_only() -> None:
    tree = ast.parse((ROOT / "verify.py").read_text())
    imported = {
        (n.module or "").split(".")[0] if isinstance(n, ast.ImportFrom) else a.name.split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_verify_py_runs_on_a_proof_file(doc: dict[str, Any], tmp_path: Path) -> None:
    good = tmp_path / "proof.json"
    good.write_text(json.dumps(doc))
    # Never anchored, dated 2027: the grace is waived (tests/test_verify.py checks it).
    waived = ["--anchor-grace", str(10**12)]
    ok = subprocess.run(
        [sys.executable, str(ROOT / "verify.py"), str(good), *waived],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and ok.stdout.startswith("ok: bob's line"), ok.stdout
    tamper_leaf(doc)
    good.write_text(json.dumps(doc))
    bad = subprocess.run(
        [sys.executable, str(ROOT / "verify.py"), str(good), *waived],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "does not climb" in bad.stdout


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.integers(0, 2**70), min_size=len(SUMMED), max_size=len(SUMMED)),
        min_size=1,
        max_size=40,
    ),
    st.integers(-(2**66), 2**66),
)
def test_the_root_from_arrays_is_the_trees_root(rows: list[list[int]], net: int) -> None:
    """`period_root` (NumPy packing for what fits 62 bits, the plain path past it) commits to
    exactly the root `period_tree` builds node by node."""
    from accounting.merkle_sum import LINE_FIELDS, period_root

    lines = {
        f"h{i}": {**dict(zip(SUMMED, r, strict=True)), "net_sat": net - i}
        for i, r in enumerate(rows)
    }
    assert set(LINE_FIELDS) == set(SUMMED) | {"net_sat"}
    salts = {h: bytes([i % 256]) * 16 for i, h in enumerate(lines)}
    assert period_root(lines, salts) == period_tree(lines, salts).root
    small = {h: {f: v % 2**40 for f, v in line.items()} for h, line in lines.items()}
    assert period_root(small, salts) == period_tree(small, salts).root
