"""A period of real work on the simnet, committed and sampled, as a work proof: shares ground
against real jobs (poold's job manager and coinbase) on two tips of the period, a previous
link their coinbases carry, the period's commitment anchored in a block's coinbase and the
beacon `depth` blocks after it. `kind` forges the period one way (every share of it, so the
first draw meets the forgery): "other pool", "old tip", "stale link", "low difficulty",
"duplicate", "inflated" (the statement claims 5 % more than the root)."""

from __future__ import annotations

import hashlib
from fractions import Fraction

from accounting import work_proof as wp
from accounting.merkle_sum import GENESIS, Node, commitment, inputs_digest, node_json
from tests.verifier import ANCHOR_SCRIPT, NOW, PAYOUT, anchor_of, mine, simnet

SALT = b"\x07" * 16
OTHER_POOL = b"\x00\x14" + bytes(range(100, 120))
START, END = NOW - 3600, NOW


def sha256d(b: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(b).digest()).digest()


def _inputs(delivered: Fraction, root: wp.WorkNode, n: int) -> dict[str, object]:
    return {
        "period_start": START,
        "period_end": END,
        "atoms_per_token": 1,
        "th_per_token": "1",
        "w_per_th": "0",
        "usd_per_kwh": "0",
        "discount": "0",
        "service_usd_per_th_day": "0",
        "btc_usd": "50000",
        "delivered_th_per_s": str(delivered),
        "earnings_sat": 0,
        "holders_pot_sat": 0,
        "negative_policy": "carry",
        "work_root": root.hash.hex(),
        "work": root.work,
        "work_leaves": n,
    }


async def work_doc(kind: str = "honest", *, shares: int = 40, k: int = 10, depth: int = 3) -> dict:
    from poold.jobs.manager import CoinbaseSpec, JobManager
    from poold.jobs.template import parse_template

    net = simnet()
    tag = wp.account_tag(SALT, "fleet")
    prev_root = Node(hashlib.sha256(b"previous statements").digest(), (0,) * 8)
    prev_digest = inputs_digest({"period_start": START - 3600})
    c_prev = commitment(prev_root, prev_digest, GENESIS)
    link = {
        "period_start": START - 3600,
        "root": node_json(prev_root),
        "inputs_digest": prev_digest.hex(),
        "previous": GENESIS.hex(),
        "commitment": c_prev.hex(),
    }
    payout = OTHER_POOL if kind == "other pool" else PAYOUT
    jobs = JobManager(CoinbaseSpec(payout, b"/t/", 4, 4))
    jobs.statement_commitment = hashlib.sha256(b"x").digest() if kind == "stale link" else c_prev
    old_job = jobs.new_job(parse_template(await net.get_template()), NOW)
    hashes = [await mine(net, statement=c_prev)]  # tip 0: the block before the period
    found: list[tuple[wp.Leaf, dict[str, object], dict[str, object]]] = []
    for tip in range(2):
        job = (
            old_job
            if kind == "old tip"
            else jobs.new_job(parse_template(await net.get_template()), NOW)
        )
        cb = job.coinbase
        job_doc = {
            "key": job.job_id,
            "prev_hash": job.template.prev_hash.hex(),
            "version": job.version,
            "bits": job.bits,
            "coinb1": cb.coinb1.hex(),
            "coinb2": cb.coinb2.hex(),
            "branch": [h.hex() for h in job.branch],
        }
        en1 = bytes([0, 0, 0, tip + 1])
        for i in range(shares // 2):
            weight = 16 if i % 3 else 64
            en2 = i.to_bytes(4, "big")
            for nonce in range(1 << 20):
                h = sha256d(job.header(en1, en2, job.ntime, nonce, job.version))[::-1]
                if wp.meets_weight(h, weight):
                    break
            claimed = weight << 20 if kind == "low difficulty" else weight
            share_doc = {"en1": en1.hex(), "en2": en2.hex(), "ntime": job.ntime, "nonce": nonce,
                         "version": job.version}  # fmt: skip
            found.append((wp.Leaf(h, claimed, tag), job_doc, share_doc))
        if tip == 0:
            hashes.append(await mine(net, statement=c_prev))  # tip 1: a block in the period
    if kind == "duplicate":
        found += found
    found.sort(key=lambda f: f[0].hash)
    leaves = [f[0] for f in found]
    levels = wp.build_unchecked(leaves)
    root = levels[-1][0]
    delivered = Fraction(root.work, 10**12 * (END - START))
    if kind == "inflated":
        delivered = delivered * Fraction(105, 100)
    inputs = _inputs(delivered, root, len(leaves))
    stmt_root = Node(hashlib.sha256(b"statements").digest(), (0,) * 8)
    c_p = commitment(stmt_root, inputs_digest(inputs), c_prev)
    anchor_hash = await mine(net, statement=c_p)
    hashes.append(anchor_hash)
    for _ in range(depth):
        hashes.append(await mine(net, statement=c_p))
    headers = [(await net.raw_block(h))[:80] for h in hashes]
    beacon = sha256d(headers[2 + depth])
    sample = wp.sample_document(levels, leaves, beacon, k, lambda i: (found[i][1], found[i][2]))
    return {
        "version": 2,
        "kind": "work",
        "pool": {
            "coinbase_scripts": [PAYOUT.hex()],
            "anchor_scripts": [ANCHOR_SCRIPT.hex()],
            "anchor_interval_s": 3600,
        },
        "period": {
            "inputs": inputs,
            "root": node_json(stmt_root),
            "previous": c_prev.hex(),
            "commitment": c_p.hex(),
        },
        "links": [link],
        "work": {"root": sample["root"], "leaves": sample["leaves"], "k": k, "depth": depth},
        "headers": [h.hex() for h in headers],
        "tips": [0, 1],
        "anchor": {"at": 2, "evidence": await anchor_of(net, anchor_hash, c_p)},
        "fleet_tags": [tag.hex()],
        "nodes": sample["nodes"],
        "samples": sample["samples"],
    }
