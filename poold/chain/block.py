"""Blocks as bytes: the 80-byte header, transactions in their non-witness serialisation (what a
txid and the merkle root commit to), and the merkle branch that proves one transaction is in a
block. What an anchor's evidence is made of (`ledger.anchors`); `verify.py` re-implements the
checks with the standard library alone. Pure: imports only the standard library and
`chain.merkle`/`chain.serialize`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from poold.chain.merkle import merkle_root, sha256d
from poold.chain.serialize import varint

HEADER_BYTES = 80
NULL_PREVOUT = bytes(32) + b"\xff\xff\xff\xff"


class BlockFormatError(ValueError):
    """Bytes that are not a block or a transaction; the message says where they stop making
    sense."""


class _Reader:
    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise BlockFormatError(f"truncated at byte {self.pos} (wanted {n} more)")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        first = self.take(1)[0]
        if first < 0xFD:
            return first
        size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        return int.from_bytes(self.take(size), "little")


@dataclass(frozen=True, slots=True)
class Tx:
    """One transaction: `plain` is its non-witness serialisation; `outputs` (value, script)."""

    plain: bytes
    txid: bytes  # internal byte order
    inputs: tuple[tuple[bytes, bytes], ...]  # (prevout: txid + index, 36 bytes; scriptSig)
    outputs: tuple[tuple[int, bytes], ...]

    @property
    def is_coinbase(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0][0] == NULL_PREVOUT

    @property
    def height(self) -> int | None:
        """A coinbase's BIP34 height (None: not a coinbase, or no height push)."""
        if not self.is_coinbase or not self.inputs[0][1]:
            return None
        sig = self.inputs[0][1]
        op = sig[0]
        if op == 0:
            return 0
        if 0x51 <= op <= 0x60:
            return op - 0x50
        if 1 <= op <= 8 and len(sig) > op:
            return int.from_bytes(sig[1 : 1 + op], "little", signed=False)
        return None


def _read_tx(r: _Reader) -> Tx:
    """One transaction at the reader's position, in either serialisation; returns it with its
    witness stripped."""
    start = r.pos
    version = r.take(4)
    segwit = r.data[r.pos : r.pos + 2] == b"\x00\x01"
    if segwit:
        r.take(2)
    body_start = r.pos
    n_in = r.varint()
    inputs = []
    for _ in range(n_in):
        prevout = r.take(36)
        inputs.append((prevout, r.take(r.varint())))
        r.take(4)
    outputs = []
    for _ in range(r.varint()):
        value = struct.unpack("<q", r.take(8))[0]
        outputs.append((value, r.take(r.varint())))
    body = r.data[body_start : r.pos]
    if segwit:
        for _ in range(n_in):
            for _ in range(r.varint()):
                r.take(r.varint())
    locktime = r.take(4)
    plain = version + body + locktime if segwit else r.data[start : r.pos]
    return Tx(plain, sha256d(plain), tuple(inputs), tuple(outputs))


def parse_tx(data: bytes) -> Tx:
    """Exactly one transaction, nothing after it."""
    r = _Reader(data)
    tx = _read_tx(r)
    if r.pos != len(data):
        raise BlockFormatError(f"{len(data) - r.pos} bytes after the transaction")
    return tx


@dataclass(frozen=True, slots=True)
class Block:
    header: bytes
    txs: tuple[Tx, ...]

    @property
    def hash(self) -> bytes:
        """Internal byte order (reverse it for the display hex)."""
        return sha256d(self.header)


def parse_block(data: bytes) -> Block:
    """A serialised block: header, transaction count, transactions; its merkle root checked."""
    if len(data) < HEADER_BYTES + 1:
        raise BlockFormatError(f"a block is at least 81 bytes, got {len(data)}")
    r = _Reader(data, HEADER_BYTES)
    count = r.varint()
    if count < 1:
        raise BlockFormatError("a block without transactions")
    txs = tuple(_read_tx(r) for _ in range(count))
    if r.pos != len(data):
        raise BlockFormatError(f"{len(data) - r.pos} bytes after the last transaction")
    block = Block(data[:HEADER_BYTES], txs)
    if merkle_root([t.txid for t in txs]) != block.header[36:68]:
        raise BlockFormatError("the transactions do not hash to the header's merkle root")
    return block


def merkle_branch(hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The siblings of `hashes[index]` from the leaves up: folding the leaf through them (left
    or right by the bits of `index`, `fold`) gives the merkle root."""
    if not 0 <= index < len(hashes):
        raise ValueError(f"index {index} is outside the {len(hashes)} transactions")
    branch = []
    layer = list(hashes)
    while len(layer) > 1:
        if len(layer) % 2:
            layer.append(layer[-1])
        branch.append(layer[index ^ 1])
        layer = [sha256d(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]
        index //= 2
    return branch


def fold(leaf: bytes, index: int, branch: Sequence[bytes]) -> bytes:
    """The merkle root `leaf` at position `index` climbs to through `branch`."""
    h = leaf
    for sibling in branch:
        h = sha256d(sibling + h) if index & 1 else sha256d(h + sibling)
        index >>= 1
    return h


def serialize_tx(
    prevouts: Sequence[tuple[bytes, int]],
    outputs: Sequence[tuple[int, bytes]],
    *,
    version: int = 2,
    sequence: int = 0xFFFFFFFD,
) -> bytes:
    """An unsigned transaction (empty scriptSigs) spending `prevouts` (txid in internal
    order, output index) into `outputs` (value in sat, script)."""
    out = struct.pack("<I", version) + varint(len(prevouts))
    for txid, n in prevouts:
        out += txid + struct.pack("<I", n) + b"\x00" + struct.pack("<I", sequence)
    out += varint(len(outputs))
    for value, script in outputs:
        out += struct.pack("<q", value) + varint(len(script)) + script
    return out + b"\x00\x00\x00\x00"
