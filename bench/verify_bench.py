"""verify.py on a miner's proof carrying N anchors, built through the production entry points.

.venv/bin/python bench/verify_bench.py [--anchors 50] [--runs 7]

A share log (`ShareLog`, `encode_share`) is ingested and settled (PPLNS, `settle_pending`):
the credit chain's first link. The pool then finds N blocks on the simnet whose coinbases
carry that head (jobs from `JobManager`, blocks checked by the simnet), their block records
go through the share log and ingest, and the anchoring pass (`ledger.anchors.run_anchors`)
reads back each coinbase's evidence and sends, then reads back, one anchor transaction. The
proof is `credit_proof`'s (what the API serves). `python verify.py proof.json` is timed as a
holder runs it, a fresh interpreter each run (start-up included); the in-process check alone
is timed too. Prints and writes bench/results/verify.json: the workload, the proof's size and
bytes per anchor, and the times (median and slowest).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import sqlalchemy as sa
from common import machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poold.bitcoind.simnet import SimNet  # noqa: E402
from poold.jobs.manager import CoinbaseSpec, JobManager  # noqa: E402
from poold.jobs.template import parse_template  # noqa: E402
from poold.ledger.anchors import AnchorPolicy, run_anchors  # noqa: E402
from poold.ledger.credit_proofs import credit_proof  # noqa: E402
from poold.ledger.db import make_engine, migrate  # noqa: E402
from poold.ledger.ingest import ingest  # noqa: E402
from poold.ledger.models import ChainAnchor, CreditRoot  # noqa: E402
from poold.ledger.settle import settle_pending  # noqa: E402
from poold.shares.format import BlockRecord, encode_share  # noqa: E402
from poold.shares.log import ShareLog  # noqa: E402

T0_MS = 1_800_000_000_000
PAYOUT = b"\x00\x14" + bytes(range(20))
ANCHOR = b"\x00\x14" + bytes(range(20, 40))
BITS = 0x1D00FFFF


def settle_one_block(engine: sa.Engine, path: Path) -> tuple[str, str, str]:
    """30 minutes of shares and a block: (reference, a credited account, the commitment)."""
    log = ShareLog(path)
    log.open()
    for i in range(30):
        diff = Fraction(1, 2**33)
        log.append_payload(
            encode_share(T0_MS + i * 60_000, 0, f"m{i % 4}", "rig", "1", 100, BITS,
                         diff.numerator, diff.denominator, b"\0\0\0\1", i.to_bytes(4, "big"),
                         1, i, 0x20000000, i == 25)
        )  # fmt: skip
        if i == 25:
            log.append(
                BlockRecord(T0_MS + i * 60_000 + 1, 0, 125, f"{i:064x}", True, None, "m1", "rig",
                            5_000_000_000, BITS).to_json()
            )  # fmt: skip
        log.flush()
    log.close()
    ingest(engine, path, 0)
    [settled] = settle_pending(engine, scheme="pplns")
    with engine.connect() as conn:
        row = conn.execute(sa.select(CreditRoot)).one()
    account = next(a for a, c in settled.credits.items() if c)
    return row.reference, account, row.commitment


async def find_blocks(net: SimNet, credit: bytes, n: int) -> list[tuple[str, int]]:
    """The pool finds `n` blocks whose coinbases carry `credit`: (hash, height) each."""
    jobs = JobManager(CoinbaseSpec(PAYOUT, b"/bench/", 4, 4))
    jobs.credit_commitment = credit
    found = []
    for _ in range(n):
        job = jobs.new_job(parse_template(await net.get_template()), time.time())
        for nonce in range(1 << 20):
            header = job.header(b"\0\0\0\1", b"\0\0\0\2", job.ntime, nonce, job.version)
            digest = hashlib.sha256(hashlib.sha256(header).digest()).digest()
            if int.from_bytes(digest, "little") <= job.network_target:
                break
        reason = await net.submit_block(job.block(header, b"\0\0\0\1", b"\0\0\0\2").hex())
        assert reason is None, reason
        found.append((digest[::-1].hex(), net.height))
    return found


async def anchor_all(engine: sa.Engine, net: SimNet, credit: str, n: int, path: Path) -> None:
    policy = AnchorPolicy(PAYOUT, net, "anchor address", ANCHOR, 60, 1)
    now_ms = int(time.time() * 1000)
    await run_anchors(engine, net, policy, now_ms)  # nothing carries the head: a transaction
    blocks = await find_blocks(net, bytes.fromhex(credit), n)  # the first one mines it
    log = ShareLog(path, node_id=1)
    log.open()
    for block_hash, height in blocks:
        log.append(
            BlockRecord(T0_MS + 40 * 60_000, 1, height, block_hash, True, None, "m0", "rig",
                        5_000_000_000, net.bits, credit_commitment=credit).to_json()
        )  # fmt: skip
    log.flush()
    log.close()
    ingest(engine, path, 1)
    for _ in range(10):  # 20 coinbases a pass
        await run_anchors(engine, net, policy, now_ms)
        with engine.connect() as conn:
            statuses = [s for (s,) in conn.execute(sa.select(ChainAnchor.status))]
        if statuses.count("mined") == n + 1:
            return
    raise SystemExit(f"the anchoring pass did not read back {n + 1} anchors: {statuses}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--anchors", type=int, default=50, help="coinbase anchors (plus 1 transaction)")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    figures = machine()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(f"sqlite:///{tmp}/ledger.db")
        migrate(engine)
        reference, account, credit = settle_one_block(engine, Path(tmp) / "log")
        net = SimNet(difficulty=Fraction(1, 2**24))
        asyncio.run(anchor_all(engine, net, credit, args.anchors - 1, Path(tmp) / "log1"))
        with engine.connect() as conn:
            doc = credit_proof(conn, account, reference)
        engine.dispose()
        assert doc is not None
        proof = json.dumps(doc).encode()
        bare = json.dumps({**doc, "anchors": []}).encode()
        path = Path(tmp) / "proof.json"
        path.write_bytes(proof)
        wall = []
        for _ in range(args.runs):
            t = time.perf_counter()
            out = subprocess.run(
                [sys.executable, str(ROOT / "verify.py"), str(path)], capture_output=True, text=True
            )
            wall.append(time.perf_counter() - t)
            assert out.returncode == 0, out.stdout
        startup = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            startup.append(time.perf_counter() - t)
        sys.path.insert(0, str(ROOT))
        import verify  # the verifier as a module: the checks alone, no interpreter start-up

        inside = []
        for _ in range(args.runs):
            t = time.perf_counter()
            verify.check(proof, verify.Options())
            inside.append(time.perf_counter() - t)
    anchors = doc["anchors"]
    result = {
        "machine": figures,
        "workload": (
            f"a miner's credit proof with {len(anchors)} anchors ({args.anchors - 1} coinbases, "
            "1 anchor transaction) from credit_proof; python verify.py proof.json, a fresh "
            f"interpreter each of {args.runs} runs"
        ),
        "anchors": len(anchors),
        "kinds": sorted({a["type"] for a in anchors}),
        "proof_bytes": len(proof),
        "bytes_per_anchor": round((len(proof) - len(bare)) / len(anchors)),
        "verify_py_s_median": round(statistics.median(wall), 3),
        "verify_py_s_max": round(max(wall), 3),
        "python_startup_s_median": round(statistics.median(startup), 3),
        "check_in_process_s_median": round(statistics.median(inside), 4),
    }
    print(json.dumps(result, indent=2))
    out = ROOT / "bench" / "results" / "verify.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
