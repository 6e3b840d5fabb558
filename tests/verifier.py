"""The standalone verifier (`verify.py`, which imports nothing of poold) loaded as a module,
and how the tests hand it a proof: as bytes of JSON, the way a holder or miner gets one."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("standalone_verify", ROOT / "verify.py")
assert _spec is not None and _spec.loader is not None
verifier: Any = importlib.util.module_from_spec(_spec)
sys.modules["standalone_verify"] = verifier  # its dataclasses look their module up
_spec.loader.exec_module(verifier)


def complete(doc: dict[str, Any]) -> dict[str, Any]:
    """A document `accounting.merkle_sum.proof_document` made, as the ledger completes one that
    no anchoring pass has seen: no anchors, cut at its chain's head, no pool identity."""
    chain = doc.get("chain") or []
    head = chain[-1]["commitment"] if chain else doc["period"]["commitment"]
    doc.setdefault("anchors", [])
    doc.setdefault("cut", {"head": head, "best_block": None, "best_height": None, "time": None})
    doc.setdefault("pool", None)
    return doc


def check(doc: dict[str, Any] | bytes, **options: Any) -> Any:
    """`verify.py`'s verdict on a document (Failed when a check fails)."""
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return verifier.check(raw, verifier.Options(**options))


#: For ledgers built without an anchoring pass and dated by their fixtures: the grace for
#: anchoring is waived (tests/test_verify.py checks the grace rule itself).
UNANCHORED = {"grace_s": 10**12}


# -- anchors on the simnet: real blocks, real evidence ---------------------------------------------

NOW = 1_800_000_000
PAYOUT = b"\x00\x14" + bytes(range(20))  # what the pool's coinbases pay
ANCHOR_SCRIPT = b"\x00\x14" + bytes(range(20, 40))  # what its anchor transactions pay
EN1, EN2 = b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"


def simnet(now: int = NOW) -> Any:
    from fractions import Fraction

    from poold.bitcoind.simnet import SimNet

    return SimNet(difficulty=Fraction(1, 2**24), clock=lambda: now)  # 1 hash in 256 a block


async def mine(
    net: Any,
    *,
    statement: bytes | None = None,
    credit: bytes | None = None,
    payout: bytes = PAYOUT,
) -> str:
    """The pool finds the next block, its coinbase carrying the given commitments (and the
    template's transactions: the wallet's anchors among them); its hash (display order)."""
    import hashlib

    from poold.jobs.manager import CoinbaseSpec, JobManager
    from poold.jobs.template import parse_template

    jobs = JobManager(CoinbaseSpec(payout, b"/t/", 4, 4))
    jobs.statement_commitment, jobs.credit_commitment = statement, credit
    job = jobs.new_job(parse_template(await net.get_template()), NOW)
    for nonce in range(1 << 20):
        header = job.header(EN1, EN2, job.ntime, nonce, job.version)
        digest = hashlib.sha256(hashlib.sha256(header).digest()).digest()
        if int.from_bytes(digest, "little") <= job.network_target:
            assert await net.submit_block(job.block(header, EN1, EN2).hex()) is None
            return digest[::-1].hex()
    raise AssertionError("no nonce")


async def anchor_of(net: Any, block_hash: str, commitment: bytes, txid: str | None = None) -> dict:
    """A proof's anchor: the coinbase (`txid` None) or transaction of a simnet block, with its
    evidence as the ledger reads it back (`ledger.anchors.evidence`)."""
    from poold.ledger.anchors import evidence

    ev = evidence(await net.raw_block(block_hash), txid=txid)
    return {
        "type": "coinbase" if txid is None else "transaction",
        "block": block_hash,
        "height": ev.height,
        "header": ev.header,
        "tx": ev.tx,
        "index": ev.index,
        "branch": ev.branch,
        "commitment": commitment.hex(),
    }
