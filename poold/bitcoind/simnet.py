"""simnet: a built-in private chain that serves real-format templates and really checks blocks.

It produces Bitcoin Core-shaped getblocktemplate results (segwit rules, witness commitment,
synthetic but well-formed transactions with fees) at a configurable network difficulty, and
accepts a submitted block only if it is what a node would accept from us: it extends the tip,
its header meets the target, its merkle root and witness commitment are right, its coinbase
carries the BIP34 height and pays no more than subsidy + fees. Its wallet sends anchor
transactions (`send_anchor`): they wait in its mempool, every template offers them, and the
pool's next block mines them. The daemon runs on it with no node; tests use it where no real
node is needed. Pure asyncio-free logic behind async methods.

It is also a wallet (the `Wallet` protocol, as bitcoind's): `send_many` builds a real-format
transaction paying each address (a synthetic input, as the simnet's other transactions have:
its coins are not tracked), offers it in the next template for a new tip, and it is mined with
the block built on that template; `wallet_tx` counts its confirmations from there.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from poold.bitcoind.client import BitcoindError, BitcoindRefused, WalletTx
from poold.chain.address import Network, address_to_script
from poold.chain.block import serialize_tx
from poold.chain.merkle import merkle_root, sha256d
from poold.chain.serialize import varint
from poold.chain.subsidy import subsidy_sat
from poold.chain.targets import bits_from_target, target_from_bits, target_from_difficulty
from poold.jobs.coinbase import bip34_height


@dataclass(frozen=True, slots=True)
class SimTx:
    data: bytes
    txid: bytes  # internal order
    wtxid: bytes
    fee_sat: int


@dataclass(frozen=True, slots=True)
class SimBlock:
    height: int
    hash: bytes  # internal order
    header: bytes
    coinbase_outputs: tuple[tuple[int, bytes], ...]  # (value_sat, script)
    coinbase_script_sig: bytes
    fees_sat: int
    external: bool
    data: bytes = b""  # the serialised block (the pool's blocks; foreign ones are headers)
    txids: tuple[bytes, ...] = ()  # its transactions after the coinbase (internal order)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        first = self.take(1)[0]
        if first < 0xFD:
            return first
        size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        return int.from_bytes(self.take(size), "little")


@dataclass(slots=True)
class SimSend:
    """One wallet send: the comment it was made with, its transaction, and the block that
    mined it (hash, height), once one has."""

    comment: str
    time_s: float
    tx: SimTx
    mined: tuple[bytes, int] | None = None


#: The fee a wallet send pays: a flat part and one per output (satoshis).
SEND_FEE_SAT, SEND_FEE_PER_OUTPUT_SAT = 200, 50


def _wallet_tx(seed: int, outputs: list[tuple[int, bytes]], fee_sat: int) -> SimTx:
    prevout = hashlib.sha256(b"simnet-wallet" + seed.to_bytes(8, "little")).digest()
    body_in = b"\x01" + prevout + b"\x00\x00\x00\x00" + b"\x00" + b"\xfd\xff\xff\xff"
    body_out = varint(len(outputs)) + b"".join(
        struct.pack("<q", value) + varint(len(script)) + script for value, script in outputs
    )
    data = struct.pack("<I", 2) + body_in + body_out + b"\x00\x00\x00\x00"
    return SimTx(data, sha256d(data), sha256d(data), fee_sat)


def _make_tx(seed: int, *, witness: bool) -> SimTx:
    prevout = hashlib.sha256(b"simnet-prevout" + seed.to_bytes(8, "little")).digest()
    script_sig = b"" if witness else bytes([0x16, 0x00, 0x14]) + prevout[:20]
    out_script = b"\x00\x14" + hashlib.sha256(prevout).digest()[:20]
    value = 10_000 + seed % 90_000
    body_in = b"\x01" + prevout + b"\x00\x00\x00\x00" + varint(len(script_sig)) + script_sig
    body_in += b"\xfd\xff\xff\xff"
    body_out = b"\x01" + struct.pack("<q", value) + varint(len(out_script)) + out_script
    plain = struct.pack("<I", 2) + body_in + body_out + b"\x00\x00\x00\x00"
    if witness:
        sig, pub = bytes(71) + b"\x01", b"\x02" + prevout
        wit = b"\x02" + varint(len(sig)) + sig + varint(len(pub)) + pub
        full = struct.pack("<I", 2) + b"\x00\x01" + body_in + body_out + wit + b"\x00\x00\x00\x00"
    else:
        full = plain
    return SimTx(full, sha256d(plain), sha256d(full), 500 + seed % 4_500)


class SimNet:
    """A private chain in memory. `clock` returns unix seconds (injectable for tests)."""

    def __init__(
        self,
        *,
        difficulty: Fraction,
        tx_count: int = 4,
        clock: Callable[[], float] = time.time,
        network: Network = Network.REGTEST,
    ) -> None:
        self.network = network  # the addresses its wallet pays
        self.sends: dict[bytes, SimSend] = {}  # txid (internal order) -> the send
        self.bits = bits_from_target(target_from_difficulty(difficulty))
        self.target = target_from_bits(self.bits)
        self.tx_count = tx_count
        self.clock = clock
        genesis_header = b"simnet genesis".ljust(80, b"\x00")
        self.blocks: list[SimBlock] = [
            SimBlock(0, sha256d(genesis_header), genesis_header, (), b"", 0, external=True)
        ]
        self._tx_seed = 0
        self._offered: dict[bytes, tuple[SimTx, ...]] = {}  # tip hash -> its template's txs
        # Every transaction list a template offered on a tip (the wallet's anchors join later).
        self._variants: dict[bytes, list[tuple[SimTx, ...]]] = {}
        self._wallet: dict[bytes, SimTx] = {}  # anchor transactions sent, by txid
        self.submissions: list[tuple[str, str | None]] = []
        self._stale: list[list[SimBlock]] = []  # branches a reorg took off the best chain
        self._external = 0  # foreign blocks made so far: no two are alike, even after a reorg

    @property
    def tip(self) -> SimBlock:
        return self.blocks[-1]

    @property
    def height(self) -> int:
        return self.tip.height

    def _mempool(self) -> tuple[SimTx, ...]:
        txs = self._offered.get(self.tip.hash)
        if txs is None:
            seeds = range(self._tx_seed + 1, self._tx_seed + 1 + self.tx_count)
            self._tx_seed += self.tx_count
            # The wallet's sends not on the best chain yet come first: the next block mines
            # them (a template already offered for this tip is not changed under a miner).
            waiting = tuple(s.tx for s in self.sends.values() if not self._on_chain(s))
            txs = waiting + tuple(_make_tx(s, witness=s % 2 == 0) for s in seeds)
            self._offered[self.tip.hash] = txs
        mined = {t for b in self.blocks for t in b.txids} if self._wallet else set()
        txs += tuple(t for t in self._wallet.values() if t.txid not in mined)
        variants = self._variants.setdefault(self.tip.hash, [])
        if txs not in variants:
            variants.append(txs)
        return txs

    def _on_chain(self, send: SimSend) -> bool:
        if send.mined is None:
            return False
        block_hash, height = send.mined
        return height <= self.height and self.blocks[height].hash == block_hash

    # -- the Wallet interface --------------------------------------------------------------------

    async def send_many(self, outputs: Mapping[str, int], comment: str) -> str:
        paid = []
        for address, amount in outputs.items():
            try:
                script = address_to_script(address, self.network)
            except ValueError as exc:
                raise BitcoindRefused(f"simnet wallet: address {address!r}: {exc}") from None
            if amount <= 0:
                raise BitcoindRefused(f"simnet wallet: amount {amount} for {address!r}")
            paid.append((amount, script))
        fee = SEND_FEE_SAT + SEND_FEE_PER_OUTPUT_SAT * len(paid)
        tx = _wallet_tx(len(self.sends) + 1, paid, fee)
        self.sends[tx.txid] = SimSend(comment, self.clock(), tx)
        return tx.txid[::-1].hex()

    async def find_sent(self, comment: str, since_s: int) -> str | None:
        for txid, send in self.sends.items():
            if send.comment == comment and send.time_s >= since_s:
                return txid[::-1].hex()
        return None

    async def wallet_tx(self, txid: str) -> WalletTx:
        send = self.sends.get(bytes.fromhex(txid)[::-1])
        if send is None:
            raise BitcoindRefused(f"simnet wallet: no transaction {txid}")
        depth = self.height - send.mined[1] + 1 if send.mined and self._on_chain(send) else 0
        return WalletTx(txid, depth, send.tx.fee_sat)

    def template(self) -> dict[str, object]:
        txs = self._mempool()
        height = self.height + 1
        wroot = merkle_root([bytes(32), *(t.wtxid for t in txs)])
        commitment = bytes.fromhex("6a24aa21a9ed") + sha256d(wroot + bytes(32))
        now = int(self.clock())
        mintime = int.from_bytes(self.tip.header[68:72], "little") + 1 if self.height else now - 60
        return {
            "capabilities": ["proposal"],
            "version": 0x20000000,
            "rules": ["csv", "!segwit", "taproot"],
            "vbavailable": {},
            "vbrequired": 0,
            "previousblockhash": self.tip.hash[::-1].hex(),
            "transactions": [
                {
                    "data": t.data.hex(),
                    "txid": t.txid[::-1].hex(),
                    "hash": t.wtxid[::-1].hex(),
                    "depends": [],
                    "fee": t.fee_sat,
                    "sigops": 1,
                    "weight": 4 * len(t.data),
                }
                for t in txs
            ],
            "coinbaseaux": {},
            "coinbasevalue": subsidy_sat(height) + sum(t.fee_sat for t in txs),
            "longpollid": self.tip.hash[::-1].hex() + str(height),
            "target": f"{self.target:064x}",
            "mintime": min(mintime, now),
            "mutable": ["time", "transactions", "prevblock"],
            "noncerange": "00000000ffffffff",
            "sigoplimit": 80000,
            "sizelimit": 4000000,
            "weightlimit": 4000000,
            "curtime": now,
            "bits": f"{self.bits:08x}",
            "height": height,
            "default_witness_commitment": commitment.hex(),
        }

    # -- the Node interface ----------------------------------------------------------------------

    async def get_template(self) -> dict[str, object]:
        return self.template()

    async def best_block_hash(self) -> str:
        return self.tip.hash[::-1].hex()

    async def submit_block(self, block_hex: str) -> str | None:
        try:
            reason = self._accept(bytes.fromhex(block_hex))
        except ValueError as exc:
            reason = f"bad-block-decode ({exc})"
        self.submissions.append((block_hex[:160], reason))
        return reason

    async def close(self) -> None:
        return None

    async def raw_block(self, block_hash: str) -> bytes:
        wanted = bytes.fromhex(block_hash)[::-1]
        for b in self.blocks:
            if b.hash == wanted:
                return b.data or b.header + b"\x00"
        raise BitcoindError(f"simnet has no block {block_hash} on its best chain")

    # -- the wallet (anchor transactions) --------------------------------------------------------

    async def send_anchor(
        self, script: bytes, *, address: str, change_script: bytes, fee_rate_sat_vb: int
    ) -> str:
        n = len(self._wallet)
        prevout = hashlib.sha256(b"simnet-anchor" + n.to_bytes(8, "little")).digest()
        body = serialize_tx([(prevout, 0)], [(0, script), (0, change_script)])
        fee = fee_rate_sat_vb * (len(body) + 108)
        signed = serialize_tx([(prevout, 0)], [(0, script), (1_000_000 - fee, change_script)])
        # A stand-in signature: simnet checks no scripts, but the input looks spent.
        signed = signed[:41] + b"\x02\x51\x51" + signed[42:]
        tx = SimTx(signed, sha256d(signed), sha256d(signed), fee)
        self._wallet[tx.txid] = tx
        return tx.txid[::-1].hex()

    async def tx_block(self, txid: str) -> str | None:
        wanted = bytes.fromhex(txid)[::-1]
        for b in self.blocks:
            if wanted in b.txids:
                return b.hash[::-1].hex()
        return None

    async def block_confirmations(self, block_hash: str) -> int:
        wanted = bytes.fromhex(block_hash)[::-1]
        for b in self.blocks:
            if b.hash == wanted:
                return self.height - b.height + 1
        return -1

    async def tip_height(self) -> int:
        return self.height

    async def block_fees(self, height: int) -> tuple[str, int]:
        if not 0 <= height <= self.height:
            raise BitcoindError(f"simnet has no block at height {height}")
        block = self.blocks[height]
        return block.hash[::-1].hex(), block.fees_sat

    # -- block checks ----------------------------------------------------------------------------

    def _accept(self, block: bytes) -> str | None:
        header = block[:80]
        if len(header) != 80:
            raise ValueError("short header")
        block_hash = sha256d(header)
        if any(b.hash == block_hash for b in self.blocks):
            return "duplicate"
        if header[4:36] != self.tip.hash:
            return "prev-blk-not-found"
        bits = int.from_bytes(header[72:76], "little")
        if bits != self.bits:
            return "bad-diffbits"
        if int.from_bytes(block_hash, "little") > self.target:
            return "high-hash"
        ntime = int.from_bytes(header[68:72], "little")
        if ntime > self.clock() + 7200:
            return "time-too-new"
        r = _Reader(block)
        r.take(80)
        n_tx = r.varint()
        cb_start = r.pos
        r.take(4)  # version
        segwit = block[r.pos : r.pos + 2] == b"\x00\x01"
        if segwit:
            r.take(2)
        if r.varint() != 1:
            return "bad-cb-multiple-inputs"
        if r.take(36) != bytes(32) + b"\xff\xff\xff\xff":
            return "bad-cb-prevout"
        script_sig = r.take(r.varint())
        r.take(4)
        outputs = []
        for _ in range(r.varint()):
            value = struct.unpack("<q", r.take(8))[0]
            outputs.append((value, r.take(r.varint())))
        witness_reserved = None
        if segwit:
            items = [r.take(r.varint()) for _ in range(r.varint())]
            witness_reserved = items[0] if len(items) == 1 else None
        r.take(4)  # locktime
        cb_full = block[cb_start : r.pos]
        cb_plain = self._strip_witness(cb_full) if segwit else cb_full
        rest = block[r.pos :]
        for txs in self._variants.get(self.tip.hash, [()]):
            if n_tx == 1 + len(txs) and rest == b"".join(t.data for t in txs):
                break
        else:
            return "bad-txns (transactions differ from the template)"
        expected_height = self.height + 1
        if not script_sig.startswith(bip34_height(expected_height)):
            return "bad-cb-height"
        if not 2 <= len(script_sig) <= 100:
            return "bad-cb-length"
        if header[36:68] != merkle_root([sha256d(cb_plain), *(t.txid for t in txs)]):
            return "bad-txnmrklroot"
        wroot = merkle_root([bytes(32), *(t.wtxid for t in txs)])
        commit_scripts = [s for _v, s in outputs if s.startswith(bytes.fromhex("6a24aa21a9ed"))]
        has_witness_tx = any(t.txid != t.wtxid for t in txs)
        if commit_scripts:
            if witness_reserved is None:
                return "bad-witness-nonce-size"
            if commit_scripts[-1][6:38] != sha256d(wroot + witness_reserved):
                return "bad-witness-merkle-match"
        elif has_witness_tx:
            return "unexpected-witness"
        fees = sum(t.fee_sat for t in txs)
        if sum(v for v, _s in outputs) > subsidy_sat(expected_height) + fees:
            return "bad-cb-amount"
        self.blocks.append(
            SimBlock(
                expected_height,
                block_hash,
                header,
                tuple(outputs),
                script_sig,
                fees,
                False,
                block,
                tuple(t.txid for t in txs),
            )
        )
        for t in txs:  # the wallet's sends this block mined
            if t.txid in self.sends:
                self.sends[t.txid].mined = (block_hash, expected_height)
        return None

    @staticmethod
    def _strip_witness(tx: bytes) -> bytes:
        r = _Reader(tx)
        version = r.take(4)
        r.take(2)
        start = r.pos
        n_in = r.varint()
        for _ in range(n_in):
            r.take(36)
            r.take(r.varint())
            r.take(4)
        for _ in range(r.varint()):
            r.take(8)
            r.take(r.varint())
        body = tx[start : r.pos]
        for _ in range(n_in):
            for _ in range(r.varint()):
                r.take(r.varint())
        return version + body + r.take(4)

    def known_blocks(self) -> list[SimBlock]:
        """Every block the node holds: the best chain and the branches reorgs took off it
        (which `readopt` may bring back)."""
        return [*self.blocks, *(b for branch in self._stale for b in branch)]

    def reorg(self, depth: int) -> list[SimBlock]:
        """Another chain overtakes: the newest `depth` blocks leave the best chain and
        `depth + 1` foreign blocks replace them. Returns what left (`readopt` may bring it
        back). The genesis block never leaves."""
        depth = max(0, min(depth, self.height))
        if depth == 0:
            return []
        gone = self.blocks[-depth:]
        del self.blocks[-depth:]
        self._stale.append(gone)
        for _ in range(depth + 1):
            self.mine_external_block()
        return gone

    def readopt(self) -> list[SimBlock]:
        """The branch the last reorg took away overtakes again, with one more block on top:
        whatever was built meanwhile leaves the best chain. Returns the blocks that came back."""
        if not self._stale:
            return []
        back = self._stale.pop()
        del self.blocks[back[0].height :]  # blocks[i] is at height i
        self.blocks.extend(back)
        self.mine_external_block()
        return back

    def mine_external_block(self) -> SimBlock:
        """Another pool finds a block: the tip moves without us (tests and demo use this)."""
        height = self.height + 1
        self._external += 1
        ntime = max(int(self.clock()), int.from_bytes(self.tip.header[68:72], "little") + 1)
        header = (
            struct.pack("<I", 0x20000000)
            + self.tip.hash
            + hashlib.sha256(b"external" + self._external.to_bytes(8, "little")).digest()
            + struct.pack("<III", ntime, self.bits, height)
        )
        block = SimBlock(height, sha256d(header), header, (), b"", 0, external=True)
        self.blocks.append(block)
        return block
