"""One Stratum job: a template plus our coinbase, ready to notify and to rebuild headers.

Pure: no I/O, no clock. Everything a share validation can precompute is computed once here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from poold.jobs.coinbase import CoinbaseParts, varint
from poold.jobs.merkle import coinbase_branch, fold_branch, sha256d
from poold.jobs.template import BlockTemplate
from poold.shares.difficulty import target_from_bits


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
    branch: tuple[bytes, ...] = field(init=False)
    network_target: int = field(init=False)
    #: Duplicate keys seen for this job: (en1, en2, ntime, nonce, version). Bounded by job lifetime.
    seen: set[tuple[bytes, bytes, int, int, int]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.branch = tuple(coinbase_branch([tx.txid for tx in self.template.transactions]))
        self.network_target = target_from_bits(self.template.bits)

    @property
    def version(self) -> int:
        return self.template.version

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
        coinbase_hash = sha256d(self.coinbase.serialize(extranonce1 + extranonce2))
        return fold_branch(coinbase_hash, self.branch)

    def header(
        self, extranonce1: bytes, extranonce2: bytes, ntime: int, nonce: int, version: int
    ) -> bytes:
        """The 80-byte block header a miner hashed for these submit fields."""
        return (
            struct.pack("<I", version)
            + self.template.prev_hash
            + self.merkle_root(extranonce1, extranonce2)
            + struct.pack("<III", ntime, self.template.bits, nonce)
        )

    def block(self, header: bytes, extranonce1: bytes, extranonce2: bytes) -> bytes:
        """Full serialized block for `submitblock`."""
        txs = self.template.transactions
        return (
            header
            + varint(1 + len(txs))
            + self.coinbase.serialize_with_witness(extranonce1 + extranonce2)
            + b"".join(tx.data for tx in txs)
        )
