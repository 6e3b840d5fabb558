"""The interface every block source implements (a real bitcoind or the built-in simnet)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class BitcoindError(Exception):
    """bitcoind could not be reached or refused a call; the message says which and why."""


class BitcoindRefused(BitcoindError):
    """bitcoind answered with an error: the call was not carried out (unlike a timeout, where
    it may have been)."""


@dataclass(frozen=True)
class WalletTx:
    txid: str
    confirmations: int  # -1 when the wallet reports it conflicted
    fee_sat: int  # what the wallet paid in fees, >= 0


class Bitcoind(Protocol):
    async def get_template(self) -> dict[str, object]:
        """A getblocktemplate result (rules ["segwit"])."""
        ...

    async def best_block_hash(self) -> str:
        """Hash of the tip, display order."""
        ...

    async def submit_block(self, block_hex: str) -> str | None:
        """None when bitcoind accepted the block, else its reason (BIP22)."""
        ...

    async def block_confirmations(self, block_hash: str) -> int:
        """Confirmations, or -1 when the block is not on the best chain."""
        ...

    async def tip_height(self) -> int:
        """Height of the best chain's tip."""
        ...

    async def block_fees(self, height: int) -> tuple[str, int]:
        """(hash, total fees in satoshis) of the best chain's block at `height`: what its
        coinbase claimed beyond the subsidy."""
        ...

    async def raw_block(self, block_hash: str) -> bytes:
        """The serialised block (witnesses included, as the node stores it)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class AnchorWallet(Protocol):
    """The wallet that sends the pool's anchor transactions: one zero-value output carrying
    `script` (OP_RETURN "pold" + the chains' heads) and the change back to the coins' own
    address, so the pool's anchor transactions are recognisable by it."""

    async def send_anchor(
        self, script: bytes, *, address: str, change_script: bytes, fee_rate_sat_vb: int
    ) -> str:
        """Spend one coin of `address` into `script` and the change; the txid (display hex)."""
        ...

    async def tx_block(self, txid: str) -> str | None:
        """The best-chain block holding the transaction, or None while it is unmined."""
        ...


class Wallet(Protocol):
    """The bitcoind wallet that pays miners. Amounts are integer satoshis."""

    async def send_many(self, outputs: Mapping[str, int], comment: str) -> str:
        """One transaction paying every address its amount; the txid. The comment is kept
        by the wallet so a send can be found again after a crash."""
        ...

    async def find_sent(self, comment: str, since_s: int) -> str | None:
        """The txid of a send made with `comment` at or after `since_s`, or None."""
        ...

    async def wallet_tx(self, txid: str) -> WalletTx: ...
