#!/usr/bin/env python3
"""Check a poold statement without trusting the pool: `python verify.py proof.json`.

Standard library only; it imports nothing of poold, so a holder or miner can read all of it.
A holder's proof file (the API's /api/v1/holders/<holder>/proofs/<period start>) holds one
statement line, the holder's salt, the path of sibling hashes and sums to the period's
Merkle-sum root, the period's published inputs, its commitment, and the chain of commitments
after it. A miner's proof ("kind": "credit", /api/v1/miners/<account>/proofs/<block hash or
FPPS period end>) holds the same for the miner's line of one block's split or FPPS booking.
Checked for a holder:

1. the line, salted, hashes to a leaf that climbs the path to the period's root, every
   parent committing to both children's hashes and sums;
2. the period's commitment is H(root, sums, inputs, previous commitment), and every later
   commitment in the chain links to the one before it;
3. the line follows from the published inputs by the settlement rules: the holders' pot from
   earnings and delivery; gross the holder's token-seconds share of the pot (largest
   remainder: at most 1 sat over the floor) and the root's gross sum equal to the pot; the
   electricity and service costs from the rates, the delivery ratio and the BTC/USD price,
   floored; net, paid and debt as the negative-amount policy says.

For a miner, 1 and 2 the same way, then 3: the pool fee is floor(reward x fee); credits,
fee and unallocated add up to the reward; the credit is the line's quota of what the fee
leaves, (reward - fee) x score / score total, floored or one satoshi over (largest remainder);
for an FPPS booking, the score (each share's difficulty capped at the network difficulty, in
network difficulties) is at most the line's number of shares, the credit is floor(value +
carried in) with value = score x (subsidy + average fees) x (1 - fee), and the remainder
carried out is what is left. The score is the
miner's own work in network difficulties: compare it with what the miner's side counted.

Exit 0 and "ok" when every check passes; exit 1 naming the first that fails.
"""

from __future__ import annotations

import hashlib
import json
import sys
from fractions import Fraction

COIN = 100_000_000
LINE_FIELDS = (
    "atom_seconds", "gross_sat", "electricity_sat", "service_sat", "net_sat",
    "debt_in_sat", "paid_sat", "debt_out_sat", "written_off_sat",
)  # fmt: skip
SUMMED = (
    "atom_seconds", "gross_sat", "electricity_sat", "service_sat",
    "debt_in_sat", "paid_sat", "debt_out_sat", "written_off_sat",
)  # fmt: skip


CREDIT_FIELDS = ("credit_sat", "score", "carry_in", "carry_out")
CREDIT_TEXT = ("score", "carry_in", "carry_out")


class Failed(Exception):
    pass


def s4(text: str) -> bytes:
    raw = str(text).encode()
    return len(raw).to_bytes(4, "big") + raw


def leaf_of(p: dict) -> tuple[bytes, list[int]]:
    """The leaf hash and sums of the proof's line (a holder's, or a miner's credit line)."""
    line = p["line"]
    if p.get("kind") == "credit":
        name = p["account"].encode()
        fields = CREDIT_FIELDS
        if p["period"]["inputs"]["kind"] == "fpps_period":
            fields += ("shares",)  # an FPPS line counts its shares: none worth over a block
        body = b"".join(s4(line[f]) if f in CREDIT_TEXT else i16(int(line[f])) for f in fields)
        sums = [int(line["credit_sat"])]
    else:
        name = p["holder"].encode()
        body = b"".join(i16(int(line[f])) for f in LINE_FIELDS)
        sums = [int(line[f]) for f in SUMMED]
    salted = sha(bytes.fromhex(p["salt"]), len(name).to_bytes(4, "big"), name)
    return sha(b"\x00", salted, body), sums


def i16(v: int) -> bytes:
    return int(v).to_bytes(16, "big", signed=True)


def sha(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def sums_bytes(sums: list[int]) -> bytes:
    return b"".join(i16(v) for v in sums)


def node_of(obj: dict) -> tuple[bytes, list[int]]:
    return bytes.fromhex(obj["hash"]), [int(v) for v in obj["sums"]]


def check_tree(p: dict) -> list[int]:
    h, sums = leaf_of(p)
    if any(v < 0 for v in sums):
        raise Failed("a summed amount of the line is negative")
    for step in p["path"]:
        sh, ss = node_of(step)
        if any(v < 0 for v in ss):
            raise Failed("a sibling's sums are negative")
        if step["side"] == "L":
            h = sha(b"\x01", sh, sums_bytes(ss), h, sums_bytes(sums))
        else:
            h = sha(b"\x01", h, sums_bytes(sums), sh, sums_bytes(ss))
        sums = [a + b for a, b in zip(sums, ss, strict=True)]
    root_hash, root_sums = node_of(p["period"]["root"])
    if (h, sums) != (root_hash, root_sums):
        raise Failed("the line does not climb to the period's root (hash or sums differ)")
    return root_sums


def digest(inputs: dict) -> bytes:
    return sha(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode())


def check_chain(p: dict) -> None:
    period = p["period"]
    root_hash, root_sums = node_of(period["root"])
    want = sha(
        b"\x02", root_hash, sums_bytes(root_sums), digest(period["inputs"]),
        bytes.fromhex(period["previous"]),
    )  # fmt: skip
    if want.hex() != period["commitment"]:
        raise Failed("the period's commitment is not H(root, sums, inputs, previous)")
    prev = period["commitment"]
    for link in p.get("chain", []):
        name = link.get("period_start", link.get("key"))
        if link["previous"] != prev:
            raise Failed(f"the chain breaks at {name}: wrong previous")
        h, s = node_of(link["root"])
        got = sha(
            b"\x02", h, sums_bytes(s), bytes.fromhex(link["inputs_digest"]),
            bytes.fromhex(link["previous"]),
        )  # fmt: skip
        if got.hex() != link["commitment"]:
            raise Failed(f"the commitment of {name} does not hash right")
        prev = link["commitment"]


def check_rules(p: dict, root_sums: list[int]) -> None:
    x, line = p["period"]["inputs"], p["line"]
    F = Fraction
    period = int(x["period_end"]) - int(x["period_start"])
    q = int(x["atoms_per_token"])
    th = F(x["th_per_token"])
    total = root_sums[0]
    nominal = F(total, q) * th
    delivered = F(x["delivered_th_per_s"]) * period
    ratio = F(1) if nominal == 0 else min(F(1), delivered / nominal)
    pot_share = F(1) if delivered == 0 else min(F(1), nominal / delivered)
    earnings = int(x["earnings_sat"])
    pot = earnings * pot_share.numerator // pot_share.denominator
    if pot != int(x["holders_pot_sat"]):
        raise Failed(f"the holders' pot is {x['holders_pot_sat']}, the rules give {pot}")
    if root_sums[1] != pot:
        raise Failed(f"the lines' gross adds up to {root_sums[1]}, not the pot {pot}")
    ts, gross = int(line["atom_seconds"]), int(line["gross_sat"])
    low = pot * ts // total if total else 0
    if not low <= gross <= low + (1 if total else 0):
        raise Failed(f"gross {gross} is not this holder's share of the pot ({low} or {low + 1})")
    price = F(x["btc_usd"])
    eff_th_h = th / q * ratio / 3600
    k_elec = F(x["w_per_th"]) * eff_th_h / 1000 * F(x["usd_per_kwh"]) * (1 - F(x["discount"]))
    k_elec = k_elec * COIN / price
    k_serv = F(x["service_usd_per_th_day"]) * eff_th_h / 24 * COIN / price
    elec = ts * k_elec.numerator // k_elec.denominator
    serv = ts * k_serv.numerator // k_serv.denominator
    net = gross - elec - serv
    after = net - int(line["debt_in_sat"])
    short = max(-after, 0)
    carry = x["negative_policy"] == "carry"
    want = {
        "electricity_sat": elec,
        "service_sat": serv,
        "net_sat": net,
        "paid_sat": max(after, 0),
        "debt_out_sat": short if carry else 0,
        "written_off_sat": 0 if carry else short,
    }
    for field, value in want.items():
        if int(line[field]) != value:
            raise Failed(f"{field} is {line[field]}, the rules give {value}")


def check_credit(p: dict, root_sums: list[int]) -> None:
    x, line = p["period"]["inputs"], p["line"]
    F = Fraction
    fee = F(x["pool_fee"])
    score, credit = F(line["score"]), int(line["credit_sat"])
    carry_in, carry_out = F(line["carry_in"]), F(line["carry_out"])
    if score < 0 or not 0 <= carry_in < 1 or not 0 <= carry_out < 1:
        raise Failed("a score or carried remainder is out of range")
    if x["kind"] == "fpps_period":
        shares = int(line["shares"])
        if shares < 0 or score > shares:
            raise Failed(
                f"the score {score} is more than the line's {shares} shares: no share may be "
                "credited more than one block (its network difficulty)"
            )
        if root_sums[0] != int(x["booked_sat"]):
            raise Failed(f"the lines add up to {root_sums[0]}, the booking says {x['booked_sat']}")
        value = score * (int(x["subsidy_sat"]) + F(x["avg_fees_sat"])) * (1 - fee)
        want = (value + carry_in).numerator // (value + carry_in).denominator
        if credit != want:
            raise Failed(f"credit_sat is {credit}, the rules give {want}")
        if carry_out != value + carry_in - want:
            raise Failed(f"carry_out is {carry_out}, the rules give {value + carry_in - want}")
        return
    reward, fee_sat = int(x["reward_sat"]), int(x["fee_sat"])
    if fee_sat != reward * fee.numerator // fee.denominator:
        raise Failed(f"the pool fee is {fee_sat}, floor(reward x fee) is not")
    if root_sums[0] + fee_sat + int(x["unallocated_sat"]) != reward:
        raise Failed("credits + fee + unallocated do not add up to the block reward")
    if carry_in or carry_out:
        raise Failed("a block's line carries no remainder")
    total = F(x["score_total"])
    quota = (reward - fee_sat) * score / total if total else F(0)
    low = quota.numerator // quota.denominator
    if not low <= credit <= low + (0 if quota == low else 1):
        raise Failed(f"credit_sat is {credit}, the quota {quota} allows {low} or {low + 1}")


def check_anchors(p: dict) -> list[dict]:
    """Blocks said to carry this period's commitment or a later one in their coinbase
    (OP_RETURN "pold" + commitment): each must name a commitment of this chain. Read those
    coinbases on any copy of the chain to see the commitments are really there."""
    known = {p["period"]["commitment"], *(link["commitment"] for link in p.get("chain", []))}
    anchors = p.get("anchors", [])
    for a in anchors:
        if a["commitment"] not in known:
            raise Failed(f"block {a['hash']} is said to carry a commitment not in this chain")
    return anchors


def verify(p: dict) -> list[dict]:
    """Every check; returns the blocks anchoring the chain on the Bitcoin chain."""
    if p.get("version") != 1:
        raise Failed(f"unknown proof version {p.get('version')!r}")
    root_sums = check_tree(p)
    check_chain(p)
    if p.get("kind") == "credit":
        check_credit(p, root_sums)
    else:
        check_rules(p, root_sums)
    return check_anchors(p)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python verify.py proof.json", file=sys.stderr)
        return 2
    try:
        with open(argv[1]) as fh:
            proof = json.load(fh)
        anchors = verify(proof)
    except Failed as exc:
        print(f"FAILED: {exc}")
        return 1
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"FAILED: the proof file cannot be read: {exc!r}")
        return 1
    inputs = proof["period"]["inputs"]
    if proof.get("kind") == "credit":
        what = f"{proof['account']}'s credit of {inputs['key']}"
    else:
        what = f"{proof['holder']}'s line of the period starting {inputs['period_start']}"
    print(
        f"ok: {what} is in the committed root {proof['period']['commitment'][:16]}… "
        "and follows from its inputs"
    )
    for a in anchors:
        print(
            f"anchored: block {a['hash']} (height {a['height']}) carries commitment "
            f"{a['commitment'][:16]}… in its coinbase (OP_RETURN 'pold' + commitments)"
        )
    if not anchors:
        print("not anchored on chain yet: no block found since carries these commitments")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
