"""`verify.py` on work proofs (the delivered hashrate), offline: a genuine period of real shares
on the simnet verifies and says what its sample establishes, never more; each forgery the
proof exists to stop fails naming the share; no input makes it raise (Hypothesis mutates
genuine proofs and damages their bytes)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.verifier import NOW, check, verifier
from tests.work_scenario import sha256d, work_doc


@functools.cache
def _genuine() -> str:
    return json.dumps(asyncio.run(work_doc()))


@pytest.fixture
def doc() -> dict[str, Any]:
    return json.loads(_genuine())  # type: ignore[no-any-return]


def failed(d: dict[str, Any] | bytes, why: str, **options: Any) -> None:
    with pytest.raises(verifier.Failed, match=why):
        check(d, now=NOW, **options)


def test_a_genuine_work_proof_says_what_its_sample_establishes(doc: dict[str, Any]) -> None:
    lines = check(doc, now=NOW).lines
    assert lines[0].startswith("ok: 10/10 valid: with 99 % confidence at least 63.1 % of the")
    assert f"({doc['period']['inputs']['work']} hashes" in lines[0]
    assert lines[1] == "delivered: the statement's delivered TH·s equals the root's work exactly"
    assert lines[2].startswith("proof of work trivial (test chain): the beacon can be re-rolled")
    beacon = sha256d(bytes.fromhex(doc["headers"][-1]))[::-1].hex()
    given_block = check(doc, now=NOW, blocks=frozenset({beacon})).lines
    assert given_block[2].startswith("beacon: 3 block(s) after the anchor")
    assert "at or after the beacon" in given_block[2]


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("other pool", r"samples\[0\] \(share [0-9a-f]{16}…, job [0-9a-f]{16}\): its coinbase "
         "pays none of the pool's scripts"),
        ("old tip", r"samples\[0\] .*not on a block of the period's chain"),
        ("stale link", r"samples\[0\] .*no commitment of the 1 period\(s\) just before"),
        ("low difficulty", r"samples\[0\] .*misses the target of its weight"),
        ("duplicate", r"samples\[0\] \(share [0-9a-f]{16}…\): the tree's order breaks"),
        ("inflated", r"delivered TH·s, .* is not the work the root commits, .* \(105\.00% of it\)"),
    ],
)  # fmt: skip
def test_each_forgery_fails_naming_the_share(kind: str, why: str) -> None:
    failed(asyncio.run(work_doc(kind)), why)


def test_edits_of_a_genuine_proof_are_refused(doc: dict[str, Any]) -> None:
    def edited(change: Any) -> dict[str, Any]:
        d = copy.deepcopy(doc)
        change(d)
        return d

    def weight(d: dict[str, Any]) -> None:
        d["samples"][3]["leaf"]["weight"] *= 2

    failed(edited(weight), r"samples\[3\] .*does not climb to the committed work root")
    failed(edited(lambda d: d["nodes"].pop(0)), "the proof lacks its sibling at level")
    failed(edited(lambda d: d["samples"].reverse()), "does not fall in this leaf's range|lacks")
    failed(edited(lambda d: d["samples"].pop()), "9 samples for k = 10 draws")
    failed(edited(lambda d: d["links"].clear()), "gives none of the links before this period")
    failed(
        edited(lambda d: d["headers"].__setitem__(1, d["headers"][0])),
        r"headers\[1\] does not build on headers\[0\]",
    )
    failed(edited(lambda d: d["fleet_tags"].__setitem__(0, "00" * 32)), "not one of the fleet's")
    failed(edited(lambda d: d["work"].__setitem__("depth", 2)), "does not fall|lacks|climb")
    failed(edited(lambda d: d["period"]["inputs"].__setitem__("work", 1)), "commitment is not H")
    failed(edited(lambda d: d["work"].__setitem__("root", d["nodes"][0][2])), "work root is not")
    failed(edited(lambda d: d["tips"].__setitem__(1, 4)), "the headers must run tips")

    def late_anchor(d: dict[str, Any]) -> None:
        d["anchor"]["at"], d["work"]["depth"] = 3, 2

    failed(edited(late_anchor), "the anchor's header is not headers")


def test_the_command_line_gives_one_verdict(doc: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "work.json"
    path.write_text(json.dumps(doc))
    code, lines = verifier.run([str(path)])
    assert code == 0 and lines[0].startswith("ok: 10/10 valid")
    doc["samples"][0]["share"]["nonce"] ^= 1
    path.write_text(json.dumps(doc))
    code, lines = verifier.run([str(path)])
    assert code == 1 and lines == [lines[0]] and lines[0].startswith("FAILED: samples[0]")


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:3]):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(json.loads(_genuine()))
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**130), 2**130),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.integers(0, 10), max_size=3),
    st.sampled_from(["00" * 32, "ff" * 80, "A" * 152, "A" * 150 + "==", 2**63, 0, 1]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), values, st.sampled_from(["replace", "delete", "add"]))
def test_mutated_work_proofs_get_a_verdict_never_a_false_ok(
    path: tuple[Any, ...], value: Any, how: str
) -> None:
    d = json.loads(_genuine())
    *parents, last = path
    node = d
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
    elif isinstance(node, dict):
        node[f"{last}_x"] = value
    else:
        return
    try:
        verdict = verifier.check(json.dumps(d).encode(), verifier.Options(now=NOW))
    except verifier.Failed:
        return
    # Only what no check can see may change: the pool's anchor scripts and cadence, a
    # coinbase script the samples do not pay, a fleet tag no sample carries.
    harmless = {("pool", "anchor_scripts"), ("pool", "anchor_interval_s")}
    # A job's version is checked only outside the bits a miner may roll (the share's own
    # version is what its header hashes).
    rolled = path[0] == "samples" and path[2:] == ("job", "version")
    unseen = path[:2] in harmless or path[0] in ("fleet_tags", "pool") or rolled
    assert how != "add" and unseen, (path, how, value)
    assert verdict.lines[0].startswith("ok:")


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_damaged_work_proof_bytes_get_a_verdict(data: st.DataObject) -> None:
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
    with contextlib.suppress(verifier.Failed):
        verifier.check(bytes(raw), verifier.Options(now=NOW))
