"""`verify.py` against genuine and forged proofs, offline: a statement proof anchored on the
simnet by a coinbase and by an anchor transaction (real blocks, evidence read back as the
ledger reads it) verifies and says what that establishes, never more; every forgery the
anchors exist to stop is refused with one FAILED line; no input makes it raise; a Hypothesis
test mutates genuine proofs and requires a verdict, never `ok` for a changed amount, rate or
commitment. The real node (--node, equivocation) is tested in tests/bitcoind/."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from accounting.merkle_sum import CREDIT, GENESIS, period_tree, proof_document
from poold.jobs.coinbase import statement_script
from tests.accounting.test_merkle_sum import END, documents, settle
from tests.helpers import PATIENCE_S
from tests.verifier import (
    ANCHOR_SCRIPT,
    NOW,
    PAYOUT,
    anchor_of,
    check,
    complete,
    mine,
    simnet,
    verifier,
)

ROOT = Path(__file__).resolve().parents[1]
HOLDERS = {"alice": 600, "bob": 400, "carol": 250, "dave": 1, "erin": 77}


async def anchored_doc(lines: dict[str, Any], inputs: dict[str, object], holder: str) -> dict:
    """`holder`'s proof of a period (and one later link), anchored on a fresh simnet: the
    period's commitment in a block's coinbase, the later one in an anchor transaction."""
    doc = documents(lines, inputs)[holder]
    c0 = bytes.fromhex(doc["period"]["commitment"])
    c1 = bytes.fromhex(doc["chain"][-1]["commitment"])
    net = simnet()
    h1 = await mine(net, statement=c0)
    txid = await net.send_anchor(
        statement_script(c1), address="", change_script=ANCHOR_SCRIPT, fee_rate_sat_vb=1
    )
    h2 = await mine(net)  # the pool's next block mines the anchor transaction
    doc["anchors"] = [await anchor_of(net, h1, c0), await anchor_of(net, h2, c1, txid)]
    doc["pool"] = {
        "coinbase_scripts": [PAYOUT.hex()],
        "anchor_scripts": [ANCHOR_SCRIPT.hex()],
        "anchor_interval_s": 3600,
    }
    doc["cut"] = {"head": c1.hex(), "best_block": h2, "best_height": 2, "time": NOW}
    return json.loads(json.dumps(doc))  # type: ignore[no-any-return]


@functools.cache
def _genuine() -> str:
    lines, inputs = settle(HOLDERS)
    return json.dumps(asyncio.run(anchored_doc(lines, inputs, "bob")))


@pytest.fixture
def doc() -> dict[str, Any]:
    return json.loads(_genuine())  # type: ignore[no-any-return]


def failed(d: dict[str, Any] | bytes, why: str, **options: Any) -> None:
    with pytest.raises(verifier.Failed, match=why):
        check(d, **options)


def test_a_genuine_proof_says_what_its_anchors_establish(doc: dict[str, Any]) -> None:
    """On the simnet the headers' work is trivial: the verdict says so and never says
    "anchored"; told the work suffices (a real chain's) it says anchored, by each kind; a
    block hash given with --block establishes that block."""
    lines = check(doc).lines
    assert lines[0].startswith("ok: bob's line of the period starting 1800000000"), lines
    trivial = [x for x in lines if x.startswith("proof of work trivial (test chain)")]
    assert len(trivial) == 2 and not any(x.startswith("anchored") for x in lines), lines
    assert "only --node or --block establishes anything" in trivial[0]
    assert "in its coinbase" in trivial[0] and "in transaction" in trivial[1]
    assert "this period's commitment" in trivial[0] and "later link 1" in trivial[1]
    costly = check(doc, min_work=1).lines
    anchored = [x for x in costly if x.startswith("anchored:")]
    assert len(anchored) == 2 and all("proof of work is 2^" in x for x in anchored), costly
    block = doc["anchors"][0]["block"]
    given = check(doc, blocks=frozenset({block})).lines
    assert any(x.startswith("anchored:") and "(--block)" in x for x in given), given
    assert any(x.startswith("proof of work trivial") for x in given)  # the other one
    assert any(x.startswith("cut: at the pool's best block 2") for x in lines)


def _move_one_sat(lines: dict[str, Any]) -> dict[str, Any]:
    """One satoshi moved from a holder the largest remainder gave one extra to a holder at the
    floor: a forgery the settlement rules alone cannot see."""
    pot = sum(line["gross_sat"] for line in lines.values())
    total = sum(line["atom_seconds"] for line in lines.values())
    low = {h: pot * line["atom_seconds"] // total for h, line in lines.items()}
    rich = next(h for h in lines if lines[h]["gross_sat"] == low[h] + 1)
    poor = next(h for h in lines if lines[h]["gross_sat"] == low[h] and lines[h]["paid_sat"])
    forged = copy.deepcopy(lines)
    for h, d in ((rich, -1), (poor, 1)):
        for f in ("gross_sat", "net_sat", "paid_sat"):
            forged[h][f] += d
    return forged


def test_a_consistently_rebuilt_tree_is_refused_by_its_anchors(doc: dict[str, Any]) -> None:
    """The operator moves 1 sat between two holders (or changes the service rate) and rebuilds
    root, commitment and chain: the rules pass, but the real anchors carry the real
    commitments. Pointing them at the forged ones, or fabricating a block for them (cheap on a
    test chain), is refused or said to establish nothing."""
    lines, inputs = settle(HOLDERS)
    for forged_lines, forged_inputs in (
        (_move_one_sat(lines), inputs),
        settle(HOLDERS, service_usd_per_th_day=Fraction(2, 100)),
    ):
        forged = documents(forged_lines, forged_inputs)["bob"]
        check(forged, now=NOW)  # without anchors the rules alone pass it
        forged.update(anchors=copy.deepcopy(doc["anchors"]), pool=doc["pool"])
        failed(forged, r"anchors\[0\]: block .* carries commitment .*, which is not on this")
        for a, link in zip(forged["anchors"], [forged["period"], forged["chain"][0]], strict=True):
            a["commitment"] = link["commitment"]
        failed(forged, r"anchors\[0\]: the transaction carries [0-9a-f]{16}… in the statement")
    fabricated = asyncio.run(anchored_doc(_move_one_sat(lines), inputs, "bob"))
    lines_out = check(fabricated).lines
    assert not any(x.startswith("anchored") for x in lines_out), lines_out
    assert sum(x.startswith("proof of work trivial") for x in lines_out) == 2


def test_a_block_that_does_not_exist_is_refused(doc: dict[str, Any]) -> None:
    a = doc["anchors"][0]
    a["block"] = "00000000deadbeef" + "00" * 24
    failed(doc, r"anchors\[0\]: its header hashes to [0-9a-f]{64}, not to the block it names")
    old = copy.deepcopy(doc)
    old["anchors"] = [{"hash": a["block"], "height": 999, "commitment": a["commitment"]}]
    failed(old, r"anchors\[0\] lacks 'type'")  # version 1's bare claim


def test_a_real_header_with_a_transaction_of_another_block_is_refused(
    doc: dict[str, Any],
) -> None:
    coinbase, tx = doc["anchors"]
    tx["header"], tx["block"] = coinbase["header"], coinbase["block"]
    failed(doc, r"anchors\[1\]: the transaction is not in block .* merkle branch does not reach")


def test_a_wrong_branch_is_refused(doc: dict[str, Any]) -> None:
    tx = doc["anchors"][1]
    tx["branch"][0] = tx["branch"][0][::-1]
    failed(doc, "merkle branch does not reach the header's merkle root")
    tx = json.loads(_genuine())["anchors"][1]
    doc["anchors"][1] = tx | {"index": tx["index"] + (1 << len(tx["branch"]))}
    failed(doc, r"index \d+ lies beyond its \d+-step branch")


def test_a_header_that_misses_its_target_is_refused(doc: dict[str, Any]) -> None:
    a = doc["anchors"][0]
    header = bytearray.fromhex(a["header"])
    for nonce in range(1 << 16):
        header[76:80] = nonce.to_bytes(4, "little")
        digest = verifier.sha256d(bytes(header))
        if int.from_bytes(digest, "little") > verifier.target_of(
            int.from_bytes(header[72:76], "little")
        ):
            break
    a["header"], a["block"] = header.hex(), digest[::-1].hex()
    failed(doc, "header hash misses its own target")
    header[72:76] = (0x04923456).to_bytes(4, "little")  # a negative target
    a["header"], a["block"] = header.hex(), verifier.sha256d(bytes(header))[::-1].hex()
    failed(doc, "encodes a negative target")


def test_a_commitment_of_another_chain_is_refused(doc: dict[str, Any]) -> None:
    async def other() -> dict[str, Any]:
        net = simnet()
        block = await mine(net, statement=b"\x77" * 32)
        return await anchor_of(net, block, b"\x77" * 32)

    doc["anchors"].append(asyncio.run(other()))
    failed(doc, r"anchors\[2\]: block .* carries commitment 7777777777777777…, which is not on")
    doc["anchors"][2]["commitment"] = doc["period"]["commitment"]
    failed(doc, r"anchors\[2\]: the transaction carries 7777777777777777… in the statement slot")


def test_an_anchor_not_paying_the_pools_scripts_is_refused(doc: dict[str, Any]) -> None:
    """The pool's scripts are every one it has paid: an address change keeps older anchors
    its own; an anchor paying none of them is not the pool's."""
    doc["pool"]["coinbase_scripts"] = ["00" * 22, *doc["pool"]["coinbase_scripts"]]
    assert check(doc).lines[0].startswith("ok:")
    doc["pool"]["coinbase_scripts"] = ["00" * 22]
    failed(doc, r"anchors\[0\]: the coinbase of block .* pays none of the pool's scripts")
    doc = json.loads(_genuine())
    doc["pool"]["anchor_scripts"] = []
    failed(doc, r"anchors\[1\]: the transaction pays none of the pool's anchor scripts")
    doc["pool"] = None
    failed(doc, "the proof has anchors but names no pool scripts")


def test_coinbase_rules_of_an_anchor(doc: dict[str, Any]) -> None:
    coinbase = doc["anchors"][0]
    coinbase["height"] += 1
    failed(doc, r"anchors\[0\]: the coinbase says height 1, the anchor says 2")
    doc = json.loads(_genuine())
    doc["anchors"][1]["type"] = "coinbase"
    failed(doc, r"anchors\[1\]: type coinbase does not fit a transaction at index")
    doc["anchors"][1]["tx"] = "00" * 64
    failed(doc, "64 bytes long, the size of an inner merkle node")


def test_an_anchor_above_the_cut_is_refused(doc: dict[str, Any]) -> None:
    """A proof cut at a block cannot carry an anchor mined after it: the cut bounds what a
    node's scan judges, so it must not be set below the proof's own anchors."""
    doc["cut"]["best_height"] = 1
    failed(doc, r"anchors\[1\]: at height 2, above the best block 1 the proof says it was cut")


def test_a_truncated_chain_is_refused(doc: dict[str, Any]) -> None:
    cut = copy.deepcopy(doc)
    del cut["chain"][-1]
    failed(cut, r"names head [0-9a-f]{16}… but its chain ends at [0-9a-f]{16}…: links are missing")
    cut["cut"]["head"] = cut["period"]["commitment"]  # the head rewritten too
    failed(cut, r"anchors\[1\]: block .* carries commitment .* which is not on this proof's")
    del cut["anchors"][1]  # and the anchor of the dropped link: an honest-looking older cut
    assert check(cut).lines[0].startswith("ok:")


def test_dropped_anchors_fail_past_the_grace(doc: dict[str, Any]) -> None:
    doc["anchors"] = []
    assert check(doc, now=NOW).lines[-1] == (
        "not anchored on chain yet: no anchor carries these commitments"
    )
    failed(doc, "--require-anchor was given", require_anchor=True)
    # Twice the pool's stated cadence (3600 s) after the period's end, the default grace ends.
    assert check(doc, now=END + 7199).lines[-1].startswith("not anchored on chain yet")
    failed(doc, r"the period ended 2\.0 h ago, past the 2\.0 h grace", now=END + 7201)
    failed(doc, "past the", now=END + 600, grace_s=300)
    doc["pool"] = None  # no cadence stated: two days, the most any pool may declare
    assert check(doc, now=END + 2 * 86400 - 1).lines[0].startswith("ok:")
    failed(doc, "past the 2.0 days grace", now=END + 2 * 86400 + 1)
    assert check(json.loads(_genuine()), now=END + 10**6).lines[0].startswith("ok:")


def _raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda r: r.replace(b'"paid_sat": ', b'"paid_sat": 1, "paid_sat": ', 1),
         "line gives the key 'paid_sat' twice"),
        (lambda r: r.replace(b'"pool": ', b'"pool": null, "pool": ', 1),
         "the proof gives the key 'pool' twice"),
        (lambda r: b"[" + r + b"]", "the proof must be a JSON object, not an array"),
        (lambda r: r[: len(r) // 2], "the proof is not JSON"),
        (lambda r: b"\xff" + r, "the proof is not UTF-8 text"),
        (lambda r: b"[" * 100_000 + b"]" * 100_000, "nests arrays or objects too deeply"),
        (lambda r: r.replace(b'"version": 2', b'"version": 1'), "version 1 proof"),
        (lambda r: r.replace(b'"version": 2', b'"version": "2"'), "version must be 2"),
        (lambda r: r.replace(b'"version": 2', b'"version": true'), "version must be 2, not true"),
    ],
)  # fmt: skip
def test_malformed_documents_name_what_is_wrong(doc: dict[str, Any], edit: Any, why: str) -> None:
    failed(edit(_raw(doc)), why)


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        (("line", "paid_sat"), "160689713", r"line\.paid_sat must be a whole number, not the text"),
        (("line", "paid_sat"), 160689713.9, r"line\.paid_sat must be a whole number, not the nu"),
        (("line", "debt_in_sat"), False, r"line\.debt_in_sat must be a whole number, not false"),
        (("line", "gross_sat"), 2**127, r"line\.gross_sat is \d+, outside 0\.\.\d+"),
        (("line", "gross_sat"), 10**50, r"gross_sat must be a whole number, not a number of 51 d"),
        (("line", "net_sat"), -(2**120) - 1, r"line\.net_sat is -\d+, outside -\d+\.\.\d+"),
        (("line", "gross_sat"), -1, r"line\.gross_sat is -1, outside 0"),
        (("path", 0, "side"), "X", r'path\[0\]\.side must be "L" or "R"'),
        (("path", 0, "sums", 1), None, r"path\[0\]\.sums\[1\] must be a whole number, not null"),
        (("path", 0, "hash"), "AB" * 32, r"path\[0\]\.hash must be lowercase hex"),
        (("salt",), "00" * 15, "salt must be 32 hex digits"),
        (("period", "inputs", "btc_usd"), "0", "btc_usd is 0: a price must be positive"),
        (("period", "inputs", "btc_usd"), "1/0", r"btc_usd is 1/0: a zero denominator"),
        (("period", "inputs", "btc_usd"), 65432, "btc_usd must be an exact number as text"),
        (("period", "inputs", "discount"), "3/2", r"discount is 3/2, outside 0\.\.1"),
        (("period", "inputs", "earnings_sat"), "1e400", "earnings_sat must be a whole number"),
        (("period", "inputs", "negative_policy"), "keep", "must be one of carry, clamp"),
        (("period", "inputs", "extra"), 1, "period.inputs has an unknown key 'extra'"),
        (("anchors", 0, "branch"), ["00" * 32] * 33, r"anchors\[0\]\.branch has 33 entries"),
        (("anchors", 0, "type"), "block", r'anchors\[0\]\.type must be "coinbase" or "trans'),
        (("anchors", 1, "tx"), "0", r"anchors\[1\]\.tx must be lowercase hex of whole bytes"),
        (("cut", "best_height"), 1.5, r"cut\.best_height must be a whole number"),
        (("pool", "anchor_interval_s"), 10, r"pool\.anchor_interval_s is 10, outside 60"),
    ],
)  # fmt: skip
def test_type_confusion_and_huge_numbers_name_the_field(
    doc: dict[str, Any], path: tuple[Any, ...], value: Any, why: str
) -> None:
    *parents, last = path
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value
    failed(_raw(doc), why)
    if value == "1e400":  # as a JSON number, not text
        failed(_raw(doc).replace(b'"1e400"', b"1e400"), "must be a whole number, not the number")


def test_a_credit_proof_with_a_zero_divisor_or_float_fee_fails_cleanly() -> None:
    inputs = {
        "block_hash": "ab" * 32, "height": 7, "reward_sat": 5_000_000_000, "pool_fee": "1/50",
        "fee_sat": 100_000_000, "unallocated_sat": 0, "score_total": "2",
        "key": "pplns:" + "ab" * 32, "kind": "pplns_block", "found_s": NOW,
    }  # fmt: skip
    lines = {"m1": {"credit_sat": 4_900_000_000, "score": "2", "carry_in": "0", "carry_out": "0"}}
    tree = period_tree(lines, {"m1": b"\x01" * 16}, CREDIT)
    good = complete(
        proof_document(tree, "m1", b"\x01" * 16, lines["m1"], inputs, GENESIS, layout=CREDIT)
    )
    assert check(good, now=NOW).lines[0].startswith("ok: m1's credit of pplns:abab")
    for field, value, why in (
        ("pool_fee", "1/0", "pool_fee is 1/0: a zero denominator"),
        ("pool_fee", 0.02, "pool_fee must be an exact number as text"),
        ("score_total", "-1", r"score_total is -1, outside 0\.\."),
    ):
        bad = copy.deepcopy(good)
        bad["period"]["inputs"][field] = value
        failed(bad, why)
    bad = copy.deepcopy(good)
    bad["line"]["score"] = "4"  # doubled, tree rebuilt: the quota catches it
    lines["m1"]["score"] = "4"
    tree = period_tree(lines, {"m1": b"\x01" * 16}, CREDIT)
    rebuilt = complete(
        proof_document(tree, "m1", b"\x01" * 16, lines["m1"], inputs, GENESIS, layout=CREDIT)
    )
    failed(rebuilt, "credit_sat is 4900000000, the quota")


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "verify.py"), *args],
        input=None if stdin is None else stdin.decode("latin-1"),
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
    )


def test_the_command_line_gives_one_verdict_and_never_a_traceback(
    doc: dict[str, Any], tmp_path: Path
) -> None:
    good = tmp_path / "proof.json"
    good.write_text(json.dumps(doc))
    ok = run_cli(str(good))
    assert ok.returncode == 0 and ok.stdout.startswith("ok: bob's line"), ok.stdout + ok.stderr
    piped = run_cli("-", "--min-work", "2^1", stdin=good.read_bytes())
    assert piped.returncode == 0 and "\nanchored: block" in piped.stdout, piped.stdout
    for content in (b"", b"\x00\x01garbage", b"[]", b'{"version": 2}', b"1e999999"):
        bad = tmp_path / "bad.json"
        bad.write_bytes(content)
        out = run_cli(str(bad))
        assert out.returncode == 1 and out.stderr == "", out.stderr
        assert len(out.stdout.splitlines()) == 1 and out.stdout.startswith("FAILED: "), out.stdout
    missing = run_cli(str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and missing.stdout.startswith("FAILED: the proof file cannot")
    usage = run_cli()
    assert usage.returncode == 2 and "usage" in usage.stderr


# -- every field, every type -----------------------------------------------------------------------


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(json.loads(_genuine()))


def _guarded(path: tuple[Any, ...]) -> bool:
    """Whether changing what is at `path` changes an amount, a rate or a commitment (or what
    proves one): every such change must fail. Not guarded: the labels of later links, what the
    proof says of its cut and of the pool, an anchor transaction's claimed height (only a
    node can check it), and removing the anchors wholesale (the grace rule's business)."""
    first = path[0]
    if first in ("line", "path", "period", "salt", "version", "kind", "holder"):
        return True
    if first == "chain":
        return len(path) > 2 and path[2] != "period_start"
    if first == "anchors":
        return len(path) > 2 and path[2] != "height"
    return False


values = st.one_of(
    st.integers(-(2**130), 2**130),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=12),
    st.text("0123456789abcdef", min_size=64, max_size=64),
    st.lists(st.integers(0, 10), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.sampled_from(["1/0", "0", "-1", "1/3", "L", "R", "carry", "00" * 32, "ff" * 80]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), values, st.sampled_from(["replace", "delete", "add"]))
def test_mutated_proofs_get_a_verdict_never_a_false_ok(
    path: tuple[Any, ...], value: Any, how: str
) -> None:
    doc = json.loads(_genuine())
    *parents, last = path
    node = doc
    for key in parents:
        node = node[key]
    if how == "replace":
        old = node[last]
        assume(type(value) is not type(old) or value != old)
        node[last] = value
    elif how == "delete":
        if isinstance(node, list):
            node.pop(last)
        else:
            del node[last]
    else:
        if not isinstance(node, dict):
            return
        node[f"{last}_x"] = value
    raw = json.dumps(doc).encode()
    try:
        verdict = verifier.check(raw, verifier.Options(now=NOW))
    except verifier.Failed:
        return
    # It said ok: never for an added key (every object's keys are fixed), never for a change of
    # an amount, a rate or a commitment (dropping a whole anchor is the grace rule's business).
    assert verdict.lines[0].startswith("ok:")
    removed_anchor = how == "delete" and path[0] == "anchors" and len(path) == 2
    assert how != "add" and (removed_anchor or not _guarded(path)), (path, how, value)
    assert not any(x.startswith("anchored") for x in verdict.lines)  # the simnet's work


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_damaged_bytes_get_a_verdict(data: st.DataObject) -> None:
    raw = bytearray(_genuine().encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            raw[at] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del raw[at : at + data.draw(st.integers(1, 50))]
        else:
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
    with contextlib.suppress(verifier.Failed):  # a verdict; anything else raises here
        verifier.check(bytes(raw), verifier.Options(now=NOW))
