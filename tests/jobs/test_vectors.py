"""Real chain data through poold's job and validation code.

Mainnet blocks 0 and 951658 are rebuilt as Stratum jobs (their real coinbase split around an
extranonce, their real txids folded into a branch); the validator must reproduce the real
header and hash and flag each as a block. A recorded Bitcoin Core (signet) template with segwit
transactions checks the witness commitment poold's coinbase carries.
"""

from __future__ import annotations

import hashlib
import struct

import pytest

from poold.chain.merkle import merkle_root, sha256d
from poold.chain.targets import MAX_TARGET, target_from_bits
from poold.jobs.coinbase import CoinbaseParts, build_coinbase
from poold.jobs.job import Job, stratum_prevhash
from poold.jobs.manager import CoinbaseSpec, JobManager
from poold.jobs.template import BlockTemplate, TemplateTx, parse_template
from poold.shares.validate import Accepted, Reject, Rejected, validate_share
from tests.helpers import load_vector

MASK = 0x1FFFE000


def strip_witness(tx: bytes) -> bytes:
    """Non-witness serialization of a one-input transaction (test-local, independent parser)."""
    if tx[4:6] != b"\x00\x01":
        return tx
    pos = 6
    assert tx[pos] == 1
    pos += 1 + 36
    pos += 1 + tx[pos] + 4
    n_out = tx[pos]
    pos += 1
    for _ in range(n_out):
        pos += 8
        pos += 1 + tx[pos]
    return tx[:4] + tx[6:pos] + tx[-4:]


def job_from_block(v: dict, *, job_version: int | None = None) -> tuple[Job, bytes, bytes]:
    coinbase = strip_witness(bytes.fromhex(v["coinbase_hex"]))
    script_len = coinbase[41]
    script_end = 42 + script_len
    # Treat the last 8 scriptSig bytes as extranonce1 (4) + extranonce2 (4).
    cut = script_end - 8
    coinb1, en, coinb2 = coinbase[:cut], coinbase[cut:script_end], coinbase[script_end:]
    txids = [bytes.fromhex(t)[::-1] for t in v["txids"]]
    assert sha256d(coinbase) == txids[0]
    template = BlockTemplate(
        version=v["version"] if job_version is None else job_version,
        prev_hash=bytes.fromhex(v["previousblockhash"])[::-1],
        height=v["height"],
        bits=int(v["bits"], 16),
        curtime=v["time"],
        mintime=v["time"] - 3600,
        coinbase_value_sat=0,
        transactions=tuple(TemplateTx(b"", t, t, 0) for t in txids[1:]),
        witness_commitment=None,
        coinbase_flags=b"",
        longpollid=None,
        rules=(),
    )
    job = Job("1", template, CoinbaseParts(coinb1, coinb2, 8, False), 4, 4, True, v["time"])
    return job, en[:4], en[4:]


@pytest.mark.parametrize("name", ["mainnet_genesis.json", "mainnet_951658.json"])
def test_real_block_rebuilt_as_job_is_a_block(name: str) -> None:
    v = load_vector(name)
    job, en1, en2 = job_from_block(v)
    verdict = validate_share(
        job,
        extranonce1=en1,
        extranonce2=en2,
        ntime=v["time"],
        nonce=v["nonce"],
        version_bits=None,
        version_mask=0,
        share_target=MAX_TARGET,
        now=v["time"],
    )
    assert isinstance(verdict, Accepted)
    assert verdict.block_hash_hex == v["hash"]
    assert verdict.is_block
    assert job.merkle_root(en1, en2)[::-1].hex() == v["merkleroot"]
    if "header" in v:
        assert verdict.header.hex() == v["header"]


def test_real_segwit_block_with_version_rolling() -> None:
    """Block 951658 was mined with rolled version bits: a job at the base version plus the
    miner's bits in the BIP310 mask reproduces it; bits outside the mask are refused."""
    v = load_vector("mainnet_951658.json")
    base = v["version"] & ~MASK
    job, en1, en2 = job_from_block(v, job_version=base)
    rolled = v["version"] & MASK
    assert rolled, "the vector really rolled bits"
    ok = validate_share(
        job,
        extranonce1=en1,
        extranonce2=en2,
        ntime=v["time"],
        nonce=v["nonce"],
        version_bits=rolled,
        version_mask=MASK,
        share_target=MAX_TARGET,
        now=v["time"],
    )
    assert (
        isinstance(ok, Accepted) and ok.block_hash_hex == v["hash"] and ok.version == v["version"]
    )
    bad = validate_share(
        job,
        extranonce1=en1,
        extranonce2=en2,
        ntime=v["time"],
        nonce=v["nonce"] + 1,
        version_bits=rolled | 0x1,
        version_mask=MASK,
        share_target=MAX_TARGET,
        now=v["time"],
    )
    assert isinstance(bad, Rejected) and bad.code is Reject.OTHER


def test_real_block_with_wrong_nonce_is_low_difficulty_at_network_target() -> None:
    v = load_vector("mainnet_951658.json")
    job, en1, en2 = job_from_block(v)
    verdict = validate_share(
        job,
        extranonce1=en1,
        extranonce2=en2,
        ntime=v["time"],
        nonce=v["nonce"] ^ 1,
        version_bits=None,
        version_mask=0,
        share_target=target_from_bits(int(v["bits"], 16)),
        now=v["time"],
    )
    assert isinstance(verdict, Rejected) and verdict.code is Reject.LOW_DIFFICULTY


def test_stratum_prevhash_word_order() -> None:
    # Genesis' successor builds on the genesis hash; Stratum sends it word-swapped.
    genesis = bytes.fromhex(load_vector("mainnet_genesis.json")["hash"])[::-1]
    sp = stratum_prevhash(genesis)
    assert bytes.fromhex(sp)[:4] == genesis[:4][::-1]
    assert b"".join(bytes.fromhex(sp)[i : i + 4][::-1] for i in range(0, 32, 4)) == genesis


def test_core_segwit_template_commitment_is_right() -> None:
    """The recorded template's txids/wtxids are real, and the coinbase poold builds for it
    carries the witness commitment those wtxids demand."""
    raw = load_vector("core_signet_template_956.json")
    tpl = parse_template(raw)
    assert tpl.witness_commitment is not None and "segwit" in tpl.rules
    for tx in tpl.transactions:
        assert sha256d(tx.data) == tx.wtxid
        assert sha256d(strip_witness(tx.data)) == tx.txid != tx.wtxid
    spec = CoinbaseSpec(bytes.fromhex("0014") + bytes(20), b"/poold/", 4, 4)
    job = JobManager(spec).new_job(tpl, now=tpl.curtime)
    en1, en2 = bytes(4), bytes(4)
    coinbase = job.coinbase.serialize(en1 + en2)
    wroot = merkle_root([bytes(32)] + [t.wtxid for t in tpl.transactions])
    expected = bytes.fromhex("6a24aa21a9ed") + sha256d(wroot + bytes(32))
    assert expected.hex() == raw["default_witness_commitment"]
    # Last output of the coinbase: value 0, script = the commitment.
    tail = struct.pack("<q", 0) + bytes([len(expected)]) + expected + bytes(4)
    assert coinbase.endswith(tail)
    # The submitted block serializes the coinbase with its reserved-value witness.
    header = job.header(en1, en2, tpl.curtime, 0, tpl.version)
    block = job.block(header, en1, en2)
    full_cb = job.coinbase.serialize_with_witness(en1 + en2)
    assert block[81 : 81 + len(full_cb)] == full_cb
    assert full_cb[4:6] == b"\x00\x01" and full_cb[-4 - 33 : -4] == b"\x20" + bytes(32)
    assert strip_witness(full_cb) == coinbase
    assert header[36:68] == merkle_root([sha256d(coinbase)] + [t.txid for t in tpl.transactions])
    assert block.endswith(b"".join(t.data for t in tpl.transactions))


def test_legacy_template_has_no_commitment_output() -> None:
    raw = load_vector("bsv_regtest_template.json")
    tpl = parse_template(raw)
    assert tpl.witness_commitment is None and tpl.height == 2
    spec = CoinbaseSpec(b"\x51", b"/poold/", 4, 4)
    job = JobManager(spec).new_job(tpl, now=tpl.curtime)
    coinbase = job.coinbase.serialize(bytes(8))
    assert not job.coinbase.has_witness_commitment
    assert b"\xaa\x21\xa9\xed" not in coinbase
    assert job.coinbase.serialize_with_witness(bytes(8)) == coinbase
    # BIP34: height 2 is OP_2 at the start of the scriptSig.
    assert coinbase[42] == 0x52


def test_build_coinbase_matches_hand_serialization() -> None:
    parts = build_coinbase(
        height=840000, value_sat=312_500_000, payout_script=b"\x51", tag=b"/x/", extranonce_size=8
    )
    tx = parts.serialize(bytes(range(8)))
    script = bytes.fromhex("0340d10c") + b"\x03/x/" + b"\x08" + bytes(range(8))
    expected = (
        struct.pack("<I", 1)
        + b"\x01"
        + bytes(32)
        + b"\xff" * 4
        + bytes([len(script)])
        + script
        + b"\xff" * 4
        + b"\x01"
        + struct.pack("<q", 312_500_000)
        + b"\x01\x51"
        + bytes(4)
    )
    assert tx == expected
    assert hashlib.sha256(tx).digest()  # serializes
