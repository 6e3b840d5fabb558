"""Coinbase transaction building: BIP34 height, pool tag, extranonce space, outputs.

The coinbase is produced in two halves (`coinb1`, `coinb2`) around the extranonce, as Stratum
sends them. Pure: no I/O, no clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from poold.chain.serialize import script_num, varint

#: Witness reserved value (BIP141): 32 zero bytes; the coinbase's single witness item.
WITNESS_RESERVED_VALUE = bytes(32)
MAX_SCRIPTSIG_BYTES = 100  # consensus: coinbase scriptSig is 2..100 bytes


def push_data(data: bytes) -> bytes:
    """Script push of `data` with the smallest opcode."""
    n = len(data)
    if n < 0x4C:
        return bytes([n]) + data
    if n <= 0xFF:
        return b"\x4c" + bytes([n]) + data
    if n <= 0xFFFF:
        return b"\x4d" + struct.pack("<H", n) + data
    return b"\x4e" + struct.pack("<I", n) + data


def bip34_height(height: int) -> bytes:
    """The scriptSig prefix BIP34 demands: `CScript() << height` (OP_0, OP_1..OP_16, or a push)."""
    if height < 0:
        raise ValueError("height must be >= 0")
    if height == 0:
        return b"\x00"
    if height <= 16:
        return bytes([0x50 + height])
    return push_data(script_num(height))


@dataclass(frozen=True, slots=True)
class CoinbaseParts:
    """A coinbase split around its extranonce: tx = coinb1 + extranonce + coinb2 (no witness)."""

    coinb1: bytes
    coinb2: bytes
    extranonce_size: int
    has_witness_commitment: bool

    def serialize(self, extranonce: bytes) -> bytes:
        """Non-witness serialization: what the txid and the merkle root commit to."""
        return self.coinb1 + extranonce + self.coinb2

    def serialize_with_witness(self, extranonce: bytes) -> bytes:
        """Serialization for a block: with marker, flag and the reserved-value witness if segwit."""
        plain = self.serialize(extranonce)
        if not self.has_witness_commitment:
            return plain
        witness = b"\x01" + varint(len(WITNESS_RESERVED_VALUE)) + WITNESS_RESERVED_VALUE  # 1 item
        return plain[:4] + b"\x00\x01" + plain[4:-4] + witness + plain[-4:]


#: What marks poold's statement commitment in a coinbase OP_RETURN output.
STATEMENT_MAGIC = b"pold"


def statement_script(commitment: bytes | None, credit: bytes | None = None) -> bytes:
    """OP_RETURN PUSH36 "pold" <32-byte token-statement commitment>, or with a miners' credit
    commitment PUSH68 "pold" <statement commitment, or 32 zero bytes> <credit commitment>."""
    for name, value in (("statement", commitment), ("credit", credit)):
        if value is not None and len(value) != 32:
            raise ValueError(f"a {name} commitment is 32 bytes")
    if commitment is None and credit is None:
        raise ValueError("no commitment to carry")
    return b"\x6a" + push_data(STATEMENT_MAGIC + (commitment or bytes(32)) + (credit or b""))


def read_commitments(script: bytes) -> tuple[bytes | None, bytes | None] | None:
    """The (statement, credit) commitments an output script carries; None: not poold's."""
    if len(script) not in (38, 70) or script[0] != 0x6A or script[2:6] != STATEMENT_MAGIC:
        return None
    if script[1] != len(script) - 2:
        return None
    statement = script[6:38]
    credit = script[38:70] or None
    return (None if statement == bytes(32) else statement), credit


def build_coinbase(
    *,
    height: int,
    value_sat: int,
    payout_script: bytes,
    tag: bytes,
    extranonce_size: int,
    witness_commitment: bytes | None = None,
    flags: bytes = b"",
    statement_commitment: bytes | None = None,
    credit_commitment: bytes | None = None,
    job_key: bytes = b"",
) -> CoinbaseParts:
    """Build the coinbase halves for a template.

    scriptSig = BIP34 height | template flags | push(tag) | push(job key) | push-op |
    <extranonce bytes>. The job key (unique per job, across restarts and nodes: see
    `jobs.manager`) makes every job's merkle root its own, so one piece of work can never be a
    valid share of two jobs.
    Outputs: the whole `value_sat` to `payout_script`; then, with `statement_commitment`, a
    zero-value OP_RETURN carrying "pold", the latest token-statement commitment and, with
    `credit_commitment`, the latest miners' credit commitment (so neither history can be
    rewritten without it showing on chain: `statement_script`); then the witness
    commitment script (if any) with value 0. Raises ValueError if the scriptSig would exceed
    100 bytes.
    """
    if value_sat < 0:
        raise ValueError("coinbase value must be >= 0")
    if not 1 <= extranonce_size <= 75:
        raise ValueError("extranonce size must be 1..75 bytes")
    head = (
        bip34_height(height)
        + flags
        + (push_data(tag) if tag else b"")
        + (push_data(job_key) if job_key else b"")
    )
    script_len = len(head) + 1 + extranonce_size
    if script_len > MAX_SCRIPTSIG_BYTES:
        raise ValueError(
            f"coinbase scriptSig would be {script_len} bytes (max {MAX_SCRIPTSIG_BYTES}): "
            "shorten pool.coinbase_tag"
        )
    coinb1 = (
        struct.pack("<I", 1)  # tx version
        + b"\x01"  # one input
        + bytes(32)
        + b"\xff\xff\xff\xff"  # null prevout
        + varint(script_len)
        + head
        + bytes([extranonce_size])  # push opcode for the extranonce bytes that follow
    )
    outputs = [struct.pack("<q", value_sat) + varint(len(payout_script)) + payout_script]
    if statement_commitment is not None or credit_commitment is not None:
        script = statement_script(statement_commitment, credit_commitment)
        outputs.append(struct.pack("<q", 0) + varint(len(script)) + script)
    if witness_commitment is not None:
        outputs.append(struct.pack("<q", 0) + varint(len(witness_commitment)) + witness_commitment)
    coinb2 = (
        b"\xff\xff\xff\xff"  # sequence
        + varint(len(outputs))
        + b"".join(outputs)
        + struct.pack("<I", 0)  # locktime
    )
    return CoinbaseParts(coinb1, coinb2, extranonce_size, witness_commitment is not None)
