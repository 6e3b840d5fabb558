"""One Stratum job: a template plus our coinbase, ready to notify and to rebuild headers.

Pure: no I/O, no clock. Everything a share validation can precompute is computed once here.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from poold.chain.merkle import coinbase_branch
from poold.chain.serialize import varint
from poold.chain.targets import target_from_bits
from poold.jobs.coinbase import CoinbaseParts
from poold.jobs.template import BlockTemplate

_sha256 = hashlib.sha256
_pack_u32 = struct.Struct("<I").pack
_pack_tail = struct.Struct("<III").pack  # ntime, bits, nonce


def stratum_prevhash(prev_hash: bytes) -> str:
    """Stratum's prevhash: header-order bytes with each 4-byte word reversed, as hex."""
    return b"".join(prev_hash[i : i + 4][::-1] for i in range(0, 32, 4)).hex()


@dataclass(slots=True, eq=False)
class Job:
    job_id: str
    template: BlockTemplate
    coinbase: CoinbaseParts
    extranonce1_size: int
    extranonce2_size: int
    clean: bool
    ntime: int
    statement_commitment: bytes | None = None  # what its coinbase commits to (see coinbase.py)
    credit_commitment: bytes | None = None
    branch: tuple[bytes, ...] = field(init=False)
    network_target: int = field(init=False)
    #: Duplicate keys seen for this job: (en1, en2, ntime, nonce, version). Bounded by job lifetime.
    seen: set[tuple[bytes, bytes, int, int, int]] = field(init=False, default_factory=set)
    # Copied out of the (frozen) template once, for the per-share header build.
    version: int = field(init=False)
    mintime: int = field(init=False)
    height: int = field(init=False)
    bits: int = field(init=False)
    _prev_hash: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        t = self.template
        self.branch = tuple(coinbase_branch([tx.txid for tx in t.transactions]))
        self.network_target = target_from_bits(t.bits)
        self.version = t.version
        self.mintime = t.mintime
        self.height, self.bits = t.height, t.bits
        self._prev_hash = t.prev_hash

    def notify_params(self) -> list[object]:
        """Params of `mining.notify` for this job."""
        t = self.template
        return [
            self.job_id,
            stratum_prevhash(t.prev_hash),
            self.coinbase.coinb1.hex(),
            self.coinbase.coinb2.hex(),
            [h.hex() for h in self.branch],
            f"{t.version:08x}",
            f"{t.bits:08x}",
            f"{self.ntime:08x}",
            self.clean,
        ]

    def merkle_root(self, extranonce1: bytes, extranonce2: bytes) -> bytes:
        """The coinbase's txid folded through the branch (`sha256d` and `fold_branch` written
        out: this runs for every share)."""
        sha, cb = _sha256, self.coinbase
        h = sha(sha(cb.coinb1 + extranonce1 + extranonce2 + cb.coinb2).digest()).digest()
        for step in self.branch:
            h = sha(sha(h + step).digest()).digest()
        return h

    def header_middle(self, extranonce1: bytes, extranonce2: bytes) -> bytes:
        """Header bytes 4..68 (previous block hash, merkle root): all a coinbase's extranonces
        decide. A miner rolls nonce, time and version far more often than its extranonce2,
        so a session keeps the last one instead of folding the branch for every share."""
        return self._prev_hash + self.merkle_root(extranonce1, extranonce2)

    def header(
        self, extranonce1: bytes, extranonce2: bytes, ntime: int, nonce: int, version: int
    ) -> bytes:
        """The 80-byte block header a miner hashed for these submit fields."""
        middle = self.header_middle(extranonce1, extranonce2)
        return _pack_u32(version) + middle + _pack_tail(ntime, self.bits, nonce)

    def header_from(self, middle: bytes, ntime: int, nonce: int, version: int) -> bytes:
        """The header from `header_middle`'s bytes and the submit's time, nonce and version."""
        return _pack_u32(version) + middle + _pack_tail(ntime, self.bits, nonce)

    def block(self, header: bytes, extranonce1: bytes, extranonce2: bytes) -> bytes:
        """Full serialized block for `submitblock`."""
        txs = self.template.transactions
        return (
            header
            + varint(1 + len(txs))
            + self.coinbase.serialize_with_witness(extranonce1 + extranonce2)
            + b"".join(tx.data for tx in txs)
        )
