"""The interface every block source implements (a real bitcoind or the built-in simnet)."""

from __future__ import annotations

from typing import Protocol


class NodeError(Exception):
    """The node could not be reached or refused a call; the message says which and why."""


class Node(Protocol):
    async def get_template(self) -> dict[str, object]:
        """A getblocktemplate result (rules ["segwit"])."""
        ...

    async def best_block_hash(self) -> str:
        """Hash of the tip, display order."""
        ...

    async def submit_block(self, block_hex: str) -> str | None:
        """None when the node accepted the block, else its reason (BIP22)."""
        ...

    async def block_confirmations(self, block_hash: str) -> int:
        """Confirmations, or -1 when the block is not on the best chain."""
        ...

    async def close(self) -> None: ...
